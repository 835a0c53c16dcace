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
from drivers.zwave_js_ui.config import ZwaveJsUiOptions
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
from gateway.clock import ManualClock
from gateway.config import Config, ConfigError, DeviceConfig, Timing
from gateway.store import codes as code_store
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import (
    Recorder,
    barrier,
    device,
    error_codes,
    is_event,
    new_code,
    ok,
    running_simulator,
    running_site,
)
from tests.helpers import Probe, Wakes, running, session_for, simulation

FIXTURES = Path(__file__).parent / "fixtures" / "zwave-js-ui"
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


# -- a rig: the simulated lock and the driver on a real broker ----------------------------------


def zw_config(
    make_config: ConfigFactory,
    *,
    slots: int | None = 30,
    style: str = "valueid",
    latency: float = LATENCY,
    **options: Any,
) -> Config:
    device: dict[str, Any] = {
        "device_id": "zw",
        "name": "Z-Wave door",
        "driver": "zwave_js_ui",
        "node_id": 5,
        "topic_style": style,
        **options,
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


# -- issue 8: where Z-Wave JS UI puts the node, and what a setting that does not match gives ----


@pytest.mark.parametrize(
    ("options", "user_code", "node_status"),
    [
        ({"node_names": False}, "zwave/2/99/0/userCode/1", "zwave/2/status"),
        ({}, "zwave/nodeID_2/99/0/userCode/1", "zwave/nodeID_2/status"),
        (
            {"node_name": "Front door"},
            "zwave/Front_door/99/0/userCode/1",
            "zwave/Front_door/status",
        ),
        # Named topics carry the name or nodeID_n whatever "use node names" says.
        (
            {"style": "named", "node_names": False},
            "zwave/nodeID_2/user_code/endpoint_0/userCode/1",
            "zwave/nodeID_2/status",
        ),
        # "Ignore location" off: the location is a level (or two) before the node's.
        (
            {"node_names": False, "location": "Ground floor"},
            "zwave/Ground_floor/2/99/0/userCode/1",
            "zwave/Ground_floor/2/status",
        ),
        (
            {"style": "named", "node_name": "Front door!", "location": "Flat 3/Hall"},
            "zwave/Flat_3/Hall/Front_door/user_code/endpoint_0/userCode/1",
            "zwave/Flat_3/Hall/Front_door/status",
        ),
    ],
)
def test_topics_follow_z_wave_js_ui_settings(
    options: dict[str, Any], user_code: str, node_status: str
) -> None:
    """Z-Wave JS UI's Gateway.nodeTopic/valueTopic, names and locations cleaned as its
    sanitizeTopic does (spaces to _, other characters dropped, / kept)."""
    topics = Topics.for_node("zwave", 2, "zwtest", **options)
    assert topics.user_code(1) == user_code
    assert topics.node_status == node_status
    assert topics.parse_value_topic(user_code) == ("userCode", 1)
    assert topics.gateway_status == "zwave/_CLIENTS/ZWAVE_GATEWAY-zwtest/status"  # no location


def test_node_names_and_location_options(make_config: ConfigFactory) -> None:
    config = zw_config(make_config, node_names=False, location="Ground floor")
    topics = device_of(config).options
    assert isinstance(topics, ZwaveJsUiOptions)
    assert topics.topics().user_code(1) == "zwave/Ground_floor/5/99/0/userCode/1"
    with pytest.raises(ConfigError) as caught:
        zw_config(make_config, node_names=False, node_name="front")
    assert caught.value.problems == [
        "devices[0].node_name: unused with node_names false (ValueID topics then carry the bare"
        " node id); leave it out, or turn on node names in Z-Wave JS UI"
    ]
    with pytest.raises(ConfigError, match=r"devices\[0\]\.node_names: must be true or false"):
        zw_config(make_config, node_names="no")
    with pytest.raises(ConfigError, match=r"devices\[0\]\.location: must not contain the MQTT"):
        zw_config(make_config, location="a/+/b")


@pytest.mark.parametrize(
    "options",
    [
        {"node_names": False},
        {"node_names": False, "location": "Ground floor"},
        {"style": "named", "node_name": "Front door", "location": "Flat 3/Hall"},
    ],
)
async def test_every_topic_form_on_a_real_broker(
    options: dict[str, Any], make_config: ConfigFactory, broker: Broker
) -> None:
    """The simulated Z-Wave JS UI publishes the node where the real one would, and the driver
    configured the same way finds it there."""
    async with rigged(zw_config(make_config, **options), broker) as rig:
        assert isinstance(rig.lock, drivers.zwave_js_ui.simulator.SimulatedZwaveJsUiLock)
        assert rig.driver.topics == rig.lock.topics
        await rig.driver.set_code(2, "2468")
        assert rig.lock.slots[2] == "2468"
        await rig.driver.clear_slot(2)
        assert (await rig.driver.read()).value(2) is None
        assert rig.driver.not_found is None


async def test_not_found_names_the_settings_to_check(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """Before Z-Wave JS UI appears at all, then once it has but the node has not, then found."""
    config = zw_config(make_config)
    session = session_for(broker, "gateway")
    driver = create_driver(device_of(config), session, config.timing)
    wakes = Wakes()
    await driver.start(wakes)
    assert driver.not_found is None  # not connected: nothing to judge
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.not_found is not None)
        assert "base_topic and gateway_name" in (driver.not_found or "")
        await probe.publish(driver.topics.gateway_status, {"value": True}, retain=True)
        await wakes.until(lambda: "node_names" in (driver.not_found or ""))
        assert "zwave/nodeID_5/status" in (driver.not_found or "")
        await probe.publish(driver.topics.node_status, {"value": True, "status": "Alive"})
        await wakes.until(lambda: driver.not_found is None)


async def test_a_lock_not_found_for_a_minute_says_so_once(
    make_config: ConfigFactory, probe: Probe, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8 (10): Z-Wave JS UI with "use node names" off, lockgate told otherwise. A minute
    on the gateway's clock later: one warning in the log and a device error naming the
    settings; never silence."""
    actual = zw_config(make_config, node_names=False)  # where the stack publishes the node
    configured = zw_config(make_config)  # where lockgate looks: nodeID_5
    clock = ManualClock()
    async with (
        running_simulator(actual),
        running_site(configured, clock, simulate=False) as site,
    ):
        assert "device_not_found_on_stack" not in error_codes(await device(site, "zw"))
        await site.advance(59)
        assert "device_not_found_on_stack" not in error_codes(await device(site, "zw"))
        capsys.readouterr()
        await site.advance(1)
        found = await device(site, "zw")
        error = next(e for e in found["errors"] if e["error_code"] == "device_not_found_on_stack")
        assert error["message"].startswith(
            "The lock has not appeared where its configuration says its hub publishes it: "
            "Z-Wave JS UI is on the broker but node 5 has not appeared at zwave/nodeID_5/status"
        )
        assert "node_names" in error["message"]
        await site.advance(3600)
        warned = [
            line
            for line in log_lines(capsys.readouterr().out)
            if line["event"] == "reconciler.device_not_found"
        ]
        assert len(warned) == 1
        assert warned[0]["level"] == "warning"
        assert warned[0]["device_id"] == "zw"
        assert "node_names" in warned[0]["check"]
        # The node shows up where lockgate looks (node names turned on): the error goes.
        events = await Recorder.events(site)
        await probe.publish("zwave/nodeID_5/status", {"value": True, "status": "Alive"})
        await events.wait(is_event("device.error_cleared", error_code="device_not_found_on_stack"))
        assert "device_not_found_on_stack" not in error_codes(await device(site, "zw"))


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_unread_slots_at_first_contact_do_not_empty_the_pool(
    make_config: ConfigFactory,
) -> None:
    """Issue 8 (11): zwave-js reads user codes only when asked, so at first contact most slots
    are unread. Unread is not full: no empty pool error; the backups go on once read."""
    config = zw_config(make_config, latency=0.002, backup_pool={"enabled": True, "size": 3})
    async with running_simulator(config) as sim:
        lock = sim.lock("zw")
        await lock.control({"keypad": {"slot": 2, "code": "2222"}})
        await lock.control({"keypad": {"slot": 3, "code": "3333"}})
        await lock.control({"unread": list(range(4, 31))})  # 27 free slots, none read yet
        async with running_site(config, simulate=False) as site:
            raised = ok(
                await site.api.call(
                    "events/list",
                    since="2000-01-01T00:00:00Z",
                    limit=1000,
                    device_id="zw",
                    event_types=["device.error_added", "device.warning_added"],
                )
            )["events"]
            pool = {"empty_backup_access_code_pool", "partial_backup_access_code_pool"}
            assert not {e.get("error_code") or e.get("warning_code") for e in raised} & pool
            assert len(lock.slots) == 6  # the three codes found, the three backups
            assert not error_codes(await device(site, "zw"))


async def test_a_crashed_stack_is_offline_until_its_driver_is_ready(rig: Rig, probe: Probe) -> None:
    """Issue 8 (12): killed hard, Z-Wave JS UI's will only marks the gateway down; its driver
    and node statuses from before stay retained. Back up, it is not ready for ~1.7 s."""
    info = rig.driver.topics.api_reply("getInfo")
    await probe.subscribe(info)
    await rig.lock.control({"stack": "crash"})
    await rig.wakes.until(lambda: not rig.driver.online)
    await rig.lock.control({"stack": "start"})
    # The driver asks whether Z-Wave JS UI's driver is ready: not yet.
    assert (await probe.next(info))["message"] == "Z-Wave client not connected"
    assert not rig.driver.online  # the retained `driver/status true` and `Alive` are stale
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "offline"
    await rig.lock.control({"stack": "ready"})
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.driver.set_code(2, "2222")
    assert rig.lock.slots[2] == "2222"


async def test_a_stack_only_cut_off_from_the_broker_is_back_at_once(rig: Rig, probe: Probe) -> None:
    """Its will, then its status back without a restart: nothing else is republished, so the
    statuses from before stand once the API shows its driver is ready."""
    gateway = rig.driver.topics.gateway_status
    await probe.publish(gateway, {"value": False}, retain=True)
    await rig.wakes.until(lambda: not rig.driver.online)
    await probe.publish(gateway, {"value": True}, retain=True)
    await rig.wakes.until(lambda: rig.driver.online)


async def test_client_not_connected_is_offline(make_config: ConfigFactory, broker: Broker) -> None:
    """A gateway that connects while Z-Wave JS UI is starting finds the gateway up and the old
    statuses: its first call is answered "Z-Wave client not connected", which means offline."""
    config = zw_config(make_config)
    async with rigged(config, broker) as rig:
        await rig.lock.control({"stack": "crash"})
        await rig.lock.control({"stack": "start"})
        session = session_for(broker, "late-gateway")
        late = create_driver(device_of(config), session, config.timing)
        wakes = Wakes()
        await late.start(wakes)
        async with running(("test-late-mqtt", session.run())):
            await wakes.until(lambda: late.online)
            with pytest.raises(CommandFailed) as caught:
                await late.read([2])
            assert caught.value.reason == "offline"
            assert not isinstance(caught.value, CommandTimedOut)
            assert not late.online
            await rig.lock.control({"stack": "ready"})
            await wakes.until(lambda: late.online)
            assert (await late.read([2])).value(2) is None


async def test_nothing_is_sent_nor_counted_while_the_stack_starts(
    make_config: ConfigFactory, probe: Probe
) -> None:
    """Through the gateway: a code created while Z-Wave JS UI is down waits, sends nothing
    during its start-up and is not counted as a failed attempt, then goes on once ready."""
    config = zw_config(make_config, latency=0.002)
    async with running_site(config) as site:
        lock = site.lock("zw")
        events = await Recorder.events(site)
        await lock.control({"stack": "crash"})
        await events.wait(is_event("device.disconnected", device_id="zw"))
        code_id = await new_code(site, "4826", device_id="zw", name="Gus")
        await probe.subscribe("zwave/#")
        await lock.control({"stack": "start"})
        info = "zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-js-ui/api/getInfo"
        assert (await probe.next(info))["message"] == "Z-Wave client not connected"
        await site.settled()
        sent = [t for t, _ in probe.history if t.endswith("/set") and "getInfo" not in t]
        assert sent == []
        assert site.gateway.store is not None
        async with site.gateway.store.transaction() as tx:
            attempts, _, _ = (await code_store.retry_state(tx, "zw"))[code_id]
        assert attempts == 0
        await lock.control({"stack": "ready"})
        await events.wait(is_event("access_code.set_on_device", access_code_id=code_id))
        assert "4826" in lock.slots.values()
