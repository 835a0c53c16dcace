"""A pass plans the codes that may be at rest from a few columns (``code_store.Resting``) and
builds them in full only when the plan finds one is not. That must never change what a pass
does: for hundreds of random scenes (codes in every status, slots, windows, failures, problems,
written PINs, backups, foreign and unknown slots, a lock offline), the pass is run twice on the
same database, once as it is and once with every code built in full, and what each left behind
is compared: the command and deadline, every row of the codes, problems and written PINs, and the
events in order."""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain import SlotTable, SlotValue, Unreadable
from gateway.lock_pass import LockPass, ReadState, Step
from gateway.model import ProblemCode
from gateway.rules.slots import Written
from gateway.store import Store, Tx, slot_writes
from gateway.store import codes as code_store
from gateway.store import devices as device_store
from gateway.store.observed import record_table
from gateway.store.problems import set_problem
from tests.fakes import DEVICE, opened_store, unit_config

SCENES = 500
CAPACITY = 8
STATUSES = ("unset", "setting", "set", "set", "set", "removing")
PROBLEMS = (
    ProblemCode.DELAY_IN_SETTING_ON_DEVICE,
    ProblemCode.FAILED_TO_SET_ON_DEVICE,
    ProblemCode.DUPLICATE_CODE_ON_DEVICE,
    ProblemCode.EXTERNAL_MODIFICATION_IN_EFFECT,
)


@dataclass
class Lock:
    online: bool | None
    table: SlotTable | None


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Pool filling draws random PINs: the scenes hold exactly as many pooled backups as the
    # pool's size, so that neither pass fills it.
    door = {"device_id": DEVICE, "name": "Door", "driver": "native"}
    return unit_config(tmp_path, devices=[{**door, "backup_pool": {"enabled": True, "size": 1}}])


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    async with opened_store(config, ManualClock()) as opened:
        yield opened


def _window(
    rng: random.Random, now: datetime, calm: bool
) -> tuple[datetime | None, datetime | None]:
    hour = timedelta(hours=1)
    if calm:
        return rng.choice([(None, None), (now - hour, now + hour)])
    return rng.choice(
        [
            (None, None),
            (None, None),
            (now - hour, now + hour),  # running
            (now - 2 * hour, now - hour),  # over
            (now + timedelta(seconds=30), now + hour),  # opens within the programming horizon
            (now + hour, now + 2 * hour),  # later
            (now - hour, now + timedelta(seconds=1)),  # ends in a second
        ]
    )


class _Scene:
    """Codes in random states and the lock's random table, written to the store."""

    def __init__(self, tx: Tx, rng: random.Random) -> None:
        self.tx, self.rng = tx, rng
        self.calm = rng.random() < 0.5  # a lock as most are: every code where it should be
        self.pins = [str(pin) for pin in rng.sample(range(1000, 10000), 12)]
        self.free = list(range(1, CAPACITY + 1))
        rng.shuffle(self.free)
        self.table: dict[int, SlotValue] = dict.fromkeys(range(1, CAPACITY + 1))
        self.pooled = 0  # the pool's size is 1: a pool short would be filled (random PINs)

    def build(self) -> Lock:
        for number in range(self.rng.randint(0, 7)):
            self._code(number)
        if not self.pooled:  # the pool's one backup, set and at rest
            self._insert("pool", self.pins[8], (None, None), "pooled", "set", 0, deleting=False)
        self._strangers()
        rng, calm = self.rng, self.calm
        online = calm or rng.random() < 0.8
        table = SlotTable(CAPACITY, (4, 8), self.table) if calm or rng.random() < 0.9 else None
        if table is not None:
            record_table(self.tx, DEVICE, table)
        device_store.set_online(self.tx, DEVICE, online)
        return Lock(online, table)

    def _code(self, number: int) -> None:
        rng, pin = self.rng, self.pins[number]
        state = None
        if rng.random() < 0.35:
            state = "pulled" if self.pooled or rng.random() < 0.5 else "pooled"
        status = rng.choice(STATUSES)
        attempts = rng.choice((0, 0, 0, 0, 0, 0, 0, 1, 5))
        deleting = state != "pooled" and rng.random() < 0.1
        cid, slot = self._insert(
            f"c{number}", pin, _window(rng, self.tx.now, self.calm), state, status, attempts,
            deleting=deleting,
        )  # fmt: skip
        if rng.random() < 0.15:
            set_problem(self.tx, cid, rng.choice(PROBLEMS), True, device_id=DEVICE)
        if slot is not None and rng.random() < 0.7:
            slot_writes.record(self.tx, Written(cid, slot, pin), DEVICE)
        if rng.random() < 0.12:  # an old PIN of it left in another slot
            other = rng.randint(1, CAPACITY)
            slot_writes.record(self.tx, Written(cid, other, self.pins[10]), DEVICE)
            if rng.random() < 0.7:
                self.table[other] = self.pins[10]
        if slot is not None:
            roll = 0.0 if self.calm else rng.random()
            if roll < 0.75:
                self.table[slot] = pin
            else:  # changed at the keypad, emptied, or not read
                self.table[slot] = rng.choice((self.pins[9], None, Unreadable.UNKNOWN))

    def _insert(
        self,
        name: str,
        pin: str,
        window: tuple[datetime | None, datetime | None],
        state: str | None,
        status: str,
        attempts: int,
        *,
        deleting: bool,
    ) -> tuple[str, int | None]:
        rng = self.rng
        backup = state is not None
        self.pooled += state == "pooled"
        code = code_store.insert_code(
            self.tx, device_id=DEVICE, name=name, code=pin,
            starts_at=None if backup else window[0], ends_at=None if backup else window[1],
            backup=backup,
        )  # fmt: skip
        slot = self.free.pop() if self.free and rng.random() < 0.8 else None
        if slot is None:
            status = rng.choice(("unset", "removing"))
        self.tx.execute(
            "UPDATE access_codes SET status = ?, slot = ?, on_lock = ?, attempts = ?,"
            " deleting = ?, backup_state = ?, allow_external_modification = ?,"
            " code_from = ? WHERE access_code_id = ?",
            (
                status, slot, int(status == "set" or rng.random() < 0.2), attempts, int(deleting),
                state, int(rng.random() < 0.2), self.pins[11] if rng.random() < 0.05 else None,
                code.access_code_id,
            ),
        )  # fmt: skip
        return code.access_code_id, slot

    def _strangers(self) -> None:
        """Slots no code holds: empty, a stranger's PIN (maybe a code's), or not read."""
        for slot in self.free:
            roll = 1.0 if self.calm else self.rng.random()
            if roll < 0.1:
                self.table[slot] = self.rng.choice(self.pins[:8])
            elif roll < 0.15:
                self.table[slot] = Unreadable.UNKNOWN


def _outcome(tx: Tx, step: Step, events_before: int) -> dict[str, Any]:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in tx.fetchall(sql)]

    return {
        "step": step,
        "codes": rows("SELECT * FROM access_codes ORDER BY access_code_id"),
        "problems": rows(
            "SELECT * FROM problems ORDER BY owner_id, code"
        ),
        "written": rows("SELECT * FROM slot_writes ORDER BY access_code_id, slot, code"),
        "device": rows("SELECT * FROM devices"),
        "events": [
            {k: v for k, v in event.to_json().items() if k != "event_id"}
            for event in tx.events[events_before:]
        ],
    }


def _both(
    rng: random.Random,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    resting: Callable[[Any], code_store.Resting | None],
    seen: dict[str, int],
    tx: Tx,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One scene, passed over as it is and with every code built in full (both rolled back)."""
    reads = ReadState()
    if rng.random() < 0.8:  # read already: the pass plans and may write
        reads.due, reads.scope, reads.last = False, None, tx.now
        if rng.random() < 0.25:  # long ago: the periodic read-back of held slots is due
            reads.last -= timedelta(days=30)
    lock = _Scene(tx, rng).build()
    answered = rng.random() < 0.5
    outcomes = []
    for full in (False, True):
        monkeypatch.setattr(code_store, "_resting", (lambda row: None) if full else resting)
        tx.execute("SAVEPOINT compare")
        before = len(tx.events)
        device = device_store.get_device(tx, DEVICE)
        assert device is not None
        run = LockPass(tx, device, lock, config, copy.deepcopy(reads), lock_answered=answered)
        step = run.run()
        seen["passes at rest"] += bool(run.resting)
        outcomes.append(_outcome(tx, step, before))
        del tx.events[before:]
        tx.execute("ROLLBACK TO compare")
        tx.execute("RELEASE compare")
    for table in ("access_codes", "problems", "slot_writes", "observed_slots"):
        tx.execute(f"DELETE FROM {table}")
    return outcomes[0], outcomes[1]


async def test_a_pass_with_resting_codes_does_what_a_full_pass_does(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    resting, build_all = code_store._resting, code_store.PassCodes.build_all
    seen = {"built after all": 0, "passes at rest": 0}

    def counted_build(found: code_store.PassCodes) -> None:
        seen["built after all"] += bool(found.resting)
        build_all(found)

    monkeypatch.setattr(code_store.PassCodes, "build_all", counted_build)

    for seed in range(SCENES):
        light, full = await store.write(
            functools.partial(_both, random.Random(seed), config, monkeypatch, resting, seen)
        )
        assert light == full, f"scene {seed}"
    # Many passes kept resting codes light, and many built them after all.
    assert seen["passes at rest"] > SCENES / 5
    assert seen["built after all"] > SCENES / 10
