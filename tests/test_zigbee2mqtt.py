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
from drivers.zigbee2mqtt.driver import Zigbee2MqttDriver, create_driver
from drivers.zigbee2mqtt.protocol import (
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
    read_all_payload,
    read_payload,
    set_payload,
)
from drivers.zigbee2mqtt.simulator import SimulatedZigbee2MqttLock
from gateway.config import Config, DeviceConfig, Timing
from gateway.mqtt import encode
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import Recorder, barrier, get_code, is_event, new_code, running_site
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
        b'{"users": {"one": {"status": "enabled"}}}',
        b'{"users": {"01": {"status": "enabled"}}}',
        b'{"users": {"1": {"status": "occupied"}}}',
        b'{"users": {"1": {"status": "enabled", "pin_code": 123}}}',  # leading zeros lost
        b'{"action": "pin_code_added", "action_user": "x"}',
    ],
)
def test_bad_state_messages(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_state(payload)


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


async def test_refused_by_the_lock(rig: Rig) -> None:
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, PIN)  # a duplicate
    assert caught.value.reason == "not_applied"
    assert value(rig.driver, 2) is None


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
    await rig.driver.set_code(3, "3333")  # its answer comes after the stale message
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
    assert event["users"]["3"] == {"status": "available"}
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
    state = await probe.next(TOPICS.state)
    assert state["users"] == {
        "0": {"status": "enabled", "pin_code": PIN},
        **{str(user): {"status": "available"} for user in range(1, 10)},
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
        assert loop.time() - started >= TIMEOUT
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


async def test_masked_pins_through_the_gateway(make_config: ConfigFactory) -> None:
    async with running_site(zb_config(make_config, expose_pin=False)) as site:
        cid = await new_code(site, "4826", device_id=ZB)
        await barrier(site)
        got = await get_code(site, cid)
        assert (got["status"], got["errors"]) == ("set", [])
        assert site.lock(ZB).slots[got["slot"]] == "4826"
        assert got["slot"] != 1  # slot 1 is occupied, though its PIN cannot be read


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
