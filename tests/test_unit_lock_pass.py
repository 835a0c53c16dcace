"""One pass over one lock, inside a real store transaction, against a fake driver.

Each test asks what a user would notice: which command the pass chooses, and what the store
holds after it (status, slot, problems, events). Only the entry points are used
(``LockPass(...).run()``, ``Step``, ``Read``, ``ReadState``), never the pass's insides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.lock_pass import LockPass, Read, ReadState, Step
from gateway.model import CodeStatus
from gateway.rules.slots import Clear, Write
from gateway.store import Store, Tx
from gateway.store import codes as code_store
from gateway.store import devices as device_store
from gateway.store.observed import record_table
from tests.fakes import (
    DEVICE,
    FakeDriver,
    add_code,
    event_types,
    opened_store,
    problem_codes,
    stored_code,
    unit_config,
)

PIN = "1234"


@dataclass
class Lab:
    store: Store
    config: Config
    clock: ManualClock
    driver: FakeDriver = field(default_factory=FakeDriver)
    reads: ReadState = field(default_factory=ReadState)

    async def look(self, *, lock_answered: bool = False, not_sent: str | None = None) -> Step:
        """One pass, committed, with what the driver reports now (recorded first, as the
        worker does)."""

        def unit(tx: Tx) -> Step:
            table = self.driver.table
            if table is not None:
                record_table(tx, DEVICE, table)
            device_store.set_online(tx, DEVICE, self.driver.online)
            device = device_store.get_device(tx, DEVICE)
            assert device is not None
            return LockPass(
                tx,
                device,
                self.driver,
                self.config,
                self.reads,
                lock_answered=lock_answered,
                not_sent=not_sent,
            ).run()

        return await self.store.write(unit)

    def read_done(self) -> None:
        """The worker read the lock back: no read is due any more."""
        self.reads.due = False
        self.reads.scope = None
        self.reads.last = self.clock.now()
        self.reads.table_after = self.driver.report()

    async def status(self, access_code_id: str) -> CodeStatus | None:
        code = await stored_code(self.store, access_code_id)
        return None if code is None else code.status


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    config = unit_config(tmp_path, timing={"max_attempts": 2, "resync_interval": 0})
    clock = ManualClock()
    async with opened_store(config, clock) as store:
        instance = Lab(store, config, clock)
        await instance.driver.start(lambda: None)
        yield instance


async def test_the_first_pass_reads_the_whole_lock(lab: Lab) -> None:
    step = await lab.look()
    assert step.command == Read(None)


async def test_a_wanted_code_is_committed_to_its_slot_before_the_write(lab: Lab) -> None:
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    step = await lab.look()
    assert isinstance(step.command, Write)
    assert (step.command.code_id, step.command.slot, step.command.pin) == (cid, 1, PIN)
    code = await stored_code(lab.store, cid)
    assert code is not None
    assert (code.status, code.slot) == (CodeStatus.SETTING, 1)  # before anything was sent


async def test_the_code_is_set_only_once_the_lock_shows_it(lab: Lab) -> None:
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    await lab.look()
    assert await lab.status(cid) is CodeStatus.SETTING
    await lab.driver.set_code(1, PIN)
    step = await lab.look(lock_answered=True)
    assert step.command is None
    assert await lab.status(cid) is CodeStatus.SET
    assert await event_types(lab.store, cid) == [
        "access_code.created",
        "access_code.set_on_device",
    ]


async def test_a_pass_that_finds_everything_as_it_was_says_nothing_new(lab: Lab) -> None:
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    await lab.look()
    await lab.driver.set_code(1, PIN)
    await lab.look(lock_answered=True)
    before = await event_types(lab.store)
    commits = lab.store.stats.commits
    assert (await lab.look()).command is None
    assert await event_types(lab.store) == before
    assert await lab.status(cid) is CodeStatus.SET
    assert lab.store.stats.commits == commits  # nothing changed: nothing written, no fsync


async def test_an_offline_lock_gets_no_command_and_the_code_fails_visibly(lab: Lab) -> None:
    lab.read_done()
    lab.driver.go(False)
    cid = await add_code(lab.store, PIN)
    step = await lab.look()
    assert step.command is None
    assert await lab.status(cid) is CodeStatus.SETTING
    assert "failed_to_set_on_device" in await problem_codes(lab.store, cid)
    assert "access_code.failed_to_set_on_device" in await event_types(lab.store, cid)


async def test_a_deleted_code_on_the_lock_is_cleared(lab: Lab) -> None:
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    await lab.look()
    await lab.driver.set_code(1, PIN)
    await lab.look(lock_answered=True)

    def delete(tx: Tx) -> None:
        code = code_store.get_code(tx, cid)
        assert code is not None
        code_store.mark_deleting(tx, code)

    await lab.store.write(delete)
    step = await lab.look()
    assert step.command == Clear(cid, 1)
    assert await lab.status(cid) is CodeStatus.REMOVING
    await lab.driver.clear_slot(1)
    await lab.look(lock_answered=True)
    assert await stored_code(lab.store, cid) is None
    assert (await event_types(lab.store, cid))[-2:] == [
        "access_code.removed_from_device",
        "access_code.deleted",
    ]


async def test_no_slot_free_means_no_write_and_no_space(lab: Lab) -> None:
    for slot in range(1, lab.driver.capacity + 1):
        lab.driver.keypad(slot, f"90{slot:02}")  # every slot holds somebody else's PIN
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    step = await lab.look()
    assert step.command is None
    assert await lab.status(cid) is CodeStatus.UNSET
    assert "no_space_for_access_code_on_device" in await problem_codes(lab.store, cid)


async def test_a_pin_already_in_a_foreign_slot_is_not_written_twice(lab: Lab) -> None:
    lab.driver.keypad(3, PIN)
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    step = await lab.look()
    assert step.command is None
    assert "duplicate_code_on_device" in await problem_codes(lab.store, cid)


async def test_a_future_window_sets_the_next_deadline(lab: Lab) -> None:
    lab.read_done()
    starts = lab.clock.now() + timedelta(hours=2)
    cid = await add_code(lab.store, PIN, starts_at=starts, ends_at=starts + timedelta(hours=1))
    step = await lab.look()
    assert step.command is None
    assert step.deadline == starts
    assert await lab.status(cid) is CodeStatus.UNSET


async def test_a_code_whose_window_opens_later_costs_nothing_until_it_is_due(
    lab: Lab,
) -> None:
    """Next month's guest is left out of every pass until its window comes near: no write for
    it, and the worker is woken when it is due, then it goes on the lock like any other."""
    lab.read_done()
    await lab.look()  # the lock's first report recorded
    starts = lab.clock.now() + timedelta(days=30)
    cid = await add_code(lab.store, PIN, starts_at=starts, ends_at=starts + timedelta(days=1))
    commits = lab.store.stats.commits
    for _ in range(3):
        step = await lab.look()
        assert (step.command, step.deadline) == (None, starts)
    assert lab.store.stats.commits == commits
    lab.clock.set(starts)
    step = await lab.look()
    assert isinstance(step.command, Write)
    assert (step.command.code_id, step.command.slot, step.command.pin) == (cid, 1, PIN)


async def test_a_command_that_never_left_is_not_counted_as_an_attempt(lab: Lab) -> None:
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    assert isinstance((await lab.look()).command, Write)
    for _ in range(2):  # max_attempts is 2: counted, these would fail the code
        assert isinstance((await lab.look(not_sent=cid)).command, Write)
    assert "failed_to_set_on_device" not in await problem_codes(lab.store, cid)


async def test_unanswered_writes_fail_the_code_after_max_attempts(lab: Lab) -> None:
    lab.read_done()
    cid = await add_code(lab.store, PIN)
    for _ in range(2):
        assert isinstance((await lab.look()).command, Write)
    step = await lab.look()
    assert step.command is None  # backing off
    assert step.deadline is not None
    assert step.deadline > lab.clock.now()
    assert "failed_to_set_on_device" in await problem_codes(lab.store, cid)


async def test_a_lock_with_no_slot_left_warns_that_it_is_full(lab: Lab) -> None:
    """``max_access_codes_reached`` (contract section 11): raised, with how many managed codes
    hold slots and how many the lock has, once the last slot is taken; cleared when one frees."""
    lab.read_done()
    for slot in range(1, 5):
        await lab.driver.set_code(slot, f"90{slot}0")  # four PINs the gateway did not set
    await lab.look()
    assert "max_access_codes_reached" not in await problem_codes(lab.store, DEVICE)
    cid = await add_code(lab.store, PIN)
    step = await lab.look()
    assert isinstance(step.command, Write)
    await lab.driver.set_code(step.command.slot, PIN)
    await lab.look(lock_answered=True)
    assert await lab.status(cid) is CodeStatus.SET
    assert "max_access_codes_reached" in await problem_codes(lab.store, DEVICE)
    row = await lab.store.fetchone(
        "SELECT message FROM problems WHERE owner_id = ? AND code = 'max_access_codes_reached'",
        (DEVICE,),
    )
    assert row is not None
    assert "1 active managed codes, 5 max" in row["message"]
    await lab.driver.clear_slot(2)  # someone removed a PIN at the keypad
    await lab.look()
    assert "max_access_codes_reached" not in await problem_codes(lab.store, DEVICE)
    happened = await event_types(lab.store)
    assert happened[-1] == "device.warning_cleared"
    assert happened.count("device.warning_added") == 1
