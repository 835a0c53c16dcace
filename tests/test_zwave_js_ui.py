"""The ``zwave_js_ui`` driver: the captured traffic of a real Z-Wave JS UI, the simulated lock's
output against the same shapes, the driver against the simulator on a real broker, end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

import drivers.zwave_js_ui.simulator  # registers the simulated lock
from drivers.base import CommandFailed, CommandTimedOut, SlotValue, Unreadable
from drivers.sim import SimulatedLock, Simulator
from drivers.zwave_js_ui.driver import ZwaveJsUiDriver, create_driver
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
from gateway.config import Config, DeviceConfig, Timing
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import barrier, new_code, running_site
from tests.helpers import Probe, Wakes, running, session_for, simulation

FIXTURES = Path("/work/shared/fixtures/zwave-js-ui")
CAPTURES: dict[str, tuple[str, str, Literal["valueid", "named"]]] = {
    # capture file, node topic level, style
    "valueid": ("valueid-capture.log", "2", "valueid"),
    "named": ("named-capture.log", "nodeID_2", "named"),
}
PIN = "8642"  # in slot 1 of the simulated lock at start
TIMEOUT = 0.5  # command_timeout in the driver tests
LATENCY = 0.05  # the simulated lock's "read-back" delay

assert drivers.zwave_js_ui.simulator.SimulatedZwaveJsUiLock.driver == "zwave_js_ui"


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
    if node != "nodeID_2":
        options["node_name"] = node
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
    assert online_seen[0] is True
    assert online_seen[online_seen.index(False) :].count(True) >= 1
    # The capture ends with Z-Wave JS UI stopping its Z-Wave driver: nothing is reachable.
    assert not driver.online
    assert online_seen[-1] is False
    written = "4321" if name == "named" else "2468"
    assert written in slot1_seen


# -- a rig: the simulated lock and the driver on a real broker ----------------------------------


def zw_config(
    make_config: ConfigFactory,
    *,
    slots: int | None = 30,
    style: str = "valueid",
    latency: float = LATENCY,
) -> Config:
    device: dict[str, Any] = {
        "device_id": "zw",
        "name": "Z-Wave door",
        "driver": "zwave_js_ui",
        "node_id": 5,
        "topic_style": style,
    }
    if slots is not None:
        device["slots"] = slots
    return make_config(
        devices=[device],
        timing={"command_timeout": TIMEOUT},
        simulator={
            "latency": latency,
            "locks": {"zw": {"initial_codes": {1: PIN}}},
        },
    )


def device_of(config: Config) -> DeviceConfig:
    return next(d for d in config.all_devices if d.device_id == "zw")


@dataclass
class Rig:
    driver: ZwaveJsUiDriver
    wakes: Wakes
    lock: SimulatedLock
    sim: Simulator


@asynccontextmanager
async def rigged(
    config: Config, broker: Broker, timing: Timing | None = None
) -> AsyncIterator[Rig]:
    async with simulation(config, broker) as sim:
        session = session_for(broker, "gateway")
        driver = create_driver(device_of(config), session, timing or config.timing)
        wakes = Wakes()
        await driver.start(wakes)
        async with running(("test-gateway-mqtt", session.run())):
            await wakes.until(
                lambda: (
                    driver.online
                    and driver.table is not None
                    and driver.table.value(30) is not Unreadable.UNKNOWN
                )
            )
            yield Rig(driver, wakes, sim.lock("zw"), sim)


@pytest.fixture
async def rig(make_config: ConfigFactory, broker: Broker) -> AsyncIterator[Rig]:
    async with rigged(zw_config(make_config), broker) as instance:
        yield instance


def value(driver: ZwaveJsUiDriver, slot: int) -> SlotValue:
    assert driver.table is not None
    return driver.table.value(slot)


async def test_start_observes_status_and_values(rig: Rig) -> None:
    table = rig.driver.table
    assert rig.driver.online
    assert table is not None
    assert table.capacity == 30
    assert table.value(1) == PIN
    assert all(table.value(n) is None for n in range(2, 31))


async def test_set_clear_read(rig: Rig) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rig.driver.set_code(3, "0123")  # leading zero kept: sent as a string
    assert loop.time() - started >= LATENCY  # only once the read-back came
    assert rig.lock.slots[3] == "0123"
    assert value(rig.driver, 3) == "0123"
    await rig.driver.clear_slot(3)
    assert 3 not in rig.lock.slots
    assert value(rig.driver, 3) is None
    rig.lock.slots[5] = "5555"  # changed without telling anyone
    table = await rig.driver.read()
    assert table.value(5) == "5555"
    assert table.value(1) == PIN
    assert table == rig.driver.table


async def test_fail_next_is_not_applied(rig: Rig) -> None:
    await rig.lock.control({"fail_next": 1})
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "not_applied"
    assert not isinstance(caught.value, CommandTimedOut)
    assert rig.lock.slots == {1: PIN}
    assert value(rig.driver, 2) is None


async def test_ignored_write_is_not_applied(rig: Rig) -> None:
    await rig.lock.control({"ignore_writes_next": 1})
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "not_applied"
    assert (await rig.driver.read()).value(2) is None


async def test_applied_silently_times_out_but_read_shows_it(rig: Rig) -> None:
    await rig.lock.control({"apply_silently_next": 1})
    with pytest.raises(CommandTimedOut):
        await rig.driver.set_code(2, "2222")
    assert (await rig.driver.read()).value(2) == "2222"


async def test_going_offline_settles_waiting_writes(
    make_config: ConfigFactory, broker: Broker
) -> None:
    async with rigged(zw_config(make_config), broker, Timing(command_timeout=5.0)) as rig:
        await rig.lock.control({"latency": 1.0})
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = asyncio.create_task(rig.driver.set_code(2, "2222"), name="test-pending-set")
        await asyncio.sleep(0.05)
        await rig.lock.control({"online": False})
        with pytest.raises(CommandTimedOut):
            await pending
        assert loop.time() - started < 1.0


async def test_silence_times_out(rig: Rig) -> None:
    await rig.lock.control({"silent": True})
    with pytest.raises(CommandTimedOut):
        await rig.driver.set_code(2, "2222")
    with pytest.raises(CommandTimedOut):
        await rig.driver.read()
    await rig.lock.control({"silent": False})
    assert (await rig.driver.read()).value(2) is None


async def test_refusals_before_sending(rig: Rig) -> None:
    for slot, code, reason in (
        (31, "1234", "slot_out_of_range"),
        (2, "12", "invalid_code"),
        (2, "12a4", "invalid_code"),
        (2, PIN, "duplicate_code"),
    ):
        with pytest.raises(CommandFailed) as caught:
            await rig.driver.set_code(slot, code)
        assert caught.value.reason == reason


async def test_keypad_change_wakes(rig: Rig, probe: Probe) -> None:
    woken = rig.wakes.count
    await probe.publish(rig.lock.control_topics.set, {"keypad": {"slot": 4, "code": "4444"}})
    await rig.wakes.until(lambda: value(rig.driver, 4) == "4444")
    assert rig.wakes.count > woken


async def test_dead_node_is_offline(rig: Rig) -> None:
    await rig.lock.control({"online": False})
    await rig.wakes.until(lambda: not rig.driver.online)
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "offline"
    await rig.lock.control({"online": True})
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.driver.set_code(2, "2222")


async def test_gateway_down_is_offline(rig: Rig, probe: Probe) -> None:
    await probe.publish(rig.driver.topics.gateway_status, {"value": False}, retain=True)
    await rig.wakes.until(lambda: not rig.driver.online)
    await probe.publish(rig.driver.topics.gateway_status, {"value": True}, retain=True)
    await rig.wakes.until(lambda: rig.driver.online)


async def test_masked_codes_are_occupied(rig: Rig) -> None:
    # The config allows expose_pin for zigbee2mqtt only: switch the lock to masking by hand.
    rig.lock.spec = dataclasses.replace(rig.lock.spec, expose_pin=False)
    await rig.lock.publish_table()
    await rig.wakes.until(lambda: value(rig.driver, 1) is Unreadable.OCCUPIED)
    assert (await rig.driver.read()).value(1) is Unreadable.OCCUPIED
    assert value(rig.driver, 2) is None
    # A set read back masked is the set, not a different code.
    await rig.driver.set_code(2, "2222")
    assert rig.lock.slots[2] == "2222"
    assert value(rig.driver, 2) is Unreadable.OCCUPIED
    await rig.driver.clear_slot(2)
    assert value(rig.driver, 2) is None


async def test_capacity_from_the_lock(make_config: ConfigFactory, broker: Broker) -> None:
    config = zw_config(make_config, slots=None)
    async with rigged(config, broker) as rig:
        table = await rig.driver.read()
        assert table.capacity == 30  # getUsersCount, the simulator's default_slots
        assert table.value(1) == PIN


async def test_named_topics(make_config: ConfigFactory, broker: Broker) -> None:
    config = zw_config(make_config, style="named")
    async with rigged(config, broker) as rig:
        assert "/user_code/endpoint_0/" in rig.driver.topics.user_code(1)
        await rig.driver.set_code(2, "2468")
        assert rig.lock.slots[2] == "2468"
        await rig.driver.clear_slot(2)
        assert (await rig.driver.read()).value(2) is None


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


# -- end to end ----------------------------------------------------------------------------------


async def test_a_code_created_through_the_api_lands_in_the_slot(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "zw",
                "name": "Z-Wave door",
                "driver": "zwave_js_ui",
                "node_id": 5,
                "slots": 30,
            }
        ],
    )
    async with running_site(config) as site:
        await new_code(site, "4826", device_id="zw", name="Gus")
        await barrier(site)
        assert site.lock("zw").slots == {1: "4826"}
