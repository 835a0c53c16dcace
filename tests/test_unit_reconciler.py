"""The lock worker without a broker: a fake driver, a real SQLite store, a ``ManualClock``.

What a user would notice: which commands reach the lock, and what the code's status, problems
and events say afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from drivers.base import CommandTimedOut, SlotTable
from gateway.clock import ManualClock
from gateway.model import CodeStatus
from gateway.reconciler import PRESENCE_BATCH, LockWorker, Presence, Reconciler
from gateway.store import Priority, Store
from tests.fakes import (
    DEVICE,
    FakeDriver,
    Sent,
    add_code,
    event_types,
    opened_store,
    problem_codes,
    stored_code,
    unit_config,
)
from tests.helpers import TIMEOUT, running


@dataclass
class Bench:
    driver: FakeDriver
    worker: LockWorker
    store: Store
    clock: ManualClock

    async def settled(self) -> None:
        """Until the worker has nothing left to do before its next deadline."""
        async with asyncio.timeout(TIMEOUT):
            await self.worker.settled.wait()

    async def status(self, access_code_id: str) -> CodeStatus | None:
        code = await stored_code(self.store, access_code_id)
        return None if code is None else code.status


@asynccontextmanager
async def benched(tmp_path: Path, driver: FakeDriver) -> AsyncIterator[Bench]:
    """The worker of ``driver``'s lock, running, woken by the store's commits like in the
    daemon, and settled after its first look at the lock."""
    timing = {"max_attempts": 3, "delay_warning_after": "1h", "resync_interval": 0}
    config = unit_config(tmp_path, timing=timing)
    clock = ManualClock()
    async with opened_store(config, clock) as store:
        worker = LockWorker(driver, store, clock, config)
        store.on_commit(Reconciler({DEVICE: worker}).notify)
        async with running(("test-worker", worker.run())):
            instance = Bench(driver, worker, store, clock)
            await instance.settled()
            yield instance


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with benched(tmp_path, FakeDriver()) as instance:
        yield instance


def ops(driver: FakeDriver) -> list[str]:
    return [s.op for s in driver.sent]


# -- the plain life of a code -----------------------------------------------------------------


async def test_first_contact_reads_the_lock_before_anything_else(bench: Bench) -> None:
    assert bench.driver.sent == [Sent("read")]
    row = await bench.store.fetchone(
        "SELECT online, capacity FROM devices WHERE device_id = ?", (DEVICE,)
    )
    assert row is not None
    assert (bool(row["online"]), row["capacity"]) == (True, 5)


async def test_a_new_code_is_written_once_and_set_when_the_lock_shows_it(bench: Bench) -> None:
    cid = await add_code(bench.store, "1234")
    await bench.settled()
    assert bench.driver.sent == [Sent("read"), Sent("set", 1, "1234")]
    assert bench.driver.slots == {1: "1234"}
    assert await bench.status(cid) is CodeStatus.SET
    assert await event_types(bench.store, cid) == [
        "access_code.created",
        "access_code.set_on_device",
    ]


async def test_the_look_after_an_answered_command_goes_ahead_of_other_locks_passes(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look that finds the code in its slot (and stores its ``set_on_device``) is not
    queued behind every other lock's next pass: in a burst that was seconds of stale events."""
    priorities: list[Priority] = []
    submit = bench.store.submit

    def recorded(unit: Any, *, priority: Priority = Priority.REQUEST) -> Any:
        priorities.append(priority)
        return submit(unit, priority=priority)

    monkeypatch.setattr(bench.store, "submit", recorded)
    await add_code(bench.store, "1234")
    await bench.settled()
    assert bench.driver.sent[-1] == Sent("set", 1, "1234")
    # The create, the look it wakes (which sends the write), the look after the answer.
    assert priorities == [Priority.REQUEST, Priority.PASS, Priority.FOLLOW_UP]


async def test_a_code_ending_comes_off_the_lock_and_is_forgotten(bench: Bench) -> None:
    now = bench.clock.now()
    cid = await add_code(bench.store, "1234", starts_at=now, ends_at=now + timedelta(hours=1))
    await bench.settled()
    assert bench.driver.slots == {1: "1234"}
    bench.clock.advance(hours=1)  # the worker's timer fires at the end of the window
    await bench.settled()
    assert bench.driver.sent[-1] == Sent("clear", 1)
    assert bench.driver.slots == {}
    assert await stored_code(bench.store, cid) is None
    assert (await event_types(bench.store, cid))[-2:] == [
        "access_code.removed_from_device",
        "access_code.deleted",
    ]


async def test_a_future_window_waits_for_its_start(bench: Bench) -> None:
    now = bench.clock.now()
    cid = await add_code(
        bench.store, "1234", starts_at=now + timedelta(hours=2), ends_at=now + timedelta(hours=3)
    )
    await bench.settled()
    assert ops(bench.driver) == ["read"]
    assert await bench.status(cid) is CodeStatus.UNSET
    bench.clock.advance(hours=2)
    await bench.settled()
    assert bench.driver.slots == {1: "1234"}
    assert await bench.status(cid) is CodeStatus.SET


# -- failures ---------------------------------------------------------------------------------


async def test_an_unanswered_write_is_read_back_not_repeated(bench: Bench) -> None:
    bench.driver.silence_next(applied=True)  # it landed, but no answer came
    cid = await add_code(bench.store, "1234")
    await bench.settled()
    assert bench.driver.sent == [Sent("read"), Sent("set", 1, "1234"), Sent("read")]
    assert await bench.status(cid) is CodeStatus.SET


async def test_refusals_fail_the_code_after_max_attempts(bench: Bench) -> None:
    for _ in range(3):
        bench.driver.refuse_next()
    cid = await add_code(bench.store, "1234")
    await bench.settled()  # the third refusal put the next try off (backoff on the clock)
    assert ops(bench.driver).count("set") == 3
    assert await bench.status(cid) is CodeStatus.SETTING
    assert "failed_to_set_on_device" in await problem_codes(bench.store, cid)
    assert "access_code.failed_to_set_on_device" in await event_types(bench.store, cid)
    bench.clock.advance(minutes=10)  # the backoff ends; the lock takes it now
    await bench.settled()
    assert await bench.status(cid) is CodeStatus.SET
    assert "failed_to_set_on_device" not in await problem_codes(bench.store, cid)


async def test_a_read_that_times_out_does_not_hold_the_writes_back(tmp_path: Path) -> None:
    driver = FakeDriver()
    driver.fail_next(CommandTimedOut())  # the first-contact read
    async with benched(tmp_path, driver) as bench:
        cid = await add_code(bench.store, "1234")
        await bench.settled()
        assert ops(driver) == ["read", "set"]  # the read backs off; the write goes ahead
        assert await bench.status(cid) is CodeStatus.SET


# -- an offline lock --------------------------------------------------------------------------


async def test_an_offline_lock_is_recorded_and_caught_up(bench: Bench) -> None:
    bench.driver.go(False)
    await bench.settled()
    cid = await add_code(bench.store, "1234")
    await bench.settled()
    assert ops(bench.driver) == ["read"]  # nothing is sent to a lock that is away
    assert "device_disconnected" in await problem_codes(bench.store, DEVICE)
    assert "failed_to_set_on_device" in await problem_codes(bench.store, cid)
    bench.driver.go(True)
    await bench.settled()
    assert ops(bench.driver) == ["read", "read", "set"]  # back: read it all, then write
    assert await bench.status(cid) is CodeStatus.SET
    assert "device_disconnected" not in await problem_codes(bench.store, DEVICE)
    assert "access_code.set_on_device" in await event_types(bench.store, cid)


# -- changes made at the lock -----------------------------------------------------------------


async def test_a_keypad_change_is_undone(bench: Bench) -> None:
    cid = await add_code(bench.store, "1234")
    await bench.settled()
    bench.driver.keypad(1, "9999")
    await bench.settled()
    assert bench.driver.sent[-1] == Sent("set", 1, "1234")
    assert bench.driver.slots == {1: "1234"}
    assert await bench.status(cid) is CodeStatus.SET
    assert "access_code.modified_external_to_gateway" in await event_types(bench.store, cid)


async def test_a_change_the_lock_only_announces_is_read_back_by_the_worker(bench: Bench) -> None:
    """The driver asks for the read (it sends nothing itself): the worker reads just that
    slot, then restores the code."""
    cid = await add_code(bench.store, "1234")
    await bench.settled()
    bench.driver.announce(1, "9999")
    await bench.settled()
    assert bench.driver.sent[-2:] == [Sent("read"), Sent("set", 1, "1234")]
    assert bench.driver.read_scopes[-1] == frozenset({1})
    assert bench.driver.slots == {1: "1234"}
    assert await bench.status(cid) is CodeStatus.SET


async def test_unmanaged_pins_are_left_alone(tmp_path: Path) -> None:
    driver = FakeDriver(codes={1: "5555"})
    async with benched(tmp_path, driver) as bench:
        await add_code(bench.store, "1234")
        await bench.settled()
    assert driver.slots == {1: "5555", 2: "1234"}
    assert Sent("clear", 1) not in driver.sent


# -- many locks at start --------------------------------------------------------------------


async def test_locks_found_online_together_are_recorded_in_one_unit(tmp_path: Path) -> None:
    """At start, the locks found online in one turn of the event loop share one unit (and
    their device objects go out at once), not one first look each; a larger crowd is cut into
    units of :data:`PRESENCE_BATCH`, so no one unit holds the writer long."""
    doors = [f"door_{n}" for n in range(PRESENCE_BATCH + 20)]
    config = unit_config(
        tmp_path, devices=[{"device_id": d, "name": d, "driver": "native"} for d in doors]
    )
    async with opened_store(config, ManualClock()) as store:
        presence = Presence(store)
        units = store.stats.units
        tables = {d: SlotTable(capacity=20 + n, code_lengths=(4, 8)) for n, d in enumerate(doors)}
        await asyncio.gather(*(presence.record(d, tables[d]) for d in doors))
        assert store.stats.units - units == 2
        online = await store.fetchall("SELECT device_id FROM devices WHERE online = 1")
        assert {r["device_id"] for r in online} == set(doors)
        assert await device_events(store, doors[0]) == ["device.connected"]
        assert await device_events(store, doors[-1]) == ["device.connected"]
        # What the device object shows of the lock is there at once (its slot count).
        last = doors[-1]
        shape = await store.fetchone("SELECT capacity FROM devices WHERE device_id = ?", (last,))
        assert shape is not None
        assert shape["capacity"] == tables[last].capacity
        # Found online again (a restart): nothing more to record, no second event.
        await presence.record(doors[0], None)
        assert await device_events(store, doors[0]) == ["device.connected"]


async def device_events(store: Store, device_id: str) -> list[str]:
    rows = await store.fetchall(
        "SELECT event_type FROM events WHERE device_id = ? ORDER BY seq", (device_id,)
    )
    return [r["event_type"] for r in rows]
