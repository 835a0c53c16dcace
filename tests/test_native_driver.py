"""The native driver against the simulator (or a hand-played lock) on a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from drivers.base import (
    CommandFailed,
    CommandTimedOut,
    EntryEvent,
    EntryKind,
    EntryMethod,
    SlotTable,
)
from drivers.native.driver import NativeDriver, create_driver
from drivers.native.protocol import Topics
from drivers.sim_settings import simulator_settings
from gateway.config import Config, DeviceConfig
from tests.broker import Broker
from tests.conftest import ConfigFactory, codes_on_lock
from tests.helpers import (
    DriverRig,
    Probe,
    Wakes,
    device_config,
    driver_rig,
    observed,
    running,
    session_for,
)

PIN = "8642"  # in slot 1 of the front door at start
TIMEOUT = 0.2  # command_timeout in these tests


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(
        timing={"command_timeout": TIMEOUT},
        simulator={"latency": "1ms", **codes_on_lock({1: PIN})},
    )


def device(config: Config, device_id: str) -> DeviceConfig:
    return next(d for d in config.devices if d.device_id == device_id)


Rig = DriverRig[NativeDriver]


@pytest.fixture
async def rig(config: Config, broker: Broker) -> AsyncIterator[Rig]:
    async with driver_rig(config, broker, "front_door", create_driver, observed) as instance:
        yield instance


def value(driver: NativeDriver, slot: int) -> object:
    assert driver.table is not None
    return driver.table.value(slot)


# -- happy paths ---------------------------------------------------------------------------


async def test_start_observes_availability_and_table(rig: Rig) -> None:
    table = rig.driver.table
    assert rig.driver.online
    assert table is not None
    assert (table.capacity, table.code_lengths) == (30, (4, 8))
    assert table.value(1) == PIN
    assert table.value(2) is None
    assert rig.wakes.count >= 2  # online, then the table (or both at once)


async def test_read_returns_what_the_lock_republished(rig: Rig) -> None:
    rig.lock.slots[5] = "5555"  # changed without telling anyone
    table = await rig.driver.read()
    assert table.value(5) == "5555"
    assert table is rig.driver.table


async def test_identical_republishes_do_not_wake(rig: Rig) -> None:
    before = rig.wakes.count
    await rig.driver.read()
    await rig.lock.announce()  # availability and table again, unchanged
    await rig.driver.read()  # and the announcement has been seen once this is answered
    assert rig.wakes.count == before


# -- faults ----------------------------------------------------------------------------------


async def test_applied_silently_times_out_but_read_shows_it(rig: Rig) -> None:
    await rig.lock.control({"apply_silently_next": 1})
    with pytest.raises(CommandTimedOut):
        await rig.driver.set_code(2, "2222")
    assert (await rig.driver.read()).value(2) == "2222"


async def test_offline_and_back(rig: Rig, probe: Probe) -> None:
    command_topic = rig.driver.topics.command
    await probe.subscribe(command_topic)
    woken = rig.wakes.count
    await rig.lock.control({"online": False})
    await rig.wakes.until(lambda: not rig.driver.online)
    assert rig.wakes.count == woken + 1
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "offline"
    await rig.lock.control({"online": True})
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.driver.read()
    # The refused set never went out: the read is the only command the broker saw.
    assert [c["op"] for c in probe.seen(command_topic)] == ["read"]


async def test_keypad_change_wakes(rig: Rig, probe: Probe, config: Config) -> None:
    woken = rig.wakes.count
    control = f"{simulator_settings(config).control_topic}/front_door/set"
    await probe.publish(control, {"keypad": {"slot": 4, "code": "4444"}})
    await rig.wakes.until(lambda: value(rig.driver, 4) == "4444")
    assert rig.wakes.count == woken + 1


async def test_duplicates(rig: Rig) -> None:
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, PIN)
    assert caught.value.reason == "duplicate_code"
    await rig.lock.control({"reject_duplicates": False})
    await rig.driver.set_code(2, PIN)
    assert value(rig.driver, 2) == PIN


async def test_ignored_write_answers_ok_but_read_tells(rig: Rig) -> None:
    await rig.lock.control({"ignore_writes_next": 1})
    await rig.driver.set_code(2, "2222")
    assert value(rig.driver, 2) is None
    assert (await rig.driver.read()).value(2) is None


async def test_slow_lock(rig: Rig) -> None:
    loop = asyncio.get_running_loop()
    await rig.lock.control({"latency": TIMEOUT / 2})
    started = loop.time()
    await rig.driver.set_code(2, "2222")
    assert loop.time() - started >= TIMEOUT / 2
    await rig.lock.control({"latency": TIMEOUT * 2})
    with pytest.raises(CommandTimedOut):
        await rig.driver.read()


async def test_refusals_from_the_lock(rig: Rig) -> None:
    for slot, code, reason in ((31, "1234", "slot_out_of_range"), (2, "12", "invalid_code")):
        with pytest.raises(CommandFailed) as caught:
            await rig.driver.set_code(slot, code)
        assert caught.value.reason == reason


async def test_broker_outage(rig: Rig, broker: Broker) -> None:
    woken = rig.wakes.count
    broker.stop()
    await rig.wakes.until(lambda: not rig.driver.online)
    assert rig.wakes.count == woken + 1
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.read()
    assert caught.value.reason == "not_connected"
    broker.start()  # empty: the simulator announces its locks again on reconnect
    await rig.wakes.until(lambda: rig.driver.online)
    assert (await rig.driver.read()).value(1) == PIN


async def test_garbage_from_the_lock_is_ignored(rig: Rig, probe: Probe) -> None:
    topics = rig.driver.topics
    table = rig.driver.table
    for topic in (topics.availability, topics.slots, topics.result):
        await probe.publish(topic, b"\x00 not json")
    await probe.publish(topics.slots, {"slots": {"1": 1234}})
    await probe.publish(topics.result, {"id": "nobody-asked", "ok": True})
    # A refused table is the one thing said about it: the worker must hear of it.
    refused = "slots.1: expected a PIN string or null"
    await rig.wakes.until(lambda: rig.driver.refused_report == refused)
    woken = rig.wakes.count
    await rig.driver.read()  # everything above was handled before this answer
    assert rig.driver.online
    assert rig.driver.table == table
    assert rig.driver.refused_report is None  # the lock's table in answer to the read was good
    assert rig.wakes.count == woken + 1  # for that, and for nothing else


# -- a lock played by hand ---------------------------------------------------------------------


@pytest.fixture
def bare_config(make_config: ConfigFactory) -> Config:
    return make_config(
        timing={"command_timeout": 2},
        devices=[
            {
                "device_id": "hand",
                "name": "Played by hand",
                "driver": "native",
                "topic": "hand/lock",
                "slots": 12,
                "code_lengths": [5, 6],
            }
        ],
    )


async def test_a_hand_played_lock(bare_config: Config, broker: Broker, probe: Probe) -> None:
    topics = Topics("hand/lock")
    await probe.subscribe(topics.command)
    await probe.publish(topics.availability, {"state": "online", "battery": 90}, retain=True)
    await probe.publish(topics.slots, {"slots": {"1": "12345"}, "firmware": "2.1"}, retain=True)
    session = session_for(broker, "gateway")
    driver = create_driver(device_config(bare_config, "hand"), session, bare_config.timing)
    wakes = Wakes()
    await driver.start(wakes)
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.online and driver.table is not None)
        # The lock left out capacity and code lengths: the config's stand in.
        assert driver.table == SlotTable(capacity=12, code_lengths=(5, 6), slots={1: "12345"})

        async def answer(*replies: tuple[str, object]) -> str:
            command = await probe.next(topics.command)
            for topic, payload in replies:
                body = {**payload, "id": command["id"]} if isinstance(payload, dict) else payload
                await probe.publish(topic, json.dumps(body))
            return str(command["op"])

        # A read answered without the table first breaks the contract: not trusted.
        read = asyncio.create_task(driver.read(), name="test-read")
        assert await answer((topics.result, {"ok": True})) == "read"
        with pytest.raises(CommandFailed) as caught:
            await read
        assert caught.value.reason == "internal"

        # A result carrying the table is fine; the table that counts is T/slots.
        read = asyncio.create_task(driver.read(), name="test-read")
        await answer(
            (topics.slots, {"capacity": 10, "slots": {"1": "12345", "2": "222222"}}),
            (topics.result, {"ok": True, "slots": {"1": "wrong"}}),
        )
        table = await read
        assert (table.capacity, table.code_lengths, table.value(2)) == (10, (5, 6), "222222")

        # A refusal without a reason.
        write = asyncio.create_task(driver.set_code(3, "33333"), name="test-set")
        assert await answer((topics.result, {"ok": False})) == "set"
        with pytest.raises(CommandFailed) as caught:
            await write
        assert caught.value.reason == "internal"


async def test_without_a_broker_nothing_is_sent(config: Config, broker: Broker) -> None:
    session = session_for(broker, "never-started")
    driver = create_driver(device_config(config, "front_door"), session, config.timing)
    await driver.start(Wakes())
    assert not driver.online
    with pytest.raises(CommandFailed) as caught:
        await driver.clear_slot(1)
    assert caught.value.reason == "not_connected"


async def test_create_driver_wants_native_options(
    make_config: ConfigFactory, broker: Broker
) -> None:
    config = make_config(
        devices=[{"device_id": "z", "name": "Z", "driver": "zigbee2mqtt", "slots": 10}]
    )
    with pytest.raises(TypeError):
        create_driver(device_config(config, "z"), session_for(broker, "unused"), config.timing)


# -- entry events (contract section 11) -----------------------------------------------------


async def test_the_first_event_shows_the_lock_reports_its_operations(rig: Rig) -> None:
    assert rig.driver.has_entry_events is False
    assert rig.driver.take_entry_events() == []
    await rig.lock.control({"enter": PIN, "operate": {"type": "locked", "method": "automatic"}})
    await rig.wakes.until(lambda: rig.driver.has_entry_events and len(rig.driver._entries) == 2)
    assert rig.driver.take_entry_events() == [
        EntryEvent(EntryKind.UNLOCKED, EntryMethod.KEYCODE, 1),
        EntryEvent(EntryKind.LOCKED, EntryMethod.AUTOMATIC),
    ]
    assert rig.driver.take_entry_events() == []  # each is handed out once


async def test_an_event_beyond_the_capacity_names_no_slot(rig: Rig, probe: Probe) -> None:
    topic = Topics("locks/front_door").event
    await probe.publish(topic, {"type": "unlocked", "method": "keycode", "slot": 31})
    await rig.wakes.until(lambda: bool(rig.driver._entries))
    # Slot 31 of a 30-slot lock: the door opened by keypad, which PIN did it cannot be told.
    assert rig.driver.take_entry_events() == [EntryEvent(EntryKind.UNLOCKED, EntryMethod.KEYCODE)]
