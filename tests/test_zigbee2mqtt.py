"""The zigbee2mqtt driver: its payloads, against the simulated lock on a real broker, and end to
end through the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from drivers.base import CommandFailed, CommandTimedOut, Unreadable
from drivers.registry import FACTORIES
from drivers.sim import SimulatedLock, Simulator, simulated_lock_class
from drivers.zigbee2mqtt.driver import QUIET_SHARE, Zigbee2MqttDriver, create_driver
from drivers.zigbee2mqtt.protocol import (
    KEYPAD,
    PayloadError,
    PinRequest,
    StateReport,
    Topics,
    UserEntry,
    clear_payload,
    parse_availability,
    parse_get,
    parse_logging_error,
    parse_set,
    parse_state,
    range_error_payload,
    read_all_payload,
    read_payload,
    redact_pins,
    set_payload,
    set_timeout_payload,
)
from drivers.zigbee2mqtt.simulator import SimulatedZigbee2MqttLock
from gateway.config import Config, DeviceConfig, Timing
from gateway.mqtt import encode
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import Recorder, barrier, error_codes, get_code, is_event, new_code, running_site
from tests.harness import device as device_json
from tests.helpers import Probe, Wakes, eventually, running, session_for, simulation

PIN = "8642"  # in slot 1 (Zigbee2MQTT user 0) at start
TIMEOUT = 0.3  # command_timeout in these tests
ZB = "zb"
TOPICS = Topics("zigbee2mqtt", ZB)


def zb_config(make_config: ConfigFactory, *, expose_pin: bool = True, **lock: Any) -> Config:
    return make_config(
        timing={"command_timeout": TIMEOUT},
        devices=[{"device_id": ZB, "driver": "zigbee2mqtt", "slots": 10}],
        simulator={
            "latency": "1ms",
            "locks": {ZB: {"initial_codes": {1: PIN}, "expose_pin": expose_pin, **lock}},
        },
    )


def device(config: Config, device_id: str = ZB) -> DeviceConfig:
    return next(d for d in config.all_devices if d.device_id == device_id)


def logged(out: str, event: str) -> int:
    """How many log lines of ``event`` the JSON log ``out`` holds."""
    return sum(1 for line in out.splitlines() if f'"event": "{event}"' in line)


# -- payloads ------------------------------------------------------------------------------------


def test_topics() -> None:
    topics = Topics("z2m", "hall/lock")
    assert (topics.state, topics.set, topics.get, topics.availability) == (
        "z2m/hall/lock",
        "z2m/hall/lock/set",
        "z2m/hall/lock/get",
        "z2m/hall/lock/availability",
    )
    assert (topics.bridge_state, topics.bridge_logging) == (
        "z2m/bridge/state",
        "z2m/bridge/logging",
    )


def test_requests_are_built_as_zigbee2mqtt_wants_them() -> None:
    assert encode(set_payload(3, "0123")) == (
        b'{"pin_code":{"user":3,"user_type":"unrestricted","user_enabled":true,"pin_code":"0123"}}'
    )
    assert clear_payload(0) == {
        "pin_code": {
            "user": 0,
            "user_type": "unrestricted",
            "user_enabled": False,
            "pin_code": None,
        }
    }
    assert read_payload(7) == {"pin_code": {"user": 7}}
    # And the simulator understands them.
    assert parse_set(encode(set_payload(3, "0123"))) == PinRequest(user=3, pin_code="0123")
    assert parse_set(encode(clear_payload(3))) == PinRequest(user=3, pin_code=None)
    assert parse_get(encode(read_payload(7))) == PinRequest(user=7)
    assert parse_get(encode(read_all_payload())) == PinRequest(user=None)
    for bad in (b"{}", b'{"pin_code": {"user": -1}}', b'{"pin_code": {"user": true}}', b"[]"):
        with pytest.raises(PayloadError):
            parse_set(bad)
        with pytest.raises(PayloadError):
            parse_get(bad)


def test_state_message_users() -> None:
    report = parse_state(
        b'{"battery": 80, "lock_state": "locked", "users": {'
        b'"0": {"status": "enabled", "pin_code": "0123"},'
        b'"1": {"status": "available"},'
        b'"2": {"status": "enabled"},'
        b'"3": {"status": "disabled", "pin_code": "5555"}}}'
    )
    assert report.action is None
    assert report.users == {
        0: UserEntry("enabled", "0123"),
        1: UserEntry("available"),
        2: UserEntry("enabled"),
        3: UserEntry("disabled", "5555"),
    }
    values = {user: entry.value() for user, entry in report.users.items()}
    # expose_pin off: an enabled user is occupied but unreadable; disabled never counts as ours.
    assert values == {0: "0123", 1: None, 2: Unreadable.OCCUPIED, 3: Unreadable.OCCUPIED}
    assert parse_state(b'{"battery": 80}') == StateReport(users={})


def test_state_message_actions() -> None:
    added = parse_state(b'{"action": "pin_code_added", "action_user": 4, "users": {}}')
    assert (added.action, added.action_user, added.programming_user) == ("pin_code_added", 4, 4)
    for action in ("pin_code_deleted", "pin_code_changed"):
        report = parse_state(f'{{"action": "{action}", "action_user": 0}}')
        assert report.programming_user == 0
    unlock = parse_state(
        b'{"action": "unlock", "action_source_name": "keypad", "action_user": 2, "users": {}}'
    )
    assert unlock.programming_user is None  # an unlock programs nothing


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'"users"',
        b'{"users": []}',
        b'{"action": "pin_code_added", "action_user": "x"}',
    ],
)
def test_bad_state_messages(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_state(payload)


@pytest.mark.parametrize(
    ("entry", "refused"),
    [
        ('"one": {"status": "enabled"}', "users.one: user keys must be decimal numbers from 0"),
        ('"01": {"status": "enabled"}', "users.01: user keys must be decimal numbers from 0"),
        ('"1": {"status": 3}', "users.1.status: expected a string"),
        ('"1": "enabled"', "users.1: expected an object"),
        ('"1": {"status": "enabled", "pin_code": 123}', "users.1.pin_code: expected a string"),
    ],
)
def test_one_bad_entry_hides_no_other(entry: str, refused: str) -> None:
    """Finding 1: Zigbee2MQTT republishes a bad entry in every later message, for good; it is
    left out on its own, and the message still answers for every other user."""
    report = parse_state(f'{{"users": {{{entry}, "4": {{"status": "available"}}}}}}')
    assert report.users == {4: UserEntry("available")}
    assert report.refused == (refused,)


def test_a_status_the_converter_does_not_know_is_an_occupied_slot() -> None:
    """Finding 1: ``not_supported_<n>`` (0xFF past the lock's real users) is no refusal."""
    report = parse_state(
        b'{"users": {"2": {"status": "not_supported_255"}, "3": {"status": "not_supported_NaN"},'
        b' "4": {"status": "enabled", "pin_code": "4444"}}}'
    )
    assert report.refused == ()
    assert {user: entry.value() for user, entry in report.users.items()} == {
        2: Unreadable.OCCUPIED,
        3: Unreadable.OCCUPIED,
        4: "4444",
    }
    assert not report.users[2].hides_pin  # says nothing about expose_pin


def test_what_the_deep_merge_leaves_behind() -> None:
    """Finding 9: an empty slot reads ``""`` with expose_pin; an answer without ``pin_code``
    keeps the old one in Zigbee2MQTT's cache, which then betrays that PINs are hidden."""
    empty = UserEntry("available", "")
    assert (empty.value(), empty.hides_pin) == (None, False)
    leftover = UserEntry("available", "1234")  # cleared, read without expose_pin
    assert (leftover.value(), leftover.hides_pin) == (None, True)
    masked = UserEntry("enabled")
    assert (masked.value(), masked.hides_pin) == (Unreadable.OCCUPIED, True)
    stale = UserEntry("enabled", "1234")  # may be a leftover: not trusted once PINs are hidden
    assert (stale.value(), stale.value(pins_hidden=True)) == ("1234", Unreadable.OCCUPIED)
    assert UserEntry("enabled", "").value() is Unreadable.OCCUPIED


def test_pins_in_the_stacks_error_lines_are_redacted() -> None:
    """Finding 2: herdsman's text quotes the ZCL payload, PIN included."""
    line = set_timeout_payload("zb", 6, "7777")
    assert '"pincodevalue":"7777"' in line["message"]  # as the real stack says it
    error = parse_logging_error(encode(line), "zb")
    assert error is not None
    assert "7777" not in error.message
    assert '"pincodevalue":***' in error.message
    assert (error.verb, error.key, error.user) == ("set", "pin_code", 6)
    assert error.about_pin_codes
    for text, hidden in [
        ('{"user":1,"pin_code":"0123"}', "0123"),
        ("code=4826 tail", "4826"),
        ('pincodevalue: {"type":"Buffer","data":[55,55]}', "55,55"),
        ("'pin_code': '9911'", "9911"),
    ]:
        assert hidden not in redact_pins(text)
    assert redact_pins("Publish 'set' 'pin_code' to 'zb'") == "Publish 'set' 'pin_code' to 'zb'"


def test_availability_and_logging() -> None:
    assert parse_availability(b'{"state": "online"}') is True
    assert parse_availability(b'{"state": "offline"}') is False
    assert parse_availability(b"online") is True  # Zigbee2MQTT 1.x
    with pytest.raises(PayloadError):
        parse_availability(b'{"state": "maybe"}')
    line = b"{\"level\":\"error\",\"message\":\"Publish 'set' 'pin_code' to 'zb' failed: 'x'\"}"
    assert parse_logging_error(line, "zb") is not None
    assert parse_logging_error(line, "other") is None
    assert parse_logging_error(b'{"level":"info","message":"\'zb\'"}', "zb") is None
    assert parse_logging_error(b"garbage", "zb") is None
    # Finding 5: other lines about the lock are no answer to a pin_code request.
    for other in (
        "Failed to configure 'zb', attempt 2 (Error: timeout)",
        "Publish 'set' 'state' to 'zb' failed: 'Error: timeout'",
    ):
        error = parse_logging_error(encode({"level": "error", "message": other}), "zb")
        assert error is not None
        assert not error.about_pin_codes
    ranged = parse_logging_error(encode(range_error_payload("zb", "get")), "zb")
    assert ranged is not None
    assert ranged.out_of_range


def test_driver_and_simulated_lock_are_registered() -> None:
    assert simulated_lock_class("zigbee2mqtt") is SimulatedZigbee2MqttLock
    assert FACTORIES["zigbee2mqtt"] is create_driver


# -- the driver against the simulated lock -----------------------------------------------------


@dataclass
class Rig:
    driver: Zigbee2MqttDriver
    wakes: Wakes
    lock: SimulatedLock
    sim: Simulator


@asynccontextmanager
async def rigged(config: Config, broker: Broker) -> AsyncIterator[Rig]:
    async with simulation(config, broker) as sim:
        session = session_for(broker, "gateway")
        driver = create_driver(device(config), session, config.timing)
        assert isinstance(driver, Zigbee2MqttDriver)
        wakes = Wakes()
        await driver.start(wakes)
        async with running(("test-gateway-mqtt", session.run())):
            await wakes.until(lambda: driver.online)
            yield Rig(driver, wakes, sim.lock(ZB), sim)


@pytest.fixture
async def rig(make_config: ConfigFactory, broker: Broker) -> AsyncIterator[Rig]:
    async with rigged(zb_config(make_config), broker) as instance:
        yield instance


def value(driver: Zigbee2MqttDriver, slot: int) -> object:
    assert driver.table is not None
    return driver.table.value(slot)


async def test_nothing_is_known_before_a_read(rig: Rig) -> None:
    assert rig.driver.online
    assert rig.driver.table is None  # the state message is no table, and nothing was read
    table = await rig.driver.read()
    assert (table.capacity, table.code_lengths) == (10, None)
    assert table.slots == {1: PIN, **dict.fromkeys(range(2, 11))}
    assert table is rig.driver.table


async def test_set_and_clear_are_read_back(rig: Rig, probe: Probe) -> None:
    await probe.subscribe(TOPICS.set, TOPICS.get)
    await rig.driver.set_code(3, "0123")
    assert rig.lock.slots[3] == "0123"
    assert value(rig.driver, 3) == "0123"
    sent = probe.seen(TOPICS.set)[-1]
    assert sent == set_payload(2, "0123")  # user 2 is slot 3; the PIN went as a string
    assert probe.last(TOPICS.get) == read_payload(2)
    await rig.driver.clear_slot(3)
    assert 3 not in rig.lock.slots
    assert value(rig.driver, 3) is None
    assert probe.seen(TOPICS.set)[-1] == clear_payload(2)


async def test_writes_out_of_range_are_not_sent(rig: Rig, probe: Probe) -> None:
    await probe.subscribe(TOPICS.set)
    for slot in (0, 11):
        with pytest.raises(CommandFailed) as caught:
            await rig.driver.set_code(slot, "1234")
        assert caught.value.reason == "slot_out_of_range"
    await rig.driver.set_code(10, "1234")  # the last user, 9
    assert [m["pin_code"]["user"] for m in probe.seen(TOPICS.set)] == [9]


async def test_failed_set_shows_in_the_read_back(rig: Rig, probe: Probe) -> None:
    await probe.subscribe(TOPICS.bridge_logging)
    await rig.lock.control({"fail_next": 1})
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "not_applied"
    assert not isinstance(caught.value, CommandTimedOut)
    assert rig.lock.slots == {1: PIN}
    assert value(rig.driver, 2) is None
    line = await probe.next(TOPICS.bridge_logging)
    assert line["level"] == "error"
    assert "'zb'" in line["message"]


async def test_accepted_but_not_applied(rig: Rig) -> None:
    await rig.lock.control({"ignore_writes_next": 1})
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "not_applied"
    assert value(rig.driver, 2) is None


async def test_refused_by_the_lock(rig: Rig, probe: Probe) -> None:
    """Finding 4: Zigbee2MQTT does not look at setPinCodeRsp's status: a refusal is silent and
    shows only as an unchanged read-back, believed once the lock stays quiet."""
    await probe.subscribe(TOPICS.bridge_logging)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, PIN)  # a duplicate
    assert caught.value.reason == "not_applied"
    assert not isinstance(caught.value, CommandTimedOut)
    assert loop.time() - started >= TIMEOUT * QUIET_SHARE
    assert value(rig.driver, 2) is None
    assert probe.seen(TOPICS.bridge_logging) == []


async def test_silence_times_out_and_the_slot_becomes_unknown(rig: Rig) -> None:
    await rig.driver.read()
    await rig.lock.control({"silent": True})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CommandTimedOut):
        await rig.driver.set_code(2, "2222")
    assert TIMEOUT <= loop.time() - started < TIMEOUT + 0.5
    assert value(rig.driver, 2) is Unreadable.UNKNOWN  # never "empty" after a silent write
    with pytest.raises(CommandTimedOut):
        await rig.driver.read()
    await rig.lock.control({"silent": False})
    assert (await rig.driver.read()).value(2) is None


async def test_stale_users_are_not_trusted(rig: Rig, probe: Probe) -> None:
    await rig.driver.read()
    woken = rig.wakes.count
    # Zigbee2MQTT republishes its whole cache on any change: entries nobody asked for.
    stale = {"users": {"0": {"status": "available"}, "4": {"status": "enabled", "pin_code": "9"}}}
    await probe.publish(TOPICS.state, {**stale, "battery": 79})
    await rig.driver.read([2])  # a round trip through the lock: the stale message came first
    await rig.driver.set_code(3, "3333")
    assert value(rig.driver, 1) == PIN
    assert value(rig.driver, 5) is None
    assert rig.wakes.count == woken + 1  # slot 3 only


async def test_keypad_change_is_read_back(rig: Rig, probe: Probe, config_topic: str) -> None:
    await rig.driver.read()
    await probe.subscribe(TOPICS.get, TOPICS.state)
    # The action message carries the cache, where user 3 is still "available": stale.
    await probe.publish(config_topic, {"keypad": {"slot": 4, "code": "4444"}})
    await rig.wakes.until(lambda: value(rig.driver, 4) == "4444")
    event = await probe.next_where(TOPICS.state, lambda m: "action" in m)
    assert (event["action"], event["action_user"]) == ("pin_code_added", 3)
    assert event["action_source_name"] == "keypad"
    assert event["users"]["3"] == {"status": "available", "pin_code": ""}
    # Finding 3: the simulated lock republishes that stale cache again before its answer.
    assert probe.seen(TOPICS.get) == [read_payload(3)]
    await probe.publish(config_topic, {"keypad": {"slot": 4, "code": None}})
    await rig.wakes.until(lambda: value(rig.driver, 4) is None)


@pytest.fixture
def config_topic(make_config: ConfigFactory) -> str:
    return f"{make_config().simulator.control_topic}/{ZB}/set"


async def test_masked_pins(make_config: ConfigFactory, broker: Broker) -> None:
    async with rigged(zb_config(make_config, expose_pin=False), broker) as rig:
        table = await rig.driver.read()
        assert table.value(1) is Unreadable.OCCUPIED
        assert table.value(2) is None
        await rig.driver.set_code(2, "2222")  # "enabled" is the best proof there is
        assert value(rig.driver, 2) is Unreadable.OCCUPIED
        assert rig.lock.slots[2] == "2222"
        await rig.driver.clear_slot(1)
        assert value(rig.driver, 1) is None


async def test_offline_lock_and_bridge(rig: Rig, probe: Probe) -> None:
    await probe.subscribe(TOPICS.set)
    await rig.lock.control({"online": False})
    await rig.wakes.until(lambda: not rig.driver.online)
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "offline"
    await rig.lock.control({"online": True})
    await rig.wakes.until(lambda: rig.driver.online)

    await probe.publish(TOPICS.bridge_state, {"state": "offline"}, retain=True)
    await rig.wakes.until(lambda: not rig.driver.online)
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.read()
    assert caught.value.reason == "offline"
    await probe.publish(TOPICS.bridge_state, {"state": "online"}, retain=True)
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.driver.set_code(2, "2222")
    assert probe.seen(TOPICS.set) == [set_payload(1, "2222")]  # nothing went out while offline


async def test_going_offline_settles_a_waiting_read(rig: Rig) -> None:
    await rig.lock.control({"latency": 5.0})
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = asyncio.create_task(rig.driver.read(), name="test-pending-read")
    await asyncio.sleep(0.05)
    await rig.lock.control({"online": False})
    with pytest.raises(CommandTimedOut):
        await pending
    assert loop.time() - started < TIMEOUT


async def test_garbage_is_ignored(rig: Rig, probe: Probe) -> None:
    await rig.driver.read()
    table = rig.driver.table
    for topic in (TOPICS.availability, TOPICS.state, TOPICS.bridge_state, TOPICS.bridge_logging):
        await probe.publish(topic, b"\x00 not json")
    await probe.publish(TOPICS.state, {"users": {"0": {"status": "enabled", "pin_code": 1}}})
    # A refused state message is the one thing said about it: the worker must hear of it.
    await rig.wakes.until(
        lambda: rig.driver.refused_report == "users.0.pin_code: expected a string"
    )
    woken = rig.wakes.count
    await rig.driver.set_code(2, "2222")
    assert rig.driver.online
    assert rig.driver.table is not None
    assert table is not None
    assert {**table.slots, 2: "2222"} == rig.driver.table.slots
    assert rig.driver.refused_report is None  # the read-back was a good state message
    assert rig.wakes.count == woken + 2  # for that, and for the slot


async def test_create_driver_wants_its_options(make_config: ConfigFactory, broker: Broker) -> None:
    config = make_config()  # native locks only
    with pytest.raises(TypeError):
        create_driver(device(config, "front_door"), session_for(broker, "unused"), Timing())


async def test_a_failed_read_is_unknown_not_empty(rig: Rig, probe: Probe) -> None:
    await probe.subscribe(TOPICS.bridge_logging)
    await rig.lock.control({"fail_next": 1})
    with pytest.raises(CommandTimedOut) as caught:
        await rig.driver.read()
    assert "'get'" in caught.value.detail  # the bridge's error line, for the log
    assert rig.driver.table is None  # slot 1 was never read: still unknown
    assert (await rig.driver.read()).value(1) == PIN


async def test_the_simulated_bridge_reads_every_user(rig: Rig, probe: Probe) -> None:
    await probe.subscribe(TOPICS.state)
    await probe.publish(TOPICS.get, read_all_payload())
    stale = await probe.next(TOPICS.state)  # a frame of the lock first: the cache as it was
    assert stale["users"] == {}
    state = await probe.next(TOPICS.state)
    assert state["users"] == {
        "0": {"status": "enabled", "pin_code": PIN},
        **{str(user): {"status": "available", "pin_code": ""} for user in range(1, 10)},
    }
    assert "battery" in state


# -- Zigbee2MQTT played by hand -------------------------------------------------------------------


@asynccontextmanager
async def hand_played(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> AsyncIterator[Zigbee2MqttDriver]:
    config = zb_config(make_config)
    await probe.subscribe(TOPICS.set, TOPICS.get)
    await probe.publish(TOPICS.bridge_state, {"state": "online"}, retain=True)
    await probe.publish(TOPICS.availability, {"state": "online"}, retain=True)
    session = session_for(broker, "gateway")
    driver = create_driver(device(config), session, config.timing)
    assert isinstance(driver, Zigbee2MqttDriver)
    wakes = Wakes()
    await driver.start(wakes)
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.online)
        yield driver


def users(**entries: dict[str, str]) -> dict[str, Any]:
    """A state message whose ``users`` are ``u<N>=entry``."""
    return {"battery": 70, "users": {key[1:]: entry for key, entry in entries.items()}}


AVAILABLE = {"status": "available"}


async def test_a_republished_cache_is_not_taken_for_the_answer(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    async with hand_played(make_config, broker, probe) as driver:
        await probe.publish(TOPICS.state, users(u2=AVAILABLE))  # the cache, as Z2M has it
        write = asyncio.create_task(driver.set_code(3, "0123"), name="test-set")
        assert await probe.next(TOPICS.set) == set_payload(2, "0123")
        assert await probe.next(TOPICS.get) == read_payload(2)
        # The battery changed just before the answer: the old cache comes again first.
        await probe.publish(TOPICS.state, users(u2=AVAILABLE))
        await probe.publish(TOPICS.state, users(u2={"status": "enabled", "pin_code": "0123"}))
        await write
        assert value(driver, 3) == "0123"

        # Accepted and not applied: the unchanged entry is the answer, once nothing else came.
        loop = asyncio.get_running_loop()
        started = loop.time()
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        write = asyncio.create_task(driver.set_code(4, "4444"), name="test-set")
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        with pytest.raises(CommandFailed) as caught:
            await write
        assert caught.value.reason == "not_applied"
        assert loop.time() - started >= TIMEOUT * QUIET_SHARE
        assert value(driver, 4) is None

        # A bridge error says at once that the unchanged entry is the answer.
        started = loop.time()
        write = asyncio.create_task(driver.set_code(4, "4444"), name="test-set")
        await probe.next(TOPICS.get)
        await probe.publish(
            TOPICS.bridge_logging,
            {"level": "error", "message": "Publish 'set' 'pin_code' to 'zb' failed: 'timeout'"},
        )
        await probe.publish(TOPICS.state, users(u3=AVAILABLE))
        with pytest.raises(CommandFailed) as caught:
            await write
        assert caught.value.reason == "not_applied"
        assert loop.time() - started < TIMEOUT

        # A read takes the first entry for its user, however old it looks.
        read = asyncio.create_task(driver.read(), name="test-read")
        for user in range(10):
            assert await probe.next(TOPICS.get) == read_payload(user)
            await probe.publish(TOPICS.state, {"users": {str(user): AVAILABLE}})
        assert (await read).slots == dict.fromkeys(range(1, 11))


async def test_unrelated_and_event_messages_answer_nothing(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    async with hand_played(make_config, broker, probe) as driver:
        clear = asyncio.create_task(driver.clear_slot(1), name="test-clear")
        await probe.next(TOPICS.set)
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, {"battery": 60})  # nothing about user 0
        # A keypad event about another user: its users are the old cache, not an answer.
        await probe.publish(
            TOPICS.state,
            {"action": "pin_code_added", "action_user": 5, "users": {"0": {"status": "enabled"}}},
        )
        await probe.publish(TOPICS.state, users(u0=AVAILABLE))
        await clear
        assert value(driver, 1) is None
        # Then the event's re-read of user 5 goes out.
        assert await probe.next(TOPICS.get) == read_payload(5)
        await probe.publish(TOPICS.state, users(u5={"status": "enabled", "pin_code": "5555"}))
        await eventually(lambda: value(driver, 6) == "5555")


async def test_a_disabled_user_is_no_success(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    async with hand_played(make_config, broker, probe) as driver:
        write = asyncio.create_task(driver.set_code(2, "2222"), name="test-set")
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, users(u1={"status": "disabled", "pin_code": "2222"}))
        with pytest.raises(CommandFailed) as caught:
            await write
        assert caught.value.reason == "not_applied"
        assert value(driver, 2) is Unreadable.OCCUPIED  # held, but it opens nothing
        # An event about a user the lock cannot have is logged and dropped.
        await probe.publish(TOPICS.state, {"action": "pin_code_added", "action_user": 10})
        write = asyncio.create_task(driver.set_code(3, "3333"), name="test-set")
        assert await probe.next(TOPICS.get) == read_payload(2)  # no re-read of user 10 first
        await probe.publish(TOPICS.state, users(u2={"status": "enabled", "pin_code": "3333"}))
        await write
        assert probe.seen(TOPICS.get) == [read_payload(1), read_payload(2)]


# -- end to end ----------------------------------------------------------------------------------


async def test_through_the_gateway(make_config: ConfigFactory) -> None:
    config = zb_config(make_config)
    async with running_site(config) as site:
        events = await Recorder.events(site)
        lock = site.lock(ZB)
        cid = await new_code(site, "4826", device_id=ZB, name="Gus")
        await barrier(site)
        got = await get_code(site, cid)
        assert (got["status"], got["errors"]) == ("set", [])
        slot = got["slot"]
        assert lock.slots[slot] == "4826"

        # Cleared at the keypad: the action makes the driver look, the gateway restores it.
        changed = is_event("access_code.modified_external_to_gateway", access_code_id=cid)
        await lock.control({"keypad": {"slot": slot, "code": None}})
        await events.wait(changed)
        await barrier(site)
        assert lock.slots[slot] == "4826"
        assert (await get_code(site, cid))["status"] == "set"

        # A code added at the keypad in a free slot shows up as unmanaged.
        await lock.control({"keypad": {"slot": 9, "code": "9191"}})

        async def unmanaged() -> list[tuple[int, str]]:
            reply = await site.api.call("access_codes/unmanaged/list", device_id=ZB)
            return [(c["slot"], c["code"]) for c in reply["access_codes"]]

        async with asyncio.timeout(5):
            while (9, "9191") not in await unmanaged():
                await asyncio.sleep(0.02)
        assert (1, PIN) in await unmanaged()


async def test_masked_pins_through_the_gateway(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """expose_pin off is a setting gone wrong: codes still go on, but the device says why their
    PINs cannot be checked, and the log says it once."""
    async with running_site(zb_config(make_config, expose_pin=False)) as site:
        cid = await new_code(site, "4826", device_id=ZB)
        await barrier(site)
        got = await get_code(site, cid)
        assert got["status"] == "set"
        assert [e["error_code"] for e in got["errors"]] == ["invalid_report_from_device"]
        assert "expose_pin" in got["errors"][0]["message"]
        assert site.lock(ZB).slots[got["slot"]] == "4826"
        assert got["slot"] != 1  # slot 1 is occupied, though its PIN cannot be read
    assert logged(capsys.readouterr().out, "z2m.pins_hidden") == 1


async def test_resync_reads_only_the_slots_the_gateway_answers_for(
    make_config: ConfigFactory,
) -> None:
    """A Zigbee lock pays battery and airtime for every read: after the first full read, the
    periodic resync asks only for the slots holding the gateway's codes."""
    config = make_config(
        timing={"command_timeout": TIMEOUT, "resync_interval": "15m"},
        devices=[{"device_id": ZB, "driver": "zigbee2mqtt", "slots": 10}],
        simulator={"latency": "1ms"},
    )
    async with running_site(config) as site:
        cid = await new_code(site, "4826", device_id=ZB)
        await barrier(site)
        slot = (await get_code(site, cid))["slot"]
        gets = await site.api.subscribe(TOPICS.get)
        await site.advance(15 * 60)
        asked = []
        while not gets.empty():
            message = await gets.get()
            assert isinstance(message.payload, bytes)
            asked.append(json.loads(message.payload)["pin_code"]["user"])
        assert asked == [slot - 1]  # one read, of the code's own slot (users count from 0)


# -- issue 8: what the real stack does, through the truthful simulated lock ------------------------


async def test_a_poisoned_entry_disables_nothing(
    make_config: ConfigFactory, broker: Broker
) -> None:
    """Finding 1: reads past the lock's real users give ``not_supported_255``, which rides along
    in every later message; those slots are occupied and unreadable, the others work on."""
    async with rigged(zb_config(make_config, lock_users=6), broker) as rig:
        table = await rig.driver.read()
        assert [table.value(slot) for slot in range(6, 11)] == [None, *[Unreadable.OCCUPIED] * 4]
        assert rig.driver.refused_report is None
        lock = rig.lock
        assert isinstance(lock, SimulatedZigbee2MqttLock)
        assert lock.cache[9] == {"status": "not_supported_255"}  # in every message from now on
        await rig.driver.set_code(2, "2222")
        await rig.driver.clear_slot(1)
        assert (value(rig.driver, 1), value(rig.driver, 2)) == (None, "2222")


async def test_a_poisoned_lock_through_the_gateway(make_config: ConfigFactory) -> None:
    async with running_site(zb_config(make_config, lock_users=3)) as site:
        cids = [await new_code(site, pin, device_id=ZB) for pin in ("1357", "2468", "3579")]
        await barrier(site)
        got = [await get_code(site, cid) for cid in cids]
        # Slot 1 holds the lock's own PIN, slots 2-3 are free, 4-10 cannot be described.
        assert sorted((c["status"], c["slot"]) for c in got) == [
            ("set", 2),
            ("set", 3),
            ("unset", None),
        ]
        assert error_codes(await device_json(site, ZB)) == set()


async def test_failed_writes_keep_the_pin_out_of_the_log(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 2: herdsman's error line quotes the PIN; neither the log nor the error says it."""
    async with running_site(zb_config(make_config)) as site:
        await site.lock(ZB).control({"fail_next": 1})
        cid = await new_code(site, "7777", device_id=ZB)
        await barrier(site)
        assert (await get_code(site, cid))["status"] == "set"  # on the retry
    out = capsys.readouterr().out
    assert logged(out, "z2m.bridge_error") == 1
    assert "pincodevalue" in out  # the line is there, redacted
    assert "7777" not in out


async def test_a_failed_write_has_no_pin_in_its_error(rig: Rig) -> None:
    await rig.lock.control({"fail_next": 1})
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "7777")
    assert caught.value.reason == "not_applied"  # the read-back shows the write did not land
    await rig.lock.control({"fail_next": 1, "latency": 0.2})  # and now no read-back either
    with pytest.raises(CommandTimedOut) as timed_out:
        await rig.driver.set_code(2, "7777")
    assert "7777" not in str(timed_out.value)


async def test_a_stale_republish_is_no_answer_to_a_read(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """Finding 3: a PIN deleted at the keypad, then the old cache republished before the
    answer: the deletion is not missed."""
    async with hand_played(make_config, broker, probe) as driver:
        cached = users(u4={"status": "enabled", "pin_code": "4444"})
        read = asyncio.create_task(driver.read([5]), name="test-read")
        await probe.next(TOPICS.get)
        await probe.publish(TOPICS.state, cached)
        assert await read  # never seen before: believed once the lock stayed quiet
        assert value(driver, 5) == "4444"
        await probe.publish(
            TOPICS.state,
            {
                **cached,
                "action": "pin_code_deleted",
                "action_user": 4,
                "action_source_name": KEYPAD,
            },
        )
        assert await probe.next(TOPICS.get) == read_payload(4)
        await probe.publish(TOPICS.state, {**cached, "battery": 69})  # a battery report first
        await probe.publish(TOPICS.state, users(u4={"status": "available", "pin_code": ""}))
        await eventually(lambda: value(driver, 5) is None)


async def test_only_pin_code_errors_concern_a_write(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """Finding 5: the lock's other errors are logged, and pinned on no command."""
    async with hand_played(make_config, broker, probe) as driver:
        await probe.publish(TOPICS.state, users(u2={"status": "available", "pin_code": ""}))
        write = asyncio.create_task(driver.set_code(3, "0123"), name="test-set")
        await probe.next(TOPICS.set)
        for line in (
            "Failed to configure 'zb', attempt 2 (Error: timeout)",
            "Publish 'set' 'state' to 'zb' failed: 'Error: timeout'",
            "Publish 'set' 'pin_code' to 'zb' failed: 'closuresDoorLock.setPinCode"
            '({"userid":7,"pincodevalue":"1"}) failed\'',  # another user's
        ):
            await probe.publish(TOPICS.bridge_logging, {"level": "error", "message": line})
        assert await probe.next(TOPICS.get) == read_payload(2)
        await probe.publish(TOPICS.state, users(u2={"status": "available", "pin_code": ""}))
        await probe.publish(TOPICS.state, users(u2={"status": "enabled", "pin_code": "0123"}))
        await write
        assert value(driver, 3) == "0123"


async def test_slots_beyond_the_device_definition(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 6: Zigbee2MQTT refuses users past its definition's pinCodeCount: one clear
    configuration error, no endless timeouts, and the slots below go on working."""
    config = zb_config(make_config, pin_code_count=8)
    async with running_site(config) as site:
        cid = await new_code(site, "4826", device_id=ZB)
        await barrier(site)
        found = await device_json(site, ZB)
        assert error_codes(found) == {"invalid_report_from_device"}
        assert "set the device's slots to 8" in found["errors"][0]["message"]
        assert (await get_code(site, cid))["status"] == "set"
        assert site.gateway.reconciler is not None
        worker = site.gateway.reconciler.workers[ZB]
        assert isinstance(worker.driver, Zigbee2MqttDriver)
        with pytest.raises(CommandFailed) as caught:
            await worker.driver.set_code(9, "9999")  # refused here, nothing sent
        assert caught.value.reason == "slot_out_of_range"
        table = worker.driver.table
        assert table is not None
        assert (table.value(8), table.value(9)) == (None, Unreadable.UNKNOWN)
    out = capsys.readouterr().out
    assert logged(out, "z2m.slots_beyond_lock") == 1
    assert '"configured_slots": 10' in out
    assert logged(out, "reconciler.no_answer") == 0


async def test_the_echo_of_a_write_is_not_read_again(rig: Rig, probe: Probe) -> None:
    """Finding 7: the lock reports the gateway's own write (source ``rf``): no second read."""
    await probe.subscribe(TOPICS.get, TOPICS.state)
    await rig.driver.set_code(2, "2222")
    echo = await probe.next_where(TOPICS.state, lambda m: "action" in m)
    assert (echo["action"], echo["action_source_name"]) == ("pin_code_added", "rf")
    await rig.driver.clear_slot(2)  # what follows the first write, in order
    assert probe.seen(TOPICS.get) == [read_payload(1), read_payload(1)]


async def test_a_write_is_read_back_once_it_has_landed(rig: Rig, probe: Probe) -> None:
    """Finding 8: Zigbee2MQTT serves /get and /set at once and a slow lock stores a PIN after
    answering a read: the read-back waits for the lock's word that the write is done."""
    await rig.lock.control({"latency": TIMEOUT / 20})  # a write takes 3 of them
    await probe.subscribe(TOPICS.get, TOPICS.state)
    await rig.driver.set_code(2, "2222")
    assert value(rig.driver, 2) == "2222"
    order = [topic for topic, _ in probe.history if topic in (TOPICS.get, TOPICS.state)]
    # After the lock's response to the write (its echo event may come before or after).
    assert order.index(TOPICS.get) > 0


async def test_pins_hidden_after_the_fact(rig: Rig) -> None:
    """Finding 9: expose_pin turned off after PINs were read: the deep merge keeps old PINs,
    which the driver must not take for the lock's."""
    await rig.driver.read()
    lock = rig.lock
    assert isinstance(lock, SimulatedZigbee2MqttLock)
    lock.expose_pin = False
    await rig.driver.clear_slot(1)  # reads back {"status": "available", "pin_code": "8642"}
    assert lock.cache[0] == {"status": "available", "pin_code": PIN}
    assert value(rig.driver, 1) is None
    assert rig.driver.refused_report is not None
    assert rig.driver.refused_report.startswith("expose_pin: ")
    await rig.driver.set_code(3, "3333")
    await rig.driver.set_code(1, "1111")  # the cache says "8642" for user 0 still
    assert lock.cache[0] == {"status": "enabled", "pin_code": PIN}
    assert value(rig.driver, 1) is Unreadable.OCCUPIED
    lock.expose_pin = True
    await rig.driver.read([2])  # an empty slot's "": PINs show again
    assert rig.driver.refused_report is None


async def test_a_lock_without_availability_says_what_to_check(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """Zigbee2MQTT's availability is off by default: the device says what to turn on."""
    config = zb_config(make_config)
    session = session_for(broker, "gateway")
    driver = create_driver(device(config), session, config.timing)
    wakes = Wakes()
    await driver.start(wakes)
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.not_found is not None)
        assert "nor Zigbee2MQTT" in (driver.not_found or "")
        await probe.publish(TOPICS.bridge_state, {"state": "online"}, retain=True)
        await probe.publish(TOPICS.state, users(u0=AVAILABLE))
        await wakes.until(lambda: "turn on Zigbee2MQTT's availability" in (driver.not_found or ""))
        assert not driver.online
        await probe.publish(TOPICS.availability, {"state": "online"}, retain=True)
        await wakes.until(lambda: driver.not_found is None and driver.online)
