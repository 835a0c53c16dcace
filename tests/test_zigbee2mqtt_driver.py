"""The zigbee2mqtt driver against the simulated lock on a real broker: registration, reads,
writes, failures, time-outs, masked PINs and an offline lock; and issue 8, what the real stack
does, through the truthful simulated lock (some of it end to end through the gateway).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest

from drivers.base import CommandFailed, CommandTimedOut, Unreadable
from drivers.registry import FACTORIES
from drivers.sim import simulated_lock_class
from drivers.sim_settings import simulator_settings
from drivers.zigbee2mqtt.driver import QUIET_SHARE, Zigbee2MqttDriver, create_driver
from drivers.zigbee2mqtt.protocol import (
    KEYPAD,
    clear_payload,
    read_all_payload,
    read_payload,
    set_payload,
)
from drivers.zigbee2mqtt.simulator import SimulatedZigbee2MqttLock
from gateway.config import Config, DeviceConfig, Timing
from gateway.mqtt import MqttSession
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import barrier, error_codes, get_code, new_code, running_site
from tests.harness import device as device_json
from tests.helpers import (
    DriverRig,
    Probe,
    Wakes,
    driver_rig,
    running,
    session_for,
    untimed,
)
from tests.zigbee2mqtt_helpers import (
    AVAILABLE,
    PIN,
    TIMEOUT,
    TOPICS,
    ZB,
    device,
    hand_played,
    logged,
    read_when_asked,
    users,
    value,
    zb_config,
)


def test_driver_and_simulated_lock_are_registered() -> None:
    assert simulated_lock_class("zigbee2mqtt") is SimulatedZigbee2MqttLock
    assert FACTORIES["zigbee2mqtt"] is create_driver


# -- the driver against the simulated lock -----------------------------------------------------


Rig = DriverRig[Zigbee2MqttDriver]


def create_zigbee2mqtt(
    device: DeviceConfig, session: MqttSession, timing: Timing
) -> Zigbee2MqttDriver:
    driver = create_driver(device, session, timing)
    assert isinstance(driver, Zigbee2MqttDriver)
    return driver


def rigged(config: Config, broker: Broker) -> AbstractAsyncContextManager[Rig]:
    """The driver once its lock is online: its state message is no table, nothing is read."""
    return driver_rig(config, broker, ZB, create_zigbee2mqtt, lambda driver: driver.online)


@pytest.fixture
async def rig(make_config: ConfigFactory, broker: Broker) -> AsyncIterator[Rig]:
    async with rigged(zb_config(make_config), broker) as instance:
        yield instance


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
    # The driver asks its worker (played here) to read the slot: it sends nothing itself.
    assert await read_when_asked(rig.driver) == {4}
    assert value(rig.driver, 4) == "4444"
    event = await probe.next_where(TOPICS.state, lambda m: "action" in m)
    assert (event["action"], event["action_user"]) == ("pin_code_added", 3)
    assert event["action_source_name"] == "keypad"
    assert event["users"]["3"] == {"status": "available", "pin_code": ""}
    # Finding 3: the simulated lock republishes that stale cache again before its answer.
    assert probe.seen(TOPICS.get) == [read_payload(3)]
    await probe.publish(config_topic, {"keypad": {"slot": 4, "code": None}})
    assert await read_when_asked(rig.driver) == {4}
    assert value(rig.driver, 4) is None


@pytest.fixture
def config_topic(make_config: ConfigFactory) -> str:
    return f"{simulator_settings(make_config()).control_topic}/{ZB}/set"


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


async def test_an_offline_bridge_takes_the_lock_offline(rig: Rig, probe: Probe) -> None:
    """The lock's own availability is the contract suite's (tests/test_driver_contract.py);
    Zigbee2MQTT's bridge going offline is this driver's own signal."""
    await probe.subscribe(TOPICS.set)
    await probe.publish(TOPICS.bridge_state, {"state": "offline"}, retain=True)
    await rig.wakes.until(lambda: not rig.driver.online)
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.read()
    assert caught.value.reason == "offline"
    await probe.publish(TOPICS.bridge_state, {"state": "online"}, retain=True)
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.driver.set_code(2, "2222")
    assert probe.seen(TOPICS.set) == [set_payload(1, "2222")]  # nothing went out while offline


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
    assert "7777" not in untimed(out)


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
        reread = asyncio.create_task(read_when_asked(driver), name="test-reread")
        assert await probe.next(TOPICS.get) == read_payload(4)
        await probe.publish(TOPICS.state, {**cached, "battery": 69})  # a battery report first
        await probe.publish(TOPICS.state, users(u4={"status": "available", "pin_code": ""}))
        assert await reread == {5}
        assert value(driver, 5) is None


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
