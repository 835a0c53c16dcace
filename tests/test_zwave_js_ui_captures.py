"""The ``zwave_js_ui`` protocol against the captured traffic of a real Z-Wave JS UI: every captured
message parses, topic naming and slot values, the driver following a captured session on a real
broker, and the simulated lock's output shape for shape against the captures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from drivers.base import SlotValue, Unreadable
from drivers.zwave_js_ui.driver import create_driver
from drivers.zwave_js_ui.protocol import (
    MISSING,
    Property,
    Topics,
    api_request_payload,
    get_args,
    parse_api_reply,
    parse_api_request,
    parse_gateway_status,
    parse_node_status,
    parse_set_request,
    parse_user_get_result,
    parse_value,
    slot_value,
)
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.helpers import Probe, Wakes, running, session_for, simulation
from tests.zwave_js_ui_helpers import LATENCY, PIN, device_of, zw_config

FIXTURES = Path(__file__).parent / "fixtures" / "zwave-js-ui"
CAPTURES: dict[str, tuple[str, str, Literal["valueid", "named"]]] = {
    # capture file, node topic level, style
    "valueid": ("valueid-capture.log", "2", "valueid"),
    "named": ("named-capture.log", "nodeID_2", "named"),
}


# -- the captures --------------------------------------------------------------------------------


def capture_lines(name: str) -> Iterator[tuple[str, str]]:
    path = FIXTURES / CAPTURES[name][0]
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        _, topic, payload = line.split(" ", 2)
        yield topic, payload


def capture_topics(name: str) -> Topics:
    _, node, style = CAPTURES[name]
    return Topics("zwave", node, 2, "zwtest", style)


@dataclass
class Replay:
    """What a driver would conclude from a capture, message by message."""

    topics: Topics
    values: dict[tuple[Property, int], object] = field(default_factory=dict)
    node_alive: list[bool] = field(default_factory=list)
    gateway: list[bool] = field(default_factory=list)
    slot1_history: list[SlotValue] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)
    writes: list[tuple[str, object]] = field(default_factory=list)

    def slot(self, slot: int) -> SlotValue:
        return slot_value(
            self.values.get(("userIdStatus", slot), MISSING),
            self.values.get(("userCode", slot), MISSING),
        )

    def feed(self, topic: str, payload: str) -> None:
        t = self.topics
        found = t.parse_value_topic(topic)
        if found is not None:
            self.values[found] = parse_value(payload).value
            if found[1] == 1:
                self.slot1_history.append(self.slot(1))
        elif topic == t.node_status:
            self.node_alive.append(parse_node_status(payload).alive)
        elif topic == t.gateway_status:
            self.gateway.append(parse_gateway_status(payload))
        elif topic.startswith(t.api_reply("")) and topic.endswith("/set"):
            parse_api_request(payload)
        elif topic.startswith(t.api_reply("")):
            self.replies.append(parse_api_reply(payload))
        elif topic.endswith("/set"):
            self.writes.append((topic, parse_set_request(payload)))
        else:
            json.loads(payload)  # events, nodeinfo, version, driver status, notifications


@pytest.mark.parametrize("name", list(CAPTURES))
def test_every_captured_message_parses(name: str) -> None:
    replay = Replay(capture_topics(name))
    for topic, payload in capture_lines(name):
        replay.feed(topic, payload)
    # Slot 1 was cleared last, slot 3 holds the code set at the keypad side, the rest were
    # never read by the interview: unknown, not empty.
    assert replay.slot(1) is None
    assert replay.slot(3) == "5678"
    for slot in (2, *range(4, 31)):
        assert replay.slot(slot) is Unreadable.UNKNOWN
    assert max(slot for _, slot in replay.values) == 30
    assert replay.gateway == [True]
    # The failed ping made the node Dead for a moment; it came back Alive.
    assert False in replay.node_alive
    assert replay.node_alive[-1] is True
    # Every write went out as the protocol wants it: a code as a string, a clear as status 0.
    assert all(isinstance(v, str) for t, v in replay.writes if "/userCode/" in t)
    assert all(v == 0 for t, v in replay.writes if "/userIdStatus/" in t)
    # Each code written showed up in slot 1's value topics.
    codes = {v for t, v in replay.writes if "/userCode/" in t}
    assert codes <= set(replay.slot1_history)
    gets = [r for r in replay.replies if isinstance(r.result, dict)]
    assert gets
    assert {parse_user_get_result(r.result) for r in gets} == codes
    assert all(r.success and r.request_id is None for r in replay.replies)


def test_topic_naming_matches_the_captures() -> None:
    valueid, named = capture_topics("valueid"), capture_topics("named")
    assert valueid.user_code(1) == "zwave/2/99/0/userCode/1"
    assert valueid.user_id_status(30) == "zwave/2/99/0/userIdStatus/30"
    assert named.user_code(1) == "zwave/nodeID_2/user_code/endpoint_0/userCode/1"
    assert named.keypad_unlock == (
        "zwave/nodeID_2/notification/endpoint_0/Access_Control/Keypad_unlock_operation"
    )
    assert valueid.keypad_unlock == "zwave/2/113/0/Access_Control/Keypad_unlock_operation"
    assert valueid.api_request("sendCommand") == (
        "zwave/_CLIENTS/ZWAVE_GATEWAY-zwtest/api/sendCommand/set"
    )
    assert valueid.gateway_status == "zwave/_CLIENTS/ZWAVE_GATEWAY-zwtest/status"
    for name in CAPTURES:
        topics = capture_topics(name)
        seen = {t for t, _ in capture_lines(name)}
        assert {topics.user_code(n) for n in range(1, 31)} <= seen
        assert {topics.user_id_status(n) for n in range(1, 31)} <= seen
        assert topics.node_status in seen
        assert topics.parse_value_topic(topics.user_code(7) + "/set") is None
        assert topics.parse_value_topic(topics.node_status) is None
    default = Topics.for_node("zwave", 5, "zwave-js-ui")
    assert default.user_code(3) == "zwave/nodeID_5/99/0/userCode/3"
    assert Topics.for_node("z", 5, "g", node_name="front").node_status == "z/front/status"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (0, "", None),
        (0, MISSING, None),
        (1, "0123", "0123"),
        (1, "**********", Unreadable.OCCUPIED),
        (1, "0000000000", Unreadable.OCCUPIED),
        (1, "1234\x00\x00", "1234"),
        (1, {"type": "Buffer", "data": [0x31, 0x32, 0x33, 0x34]}, "1234"),
        (1, {"type": "Buffer", "data": [0xFF, 0x01]}, Unreadable.OCCUPIED),
        (2, "1234", Unreadable.OCCUPIED),
        (1, "", Unreadable.UNKNOWN),  # the status arrived before the code
        (MISSING, MISSING, Unreadable.UNKNOWN),
        (1, MISSING, Unreadable.UNKNOWN),
        (MISSING, "4321", "4321"),
    ],
)
def test_slot_values(status: object, code: object, expected: SlotValue) -> None:
    assert slot_value(status, code) == expected


def test_unread_value_is_missing_not_empty() -> None:
    assert parse_value('{"time":1795839781130}').value is MISSING
    assert parse_value('{"time":1,"value":""}').value == ""
    with pytest.raises(ValueError, match="payload"):
        parse_value("not json")


@pytest.mark.parametrize("name", list(CAPTURES))
async def test_the_driver_follows_a_captured_session(
    name: str, make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """The capture played onto a broker as the real gateway sent it; the driver watches."""
    _, node, style = CAPTURES[name]
    options: dict[str, Any] = {"node_id": 2, "gateway_name": "zwtest", "topic_style": style}
    if node == "2":
        options["node_names"] = False  # as the capture was made: "use node names" off
    config = make_config(
        devices=[{"device_id": "zw", "name": "Z", "driver": "zwave_js_ui", "slots": 30, **options}]
    )
    session = session_for(broker, "gateway")
    driver = create_driver(device_of(config), session, config.timing)
    online_seen: list[bool] = []
    slot1_seen: list[SlotValue] = []
    wakes = Wakes()

    def wake() -> None:
        online_seen.append(driver.online)
        if driver.table is not None:
            slot1_seen.append(driver.table.value(1))
        wakes()

    await driver.start(wake)
    async with running(("test-gateway-mqtt", session.run())):
        await session.wait_connected(5)
        last = ""
        for topic, payload in capture_lines(name):
            if "/api/" in topic or topic.endswith("/set"):
                continue  # requests and replies of a client that is not this driver
            await probe.publish(topic, payload, retain="_EVENTS" not in topic)
            last = topic
        await probe.subscribe(last)
        await probe.next_raw(last)  # the broker has sent everything to every subscriber
        await wakes.until(
            lambda: (
                not driver.online
                and driver.table is not None
                and driver.table.value(3) == "5678"
                and driver.table.value(1) is None
            )
        )
    table = driver.table
    assert table is not None
    assert table.value(1) is None
    assert all(table.value(n) is Unreadable.UNKNOWN for n in (2, *range(4, 31)))
    # Online, Dead after the failed ping (offline), Alive again.
    dead = online_seen.index(False, online_seen.index(True))
    assert True in online_seen[dead:]
    # The capture ends with Z-Wave JS UI stopping its Z-Wave driver: nothing is reachable.
    assert not driver.online
    assert online_seen[-1] is False
    written = "4321" if name == "named" else "2468"
    assert written in slot1_seen
    # Issue 11: the node's Access Control values say that it reports its door operations.
    assert driver.has_entry_events


# -- the simulated lock's output, shape for shape against the captures ----------------------


def keys(payload: bytes) -> set[str]:
    value = json.loads(payload)
    assert isinstance(value, dict)
    return set(value)


async def test_simulator_speaks_like_the_capture(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    config = zw_config(make_config)
    await probe.subscribe("zwave/#")
    topics = Topics.for_node("zwave", 5, "zwave-js-ui")
    async with simulation(config, broker):
        await probe.next_raw(topics.user_code(30))
        seen = {t for t, _ in probe.history}
        assert {topics.user_code(n) for n in range(1, 31)} <= seen
        assert {topics.user_id_status(n) for n in range(1, 31)} <= seen
        assert keys(probe.history[0][1]) == {"value", "time"}  # the gateway status
        assert probe.history[0][0] == topics.gateway_status
        status = probe.last(topics.node_status)
        assert set(status) == {"time", "value", "status", "nodeId"}
        assert (status["value"], status["status"], status["nodeId"]) == (True, "Alive", 5)
        assert probe.last(topics.user_code(1))["value"] == PIN
        assert probe.last(topics.user_id_status(2))["value"] == 0
        assert probe.last(topics.user_code(2))["value"] == ""

        # A write: nothing answers, the slot's two value topics change after the latency.
        loop = asyncio.get_running_loop()
        for topic in (topics.user_id_status(3), topics.user_code(3)):
            probe.drain(topic)
        mark = len(probe.history)
        started = loop.time()
        await probe.publish(topics.user_code(3) + "/set", {"value": "2468"})
        status3 = await probe.next(topics.user_id_status(3))
        code3 = await probe.next(topics.user_code(3))
        assert loop.time() - started >= LATENCY
        assert (set(status3), status3["value"]) == ({"time", "value"}, 1)
        assert (set(code3), code3["value"]) == ({"time", "value"}, "2468")
        # In the order of the capture: the write itself, then status, then code.
        assert [t for t, _ in probe.history[mark:]] == [
            topics.user_code(3) + "/set",
            topics.user_id_status(3),
            topics.user_code(3),
        ]

        # A bare number is refused without a word.
        await probe.publish(topics.user_code(4) + "/set", {"value": 1234})

        # The API: the slot's value topics, then the reply echoing the request as origin.
        mark = len(probe.history)
        request = api_request_payload(get_args(5, 3))
        await probe.publish(topics.api_request("sendCommand"), request)
        reply = await probe.next(topics.api_reply("sendCommand"))
        assert set(reply) == {"success", "message", "result", "args", "origin"}
        assert reply["success"] is True
        assert reply["message"] == "Success zwave api call"
        assert reply["result"] == {"userIdStatus": 1, "userCode": "2468"}
        assert reply["args"] == request["args"]
        assert reply["origin"] == request
        assert [t for t, _ in probe.history[mark:]] == [
            topics.api_request("sendCommand"),
            topics.user_id_status(3),
            topics.user_code(3),
            topics.api_reply("sendCommand"),
        ]
        assert len(probe.seen(topics.user_code(4))) == 1  # the start-up one only

        poll = {"args": [{**get_args(5, 3)[0], "property": "userCode", "propertyKey": 3}]}
        await probe.publish(topics.api_request("pollValue"), poll)
        assert (await probe.next(topics.api_reply("pollValue")))["result"] == "2468"

        # A clear through userIdStatus.
        for topic in (topics.user_id_status(3), topics.user_code(3)):
            probe.drain(topic)
        await probe.publish(topics.user_id_status(3) + "/set", {"value": 0})
        assert (await probe.next(topics.user_id_status(3)))["value"] == 0
        assert (await probe.next(topics.user_code(3)))["value"] == ""

        # Keypad use arrives as an Access Control notification with the user id.
        await probe.publish("lockgate-sim/zw/set", {"enter": PIN})
        assert (await probe.next(topics.keypad_unlock))["value"] == {"userId": 1}
