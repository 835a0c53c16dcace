"""One look at one lock, inside one store transaction: record what is true, pick what to send.

The pure planner (``rules.slots``) says what differs; this module turns that into statuses,
errors, warnings and events in the store, fills the backup pool, judges its health, and chooses
the next command. It does no network I/O: the worker (``gateway.reconciler``) sends the command.

Crash safety comes from the order of things: the slot a code goes to and the attempt are
committed *before* the command is sent, and nothing is believed until the lock reports it.
After a ``kill -9`` the next pass finds the code already in its slot (verified, no second
write) or not (written again).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from gateway.clock import as_stored
from gateway.config import Config
from gateway.domain import SlotTable
from gateway.model import (
    AccessCode,
    BackupState,
    CodeStatus,
    Device,
    EventType,
    Json,
    ProblemCode,
    code_problems,
)
from gateway.rules import pool as pool_rules
from gateway.rules.codes import CodeRuleViolation, generate_code
from gateway.rules.reads import ReadState
from gateway.rules.schedule import Window, earliest, next_boundary, retry_delay
from gateway.rules.slots import Action, Clear, CodeView, Plan, Write, Written, free_slots, plan
from gateway.rules.unmanaged import plan_removals, retry_at
from gateway.rules.verdict import CodeFacts, CodeVerdict, Judging, judge_code
from gateway.store import Tx, slot_writes
from gateway.store import codes as code_store
from gateway.store import devices as device_store
from gateway.store import unmanaged as unmanaged_store
from gateway.store.codes import RetryState
from gateway.store.observed import load_table
from gateway.store.problems import problems_of, raised_problems, set_problem
from gateway.store.scrub import scrub_pins

__all__ = ["Command", "LockPass", "Read", "ReadState", "Step"]


@dataclass(frozen=True, slots=True)
class Read:
    """Read the lock back: the whole table (``slots`` None), or only the slots that matter."""

    slots: frozenset[int] | None = None


Command = Write | Clear | Read


class LockView(Protocol):
    """What a pass needs to know of the lock: a snapshot taken by the worker (or a driver)."""

    @property
    def online(self) -> bool | None: ...

    @property
    def table(self) -> SlotTable | None: ...


@dataclass(slots=True)
class Step:
    command: Command | None = None
    deadline: datetime | None = None
    retired: bool = False  # the device a reload removed is done with: its worker ends


class LockPass:
    """One look at one lock, inside one transaction: record truths, pick the next command.

    It loads, asks the rules (plan, verdict, pool health) and applies their answers; it judges
    nothing itself."""

    def __init__(
        self,
        tx: Tx,
        device: Device,
        driver: LockView,
        config: Config,
        reads: ReadState,
        *,
        lock_answered: bool = False,
        not_sent: str | None = None,
    ) -> None:
        self.driver = driver
        self.timing = config.timing
        self.pool = config.backup_pool
        self.reads = reads
        self.tx = tx
        self.device = device
        self.now = tx.now
        self.judging = Judging(
            now=tx.now,
            online=bool(driver.online),
            max_attempts=config.timing.max_attempts,
            delay_warning_after=timedelta(seconds=config.timing.delay_warning_after),
            program_ahead=timedelta(seconds=config.timing.program_ahead),
            managed=device.is_managed,
        )
        self.deadlines: list[datetime | None] = []
        #: Codes whose window opens after this need nothing yet: the pass leaves them out.
        self.horizon = tx.now + self.judging.program_ahead
        self.raised: dict[str, set[str]] = {}  # per owner: its problems raised, as of now
        self.codes: list[AccessCode] = []  # this pass's codes, kept current as it goes
        self.resting: list[code_store.Resting] = []  # and those at rest (never changed)
        self.forgotten: set[str] = set()
        self.lock_answered = lock_answered  # since the last pass: earlier writes are settled
        self.not_sent = not_sent  # its last command never left: that was no attempt
        self.has_writes: set[str] = set()  # codes with a written PIN that may be on the lock

    def run(self) -> Step:
        found = self._load()
        written = self._written(found.order)
        table = self.driver.table
        result = None
        if self.driver.online and table is not None:
            result = self._plan(found, table, written)
            slot_writes.drop(self.tx, self.device.device_id, result.left)
        else:
            found.build_all()  # nothing is at rest on a lock that cannot be read
        codes, retry = found.codes, found.retry
        self.codes, self.resting = codes, found.resting
        for rest in found.resting:  # at rest: judging it would change nothing but this
            window = Window(rest.starts_at, rest.ends_at)
            self.deadlines.append(next_boundary(window, self.now, self.judging.program_ahead))
        for code in codes:
            verdict = judge_code(
                self._facts(code, retry[code.access_code_id]), result, self.judging
            )
            self._apply(code, verdict)
        command = self._next_command(codes, result, retry)
        if command is None and result is not None and table is not None:
            command = self._unmanaged_clear(table)
        self._pool_health(result, retry)
        self._capacity()
        # Only future moments can wake the worker; a past one would make it spin.
        return Step(command, earliest(t for t in self.deadlines if t is not None and t > self.now))

    def _load(self) -> code_store.PassCodes:
        """The pass's codes (the pool filled first), its raised problems and retry states."""
        tx, device = self.tx, self.device
        self.raised = raised_problems(tx, device.device_id)
        if self.not_sent is not None:
            code_store.uncount_attempt(tx, self.not_sent)
        found = code_store.codes_for_pass(tx, device.device_id, self.horizon, self.raised)
        if found.first_dormant is not None:  # the first sleeping code wakes the worker when due
            self.deadlines.append(found.first_dormant - self.judging.program_ahead)
        if device.is_managed and device.pool_enabled:
            created = self._fill_pool(found.codes)
            fresh = RetryState(attempts=0, retry_at=None, since=as_stored(tx.now))
            found.retry.update((c.access_code_id, fresh) for c in created)
            found.codes += created
            found.order += [c.access_code_id for c in created]
        if not device.is_managed:
            # Hands off: only what unmanaging asked to remove (the backup codes) is touched.
            found.codes = [c for c in found.codes if c.deleting]
            found.resting = []  # none is being deleted
            found.order = [c.access_code_id for c in found.codes]
        return found

    def _plan(self, found: code_store.PassCodes, table: SlotTable, written: list[Written]) -> Plan:
        """The plan, with the resting codes planned from their few columns. Should one of them
        not be at rest after all (not seen in its slot, a duplicate, an action of its own), all
        are built in full and planned again: the outcome is then exactly a full pass's."""
        result = plan(self._views(found), table, written)
        if found.resting:
            acted = {a.code_id for a in result.actions}
            acted |= {a.evicts for a in result.actions if isinstance(a, Write) and a.evicts}
            if any(
                r.access_code_id not in result.verified
                or r.access_code_id in result.duplicates
                or r.access_code_id in acted
                for r in found.resting
            ):
                found.build_all()
                result = plan(self._views(found), table, written)
        return result

    def _written(self, ids: list[str]) -> list[Written]:
        """The PINs this pass's codes have written, settled first if the lock has answered."""
        if self.lock_answered:
            slot_writes.settle(self.tx, self.device.device_id)
        ours = set(ids)
        written = []
        for w in slot_writes.of_device(self.tx, self.device.device_id):
            if w.code_id in ours:  # an unmanaged lock's other codes are not this pass's concern
                written.append(w)
                self.has_writes.add(w.code_id)
        return written

    # -- desired state ------------------------------------------------------------------------

    def _wanted(self, code: AccessCode) -> bool:
        return self.judging.wants(Window(code.starts_at, code.ends_at), code.deleting)

    def _views(self, found: code_store.PassCodes) -> list[CodeView]:
        """The codes as the planner sees them; the resting ones last, which changes no plan:
        none of them waits for a slot or may give its slot up (``order`` ranks only those)."""
        views = [
            CodeView(
                code_id=c.access_code_id,
                pin=c.code,
                slot=c.slot,
                status=c.status,
                wanted=self._wanted(c),
                pooled_backup=c.backup_state is BackupState.POOLED,
                is_backup=c.is_backup,
                allow_external=c.allow_external_modification,
                order=index,
            )
            for index, c in enumerate(found.codes)
        ]
        wants = self.judging.wants
        start = len(views)
        views += [
            CodeView(
                code_id=r.access_code_id,
                pin=r.code,
                slot=r.slot,
                status=CodeStatus.SET,
                wanted=wants(Window(r.starts_at, r.ends_at), False),
                is_backup=r.is_backup,
                allow_external=r.allow_external,
                order=start + index,
            )
            for index, r in enumerate(found.resting)
        ]
        return views

    def _fill_pool(self, codes: list[AccessCode]) -> list[AccessCode]:
        pooled = [c for c in codes if c.backup_state is BackupState.POOLED and not c.deleting]
        missing = self.device.pool_size - len(pooled)
        if missing <= 0:
            return []
        # The PINs on the lock: as the driver reports them now (memory), else as last stored.
        table = self.driver.table
        on_lock = table.slots if table is not None else load_table(self.tx, self.device.device_id)
        taken = code_store.pins_of_device(self.tx, self.device.device_id) | {
            v for v in on_lock.values() if isinstance(v, str)
        }
        created = []
        for _ in range(missing):
            try:
                pin = generate_code(code_lengths=self.device.code_lengths, taken=taken)
            except CodeRuleViolation:
                break
            taken.add(pin)
            created.append(
                code_store.insert_code(
                    self.tx,
                    device_id=self.device.device_id,
                    name=pool_rules.backup_name(secrets.token_hex(2)),
                    code=pin,
                    starts_at=None,
                    ends_at=None,
                    backup=True,
                )
            )
        return created

    # -- truths -------------------------------------------------------------------------------

    def _facts(self, code: AccessCode, retry: RetryState) -> CodeFacts:
        cid = code.access_code_id
        return CodeFacts(
            code_id=cid,
            status=code.status,
            since=retry.since,
            slot=code.slot,
            window=Window(code.starts_at, code.ends_at),
            on_lock=code.on_lock,
            deleting=code.deleting,
            allow_external=code.allow_external_modification,
            attempts=retry.attempts,
            raised=frozenset(self.raised.get(cid, ())),
            has_writes=cid in self.has_writes,
        )

    def _apply(self, code: AccessCode, verdict: CodeVerdict) -> None:
        """Write what the verdict changed, then its events, in order; forget last."""
        tx, cid = self.tx, code.access_code_id
        self.deadlines.extend(verdict.deadlines)
        if code.slot is not None and verdict.slot is None:
            code_store.set_slot(tx, code, None)
            tx.reconcile(code.device_id)  # a slot came free: a waiting code may take it next pass
        code_store.set_on_lock(tx, code, verdict.on_lock)
        if not verdict.forget:
            code_store.set_status(tx, code, verdict.status)
        if verdict.reset_attempts:
            code_store.record_attempt(tx, code, failed=False, retry_at=None)
        for key in sorted(verdict.clears):
            self._set_problem(cid, key, False)
        for key in sorted(verdict.raises):
            self._set_problem(cid, key, True)
        for event in verdict.events:
            self._emit(code, event)
        if verdict.forget:
            self._forget(code)

    def _emit(self, code: AccessCode, event: EventType) -> None:
        fields: Json = {}
        if event is EventType.CODE_SET:
            fields["code"] = code.code
            scrub_pins(self.tx, code.access_code_id, keep=code.code)  # a replaced PIN is gone
        elif event is EventType.CODE_FAILED_TO_SET:
            fields["errors"] = self._errors_of(code)
        self.tx.emit(event, code.device_id, code.access_code_id, **fields)

    def _errors_of(self, code: AccessCode) -> list[Json]:
        """The code's errors as its public object shows them (its own and its device's)."""
        found = problems_of(self.tx, [code.access_code_id, code.device_id])
        errors, _ = code_problems(found[code.access_code_id], found[code.device_id])
        return errors

    def _forget(self, code: AccessCode) -> None:
        code_store.forget(self.tx, code)
        self.forgotten.add(code.access_code_id)
        self.raised.pop(code.access_code_id, None)

    def _set_problem(
        self, owner_id: str, key: str, active: bool, message: str | None = None
    ) -> bool:
        """``set_problem``, skipping the statement when nothing would change (most passes)."""
        if (key in self.raised.get(owner_id, ())) == active and message is None:
            return False
        changed = set_problem(
            self.tx, owner_id, key, active, device_id=self.device.device_id, message=message
        )
        if active:
            self.raised.setdefault(owner_id, set()).add(key)
        else:
            self.raised.get(owner_id, set()).discard(key)
        return changed

    # -- the next command ---------------------------------------------------------------------

    def _next_command(
        self, codes: list[AccessCode], result: Plan | None, retry: Mapping[str, RetryState]
    ) -> Command | None:
        """A due read first, then the first planned action not backing off, then reads of
        unknown slots, then the periodic resync."""
        table, reads = self.driver.table, self.reads
        command: Command | None = None
        if self.driver.online and (reads.due or table is None):
            # Fresh truth first: at start, on reconnect, after an unknown outcome. A lock whose
            # reads keep failing (backoff) is not waited for: its writes go on being counted.
            command = self._read_if_allowed(reads.scope if table is not None else None)
        if command is None and result is not None:
            command = self._choose(codes, result, retry)
            if command is None and result.needs_read and table != reads.table_after:
                command = self._read_if_allowed(frozenset(result.unreadable))
        if command is None and self.driver.online and self._resync_due():
            # The periodic check reads back the slots the gateway answers for, not all of them.
            held = frozenset(
                {c.slot for c in codes if c.slot is not None} | {r.slot for r in self.resting}
            )
            command = self._read_if_allowed(held if table is not None else None)
        return command

    def _read_if_allowed(self, slots: frozenset[int] | None) -> Read | None:
        held_off = self.reads.held_off_until(self.now)
        if held_off is not None:
            self.deadlines.append(held_off)
            return None
        return Read(slots)

    def _resync_due(self) -> bool:
        due = self.reads.resync_at(self.timing.resync_interval)
        if due is None:  # never read yet, or no periodic read-back (interval 0)
            return False
        self.deadlines.append(due)
        return self.now >= due

    def _choose(
        self, codes: list[AccessCode], result: Plan, retry: Mapping[str, RetryState]
    ) -> Command | None:
        by_id = {c.access_code_id: c for c in codes}
        for action in result.actions:
            code = by_id.get(action.code_id)
            if code is None:
                continue
            retry_at = retry[action.code_id].retry_at
            if retry_at is not None and retry_at > self.now:
                self.deadlines.append(retry_at)
                continue
            self._commit_to(action, code, by_id)
            return action
        return None

    def _commit_to(self, action: Action, code: AccessCode, by_id: Mapping[str, AccessCode]) -> None:
        """Record the slot and the attempt before sending, so a crash can be resumed."""
        tx = self.tx
        if isinstance(action, Write):
            if action.evicts is not None:
                # Ordinary codes come first: the backup's slot is overwritten in one command.
                # Its PIN stays recorded in that slot, so it is "removed" once seen overwritten.
                victim = by_id[action.evicts]
                code_store.set_slot(tx, victim, None)
                code_store.set_status(tx, victim, CodeStatus.UNSET)
            code_store.set_slot(tx, code, action.slot)
            code_store.set_status(tx, code, CodeStatus.SETTING)
            written = Written(code.access_code_id, action.slot, action.pin, settled=False)
            slot_writes.record(tx, written, code.device_id)
        elif action.slot == code.slot:
            code_store.set_status(tx, code, CodeStatus.REMOVING)
        # Read again: this pass may have reset the count (a verified code).
        attempts = code_store.attempts_of(tx, code.access_code_id)
        max_attempts = self.timing.max_attempts
        retry_at = None
        if attempts + 1 >= max_attempts:
            retry_at = self.now + retry_delay(attempts + 2 - max_attempts)
        code_store.record_attempt(tx, code, failed=True, retry_at=retry_at)

    def _unmanaged_clear(self, table: SlotTable) -> Clear | None:
        """Unmanaged codes asked to go (``unmanaged/delete``), after the managed codes' work:
        the first slot still holding its PIN is cleared; those no longer held are done."""
        if not self.device.is_managed:
            return None  # hands off an unmanaged lock; the requests wait
        tx, device_id = self.tx, self.device.device_id
        removals = plan_removals(unmanaged_store.removals_of(tx, device_id), table, self.now)
        unmanaged_store.removed(tx, device_id, removals.gone)
        self.deadlines.append(removals.next_try)
        if not removals.due:
            return None
        first = removals.due[0]
        retry = retry_at(first.attempts, self.now, self.timing.max_attempts)
        unmanaged_store.count_attempt(tx, device_id, first, retry)
        return Clear(first.code_id, first.slot)

    def _held(self) -> set[int]:
        """The slots this pass leaves given to a code."""
        held = {c.slot for c in self.codes if c.slot is not None}
        held -= {c.slot for c in self.codes if c.access_code_id in self.forgotten}
        return held | {r.slot for r in self.resting}

    # -- device-level -------------------------------------------------------------------------

    def _pool_health(self, result: Plan | None, retry: Mapping[str, RetryState]) -> None:
        """Judge the pool on the codes as this pass leaves them, and apply the verdict."""
        device = self.device
        members = [
            pool_rules.PoolMember(
                code_id=c.access_code_id,
                state=c.backup_state,
                status=c.status,
                slot=c.slot,
                attempts=retry[c.access_code_id].attempts if c.access_code_id in retry else 0,
                deleting=c.deleting,
            )
            for c in self.codes
            if c.access_code_id not in self.forgotten
        ]
        members += [
            pool_rules.PoolMember(
                code_id=r.access_code_id,
                state=r.backup_state,
                status=CodeStatus.SET,
                slot=r.slot,
                attempts=0,
                deleting=False,
            )
            for r in self.resting
        ]
        facts = pool_rules.PoolFacts(
            enabled=device.pool_enabled and device.is_managed,
            size=device.pool_size,
            short_since=device.pool_short_since,
            online=bool(self.driver.online),
            now=self.now,
            fill_grace=timedelta(seconds=self.pool.fill_grace),
            many_active_threshold=self.pool.many_active_threshold,
            max_attempts=self.timing.max_attempts,
            raised=frozenset(self.raised.get(device.device_id, ())),
        )
        verdict = pool_rules.judge_pool(members, result.no_space if result else (), facts)
        if verdict.short_since != device.pool_short_since:
            device_store.set_pool_short_since(self.tx, device.device_id, verdict.short_since)
        self.deadlines.append(verdict.deadline)
        for change in verdict.problems:
            self._set_problem(device.device_id, change.code, change.active, change.message)

    def _capacity(self) -> None:
        """``max_access_codes_reached`` while no slot is left for another code (judged only
        on a table the lock reported; kept as it was while the lock cannot be read)."""
        table = self.driver.table
        if not self.driver.online or table is None or not table.capacity:
            return
        held = self._held()
        full = self.device.is_managed and free_slots(table, held) == 0
        message = None
        if full:
            message = (
                f"Every slot of this lock is taken: {len(held)} active managed codes,"
                f" {table.capacity} max."
            )
        self._set_problem(
            self.device.device_id, ProblemCode.MAX_ACCESS_CODES_REACHED, full, message
        )
