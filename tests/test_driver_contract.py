"""The driver contract (``drivers.base.Driver``), once, over every driver: each against its
simulated lock on a real broker. What only one protocol does stays in that driver's own file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from drivers.base import CommandFailed, CommandTimedOut, Driver, Unreadable
from drivers.registry import FACTORIES
from gateway.config import Config, Timing
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.helpers import DriverRig, driver_rig

LOCK = "lock"
PIN = "8642"  # in slot 1 at start
SLOTS = 10
TIMEOUT = 0.3  # command_timeout


@dataclass(frozen=True)
class Flavour:
    driver: str
    options: dict[str, Any]
    refusal: str  # the reason a write the lock would not take is refused with
    ready: Callable[[Driver], bool]  # the driver has seen what it needs to go on

    def __str__(self) -> str:
        return self.driver


def has_read_every_slot(driver: Driver) -> bool:
    table = driver.table
    return driver.online and table is not None and table.value(SLOTS) is not Unreadable.UNKNOWN


FLAVOURS = [
    Flavour("native", {}, "busy", has_read_every_slot),
    # Zigbee2MQTT's state message is no table: it knows nothing before a read.
    Flavour("zigbee2mqtt", {}, "not_applied", lambda driver: driver.online),
    Flavour("zwave_js_ui", {"node_id": 5}, "not_applied", has_read_every_slot),
]


@pytest.fixture(params=FLAVOURS, ids=str)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    found: Flavour = request.param
    return found


@pytest.fixture
def config(make_config: ConfigFactory, flavour: Flavour) -> Config:
    lock: dict[str, Any] = {"initial_codes": {1: PIN}}
    if flavour.driver == "zigbee2mqtt":
        lock["expose_pin"] = True
    return make_config(
        timing={"command_timeout": TIMEOUT},
        devices=[{"device_id": LOCK, "driver": flavour.driver, "slots": SLOTS, **flavour.options}],
        simulator={"latency": "1ms", "locks": {LOCK: lock}},
    )


@asynccontextmanager
async def rigged(
    config: Config, broker: Broker, flavour: Flavour, timing: Timing | None = None
) -> AsyncIterator[DriverRig[Driver]]:
    create = FACTORIES[flavour.driver]
    async with driver_rig(config, broker, LOCK, create, flavour.ready, timing) as rig:
        yield rig


@pytest.fixture
async def rig(config: Config, broker: Broker, flavour: Flavour) -> AsyncIterator[DriverRig[Driver]]:
    async with rigged(config, broker, flavour) as instance:
        yield instance


async def test_start_observes_the_lock(rig: DriverRig[Driver]) -> None:
    assert rig.driver.online
    table = await rig.driver.read()
    assert table.capacity == SLOTS
    assert table.value(1) == PIN
    assert all(table.value(n) is None for n in range(2, SLOTS + 1))
    assert table == rig.driver.table


async def test_a_change_at_the_keypad_is_seen_or_asked_for(rig: DriverRig[Driver]) -> None:
    """A lock whose reports show its slots is seen at once; one that only says a slot changed
    (Zigbee2MQTT) makes the driver ask its worker (played here) to read it: it sends nothing."""
    await rig.driver.read()
    assert rig.driver.take_read_requests() == frozenset()
    await rig.lock.control({"keypad": {"slot": 4, "code": "4444"}})
    asked: set[int] = set()

    def noticed() -> bool:
        asked.update(rig.driver.take_read_requests())
        table = rig.driver.table
        return bool(asked) or (table is not None and table.value(4) == "4444")

    await rig.wakes.until(noticed)
    if asked:
        assert asked == {4}
        assert (await rig.driver.read(asked)).value(4) == "4444"
    table = rig.driver.table
    assert table is not None
    assert table.value(4) == "4444"


async def test_a_set_code_is_read_back(rig: DriverRig[Driver]) -> None:
    await rig.driver.set_code(3, "0123")  # a leading zero: PINs are strings all the way
    assert rig.lock.slots[3] == "0123"
    assert (await rig.driver.read()).value(3) == "0123"


async def test_a_cleared_slot_is_read_back_empty(rig: DriverRig[Driver]) -> None:
    await rig.driver.clear_slot(1)
    assert 1 not in rig.lock.slots
    assert (await rig.driver.read()).value(1) is None


async def test_a_refused_write_raises_command_failed(
    rig: DriverRig[Driver], flavour: Flavour
) -> None:
    await rig.lock.control({"fail_next": 1})
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == flavour.refusal
    assert not isinstance(caught.value, CommandTimedOut)
    assert rig.lock.slots == {1: PIN}
    assert (await rig.driver.read()).value(2) is None


async def test_silence_raises_command_timed_out(rig: DriverRig[Driver]) -> None:
    await rig.lock.control({"silent": True})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CommandTimedOut):
        await rig.driver.set_code(2, "2222")
    assert TIMEOUT <= loop.time() - started < TIMEOUT + 0.5
    with pytest.raises(CommandTimedOut):
        await rig.driver.read()
    await rig.lock.control({"silent": False})
    assert (await rig.driver.read()).value(2) is None
    assert rig.lock.slots == {1: PIN}


async def test_an_offline_lock_is_refused_until_it_is_back(rig: DriverRig[Driver]) -> None:
    await rig.lock.control({"online": False})
    await rig.wakes.until(lambda: not rig.driver.online)
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "offline"
    await rig.lock.control({"online": True})
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.driver.set_code(2, "2222")
    assert rig.lock.slots == {1: PIN, 2: "2222"}


async def test_going_offline_settles_a_waiting_command(
    config: Config, broker: Broker, flavour: Flavour
) -> None:
    async with rigged(config, broker, flavour, Timing(command_timeout=5.0)) as rig:
        await rig.lock.control({"latency": 1.0})
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = asyncio.create_task(rig.driver.set_code(2, "2222"), name="test-pending-set")
        await rig.lock.control({"online": False})
        with pytest.raises(CommandFailed):  # timed out, or refused as offline: never waits
            await pending
        assert loop.time() - started < 1.0
        assert not rig.driver.online


async def test_the_table_is_bounded_by_the_configured_slots(rig: DriverRig[Driver]) -> None:
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(SLOTS + 1, "1234")
    assert caught.value.reason == "slot_out_of_range"
    await rig.driver.set_code(SLOTS, "1234")  # the last one is a slot like any other
    table = await rig.driver.read()
    assert table.capacity == SLOTS
    assert set(table.slots) <= set(range(1, SLOTS + 1))
    assert table.value(SLOTS) == "1234"
