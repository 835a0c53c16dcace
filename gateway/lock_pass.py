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

from drivers.base import Driver, SlotTable
from gateway.config import Config
from gateway.model import (
    PROBLEMS,
    AccessCode,
    BackupState,
    CodeStatus,
    Device,
    EventType,
    Json,
    code_problems,
)
from gateway.rules import pool as pool_rules
from gateway.rules.codes import CodeRuleViolation, generate_code
from gateway.rules.schedule import (
    Window,
    belongs_on_lock,
    earliest,
    has_ended,
    next_boundary,
    retry_delay,
)
from gateway.rules.slots import Action, Clear, CodeView, Plan, Write, Written, plan
from gateway.store import Tx, slot_writes
from gateway.store import codes as code_store
from gateway.store import devices as device_store
from gateway.store.observed import load_table
from gateway.store.problems import problems_of, raised_problems, set_problem


@dataclass(frozen=True, slots=True)
class Read:
    """Read the lock back: the whole table (``slots`` None), or only the slots that matter."""

    slots: frozenset[int] | None = None


Command = Write | Clear | Read


@dataclass(slots=True)
class Step:
    command: Command | None = None
    deadline: datetime | None = None


@dataclass(slots=True)
class ReadState:
    """What the worker knows about reading its lock back; the pass decides when to read."""

    due: bool = True  # read before anything else: at start, on reconnect, after an unknown outcome
    scope: frozenset[int] | None = None  # what the due read must cover (None: every slot)
    failures: int = 0
    not_before: datetime | None = None  # backoff after failed reads
    last: datetime | None = None  # the last successful read (for resync)
    table_after: SlotTable | None = None  # the table that read gave

    def request(self, slots: frozenset[int] | None) -> None:
        """Ask for a read of ``slots`` (None: all), on top of whatever is already asked."""
        if not self.due:
            self.scope = slots
        elif self.scope is not None and slots is not None:
            self.scope = self.scope | slots
        else:
            self.scope = None
        self.due = True


class LockPass:
    """One look at one lock, inside one transaction: record truths, pick the next command."""

    def __init__(
        self,
        tx: Tx,
        device: Device,
        driver: Driver,
        config: Config,
        reads: ReadState,
        *,
        lock_answered: bool = False,
        not_sent: str | None = None,
    ) -> None:
        self.driver = driver
        self.timing = config.timing
        self.pool = config.backup_pool
        self.program_ahead = timedelta(seconds=config.timing.program_ahead)
        self.reads = reads
        self.tx = tx
        self.device = device
        self.now = tx.now
        self.deadlines: list[datetime | None] = []
        self.raised: set[tuple[str, str]] = set()  # (owner, problem) raised, as of now
        self.codes: list[AccessCode] = []  # this pass's codes, kept current as it goes
        self.forgotten: set[str] = set()
        self.lock_answered = lock_answered  # since the last pass: earlier writes are settled
        self.not_sent = not_sent  # its last command never left: that was no attempt
        self.has_writes: set[str] = set()  # codes with a written PIN that may be on the lock

    async def run(self) -> Step:
        tx, device, reads = self.tx, self.device, self.reads
        self.raised = await raised_problems(tx, device.device_id)
        codes = await code_store.codes_of_device(tx, device.device_id)
        if device.is_managed and device.pool_enabled:
            codes += await self._fill_pool(codes)
        if not device.is_managed:
            # Hands off: only what unmanaging asked to remove (the backup codes) is touched.
            codes = [c for c in codes if c.deleting]
        self.codes = codes
        if self.not_sent is not None:
            await code_store.uncount_attempt(tx, self.not_sent)
        retry = await code_store.retry_state(tx, device.device_id)
        written = await self._written(codes)
        table = self.driver.table
        reachable = self.driver.online and table is not None
        result = None
        if reachable and table is not None:
            result = plan(self._views(codes), table, written)
            await slot_writes.drop(tx, device.device_id, result.left)

        for code in codes:
            attempts, _, since = retry[code.access_code_id]
            await self._judge(code, result, attempts, since)
        command: Command | None = None
        if self.driver.online and (reads.due or table is None):
            # Fresh truth first: at start, on reconnect, after an unknown outcome. A lock whose
            # reads keep failing (backoff) is not waited for: its writes go on being counted.
            command = self._read_if_allowed(reads.scope if table is not None else None)
        if command is None and result is not None:
            command = await self._choose(codes, result, retry)
            if command is None and result.needs_read and table != reads.table_after:
                command = self._read_if_allowed(frozenset(result.unreadable))
        if command is None and self.driver.online and self._resync_due():
            # The periodic check reads back the slots the gateway answers for, not all of them.
            held = frozenset(c.slot for c in codes if c.slot is not None)
            command = self._read_if_allowed(held if table is not None else None)
        await self._pool_health(result, retry)
        # Only future moments can wake the worker; a past one would make it spin.
        return Step(command, earliest(t for t in self.deadlines if t is not None and t > self.now))

    async def _written(self, codes: list[AccessCode]) -> list[Written]:
        """The PINs this pass's codes have written, settled first if the lock has answered."""
        if self.lock_answered:
            await slot_writes.settle(self.tx, self.device.device_id)
        ids = {c.access_code_id for c in codes}
        written = []
        for w in await slot_writes.of_device(self.tx, self.device.device_id):
            if w.code_id in ids:  # an unmanaged lock's other codes are not this pass's concern
                written.append(w)
                self.has_writes.add(w.code_id)
        return written

    def _lingers(self, code: AccessCode, result: Plan | None) -> bool:
        """A PIN of ``code`` may still be on the lock (not knowing counts as maybe)."""
        if result is None:
            return code.access_code_id in self.has_writes
        return code.access_code_id in result.lingering

    def _read_if_allowed(self, slots: frozenset[int] | None) -> Read | None:
        not_before = self.reads.not_before
        if not_before is not None and not_before > self.now:
            self.deadlines.append(not_before)
            return None
        return Read(slots)

    # -- desired state ------------------------------------------------------------------------

    def _wanted(self, code: AccessCode) -> bool:
        if code.deleting or not self.device.is_managed:
            return False
        return belongs_on_lock(Window(code.starts_at, code.ends_at), self.now, self.program_ahead)

    def _views(self, codes: list[AccessCode]) -> list[CodeView]:
        return [
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
            for index, c in enumerate(codes)
        ]

    async def _fill_pool(self, codes: list[AccessCode]) -> list[AccessCode]:
        pooled = [c for c in codes if c.backup_state is BackupState.POOLED and not c.deleting]
        missing = self.device.pool_size - len(pooled)
        if missing <= 0:
            return []
        taken = {c.code for c in codes} | {
            v
            for v in (await load_table(self.tx, self.device.device_id)).values()
            if isinstance(v, str)
        }
        created = []
        for _ in range(missing):
            try:
                pin = generate_code(code_lengths=self.device.code_lengths, taken=taken)
            except CodeRuleViolation:
                break
            taken.add(pin)
            created.append(
                await code_store.insert_code(
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

    async def _judge(
        self, code: AccessCode, result: Plan | None, attempts: int, since: datetime
    ) -> None:
        """Record what is true of ``code`` now: status, problems, events."""
        tx, cid = self.tx, code.access_code_id
        wanted = self._wanted(code)
        window = Window(code.starts_at, code.ends_at)
        self.deadlines.append(next_boundary(window, self.now, self.program_ahead))
        status_before = code.status
        if code.slot is None and code.on_lock and not self._lingers(code, result):
            # Its slot was taken over (an evicted backup): off the lock once it is seen gone.
            await code_store.set_on_lock(tx, code, False)
            await tx.emit(EventType.CODE_REMOVED, code.device_id, cid)
        if result is not None and cid in result.verified:
            await self._now_set(code, attempts)
        elif result is not None and cid in result.gone:
            if await self._now_off(code, attempts):
                return  # gone for good: nothing more is said about it
        elif (
            code.slot is not None
            and (result is None or code.slot in result.unreadable)
            and (wanted and code.status is CodeStatus.SET)
        ):
            pass  # on the lock as far as anyone knows; nothing to say until it can be read
        elif result is not None and cid in result.external and code.allow_external_modification:
            pass  # changed at the keypad, and allowed to be: the gateway leaves it as it is
        elif not wanted and code.slot is None:
            if self._lingers(code, result):
                await code_store.set_status(tx, code, CodeStatus.REMOVING)
            elif code.deleting or has_ended(window, self.now):
                await self._forget(code)
                return
            else:
                await code_store.set_status(tx, code, CodeStatus.UNSET)
        elif not wanted:
            await code_store.set_status(tx, code, CodeStatus.REMOVING)
        elif result is not None and cid in result.no_space:
            await code_store.set_status(tx, code, CodeStatus.UNSET)
        else:
            await code_store.set_status(tx, code, CodeStatus.SETTING)

        if result is not None:
            await self._problem(code, "duplicate_code_on_device", cid in result.duplicates)
            await self._problem(code, "no_space_for_access_code_on_device", cid in result.no_space)
            if cid in result.external:
                key = (
                    "external_modification_in_effect"
                    if code.allow_external_modification
                    else "conflicting_external_modification"
                )
                if await self._problem(code, key, True):
                    await tx.emit(EventType.CODE_MODIFIED_EXTERNALLY, code.device_id, cid)
            elif cid in result.verified:
                await self._problem(code, "external_modification_in_effect", False)
        if code.status is not status_before:
            since = self.now  # delays are measured from entering the status, not before it
        await self._progress_problems(code, attempts, since)

    async def _now_set(self, code: AccessCode, attempts: int) -> None:
        tx = self.tx
        if await code_store.set_status(tx, code, CodeStatus.SET):
            await tx.emit(EventType.CODE_SET, code.device_id, code.access_code_id, code=code.code)
        await code_store.set_on_lock(tx, code, True)
        if attempts:
            await code_store.record_attempt(tx, code, failed=False, retry_at=None)
        for key in (
            "failed_to_set_on_device",
            "conflicting_external_modification",
            "delay_in_setting_on_device",
        ):
            await self._problem(code, key, False)

    async def _errors_of(self, code: AccessCode) -> list[Json]:
        """The code's errors as its public object shows them (its own and its device's)."""
        found = await problems_of(self.tx, [code.access_code_id, code.device_id])
        errors, _ = code_problems(found[code.access_code_id], found[code.device_id])
        return errors

    async def _forget(self, code: AccessCode) -> None:
        await code_store.forget(self.tx, code)
        self.forgotten.add(code.access_code_id)
        self.raised = {r for r in self.raised if r[0] != code.access_code_id}

    async def _now_off(self, code: AccessCode, attempts: int) -> bool:
        """The lock no longer holds ``code`` (or its slot holds somebody else's PIN).

        Returns True when the code is gone for good (deleted or ended)."""
        tx = self.tx
        was_on = code.on_lock
        await code_store.set_slot(tx, code, None)
        await code_store.set_on_lock(tx, code, False)
        tx.reconcile(code.device_id)  # a slot came free: a waiting code may take it next pass
        if was_on:
            await tx.emit(EventType.CODE_REMOVED, code.device_id, code.access_code_id)
        if attempts:
            await code_store.record_attempt(tx, code, failed=False, retry_at=None)
        if code.deleting or has_ended(Window(code.starts_at, code.ends_at), self.now):
            await self._forget(code)
            return True
        await code_store.set_status(tx, code, CodeStatus.UNSET)
        for key in ("failed_to_remove_from_device", "delay_in_removing_from_device"):
            await self._problem(code, key, False)
        return False

    async def _progress_problems(self, code: AccessCode, attempts: int, since: datetime) -> None:
        """Failures after ``max_attempts``, an offline lock, and slowness, per status."""
        if code.status is CodeStatus.SETTING:
            # Once raised it stays until the code is finally set (contract section 7).
            failed = (
                attempts >= self.timing.max_attempts
                or not self.driver.online
                or (code.access_code_id, "failed_to_set_on_device") in self.raised
            )
            if await self._problem(code, "failed_to_set_on_device", failed) and failed:
                await self.tx.emit(
                    EventType.CODE_FAILED_TO_SET,
                    code.device_id,
                    code.access_code_id,
                    errors=await self._errors_of(code),
                )
            await self._delay(
                code, since, "delay_in_setting_on_device", EventType.CODE_DELAY_SETTING
            )
        elif code.status is CodeStatus.REMOVING:
            failed = attempts >= self.timing.max_attempts
            if await self._problem(code, "failed_to_remove_from_device", failed) and failed:
                await self.tx.emit(
                    EventType.CODE_FAILED_TO_REMOVE, code.device_id, code.access_code_id
                )
            await self._delay(
                code, since, "delay_in_removing_from_device", EventType.CODE_DELAY_REMOVING
            )
        else:
            await self._problem(code, "failed_to_set_on_device", False)
            await self._problem(code, "delay_in_setting_on_device", False)
            await self._problem(code, "failed_to_remove_from_device", False)
            await self._problem(code, "delay_in_removing_from_device", False)

    async def _delay(self, code: AccessCode, since: datetime, key: str, event: EventType) -> None:
        due = since + timedelta(seconds=self.timing.delay_warning_after)
        late = self.now >= due
        if not late:
            self.deadlines.append(due)
        if await self._problem(code, key, late) and late:
            await self.tx.emit(event, code.device_id, code.access_code_id)

    async def _problem(self, code: AccessCode, key: str, active: bool) -> bool:
        """Raise or clear; True when this call changed it."""
        return await self._set_problem(code.access_code_id, key, active)

    async def _set_problem(
        self, owner_id: str, key: str, active: bool, message: str | None = None
    ) -> bool:
        """``set_problem``, skipping the statement when nothing would change (most passes)."""
        if ((owner_id, key) in self.raised) == active and message is None:
            return False
        changed = await set_problem(
            self.tx, owner_id, key, active, device_id=self.device.device_id, message=message
        )
        if active:
            self.raised.add((owner_id, key))
        else:
            self.raised.discard((owner_id, key))
        return changed

    # -- the next command ---------------------------------------------------------------------

    async def _choose(
        self,
        codes: list[AccessCode],
        result: Plan,
        retry: Mapping[str, tuple[int, datetime | None, datetime]],
    ) -> Command | None:
        by_id = {c.access_code_id: c for c in codes}
        for action in result.actions:
            code = by_id.get(action.code_id)
            if code is None:
                continue
            _, retry_at, _ = retry[action.code_id]
            if retry_at is not None and retry_at > self.now:
                self.deadlines.append(retry_at)
                continue
            await self._commit_to(action, code, by_id)
            return action
        return None

    async def _commit_to(
        self, action: Action, code: AccessCode, by_id: Mapping[str, AccessCode]
    ) -> None:
        """Record the slot and the attempt before sending, so a crash can be resumed."""
        tx = self.tx
        if isinstance(action, Write):
            if action.evicts is not None:
                # Ordinary codes come first: the backup's slot is overwritten in one command.
                # Its PIN stays recorded in that slot, so it is "removed" once seen overwritten.
                victim = by_id[action.evicts]
                await code_store.set_slot(tx, victim, None)
                await code_store.set_status(tx, victim, CodeStatus.UNSET)
            await code_store.set_slot(tx, code, action.slot)
            await code_store.set_status(tx, code, CodeStatus.SETTING)
            written = Written(code.access_code_id, action.slot, action.pin, settled=False)
            await slot_writes.record(tx, written, code.device_id)
        elif action.slot == code.slot:
            await code_store.set_status(tx, code, CodeStatus.REMOVING)
        attempts, _, _ = (await code_store.retry_state(tx, code.device_id))[code.access_code_id]
        max_attempts = self.timing.max_attempts
        retry_at = None
        if attempts + 1 >= max_attempts:
            retry_at = self.now + retry_delay(attempts + 2 - max_attempts)
        await code_store.record_attempt(tx, code, failed=True, retry_at=retry_at)

    # -- device-level -------------------------------------------------------------------------

    def _resync_due(self) -> bool:
        last = self.reads.last
        if last is None or self.timing.resync_interval <= 0:  # 0: no periodic read-back
            return False
        due = last + timedelta(seconds=self.timing.resync_interval)
        self.deadlines.append(due)
        return self.now >= due

    async def _pool_health(
        self, result: Plan | None, retry: Mapping[str, tuple[int, datetime | None, datetime]]
    ) -> None:
        tx, device = self.tx, self.device
        live = [c for c in self.codes if c.access_code_id not in self.forgotten and not c.deleting]
        pooled = [c for c in live if c.backup_state is BackupState.POOLED]
        available = sum(1 for c in pooled if c.status is CodeStatus.SET)
        active = sum(1 for c in live if c.backup_state is BackupState.PULLED)
        enabled = device.pool_enabled and device.is_managed
        short = enabled and available < device.pool_size
        since = device.pool_short_since
        if short and since is None:
            since = self.now
            await device_store.set_pool_short_since(tx, device.device_id, since)
        elif not short and since is not None:
            since = None
            await device_store.set_pool_short_since(tx, device.device_id, None)
        cause = pool_rules.fill_failure(
            online=self.driver.online,
            no_space=result is not None
            and any(c.access_code_id in result.no_space for c in pooled),
            in_flight=sum(
                1 for c in pooled if c.slot is not None and c.status is not CodeStatus.SET
            ),
            failed=any(
                retry.get(c.access_code_id, (0, None, self.now))[0] >= self.timing.max_attempts
                for c in pooled
                if c.status is not CodeStatus.SET
            ),
        )
        grace = timedelta(seconds=self.pool.fill_grace)
        health = pool_rules.pool_health(
            enabled=enabled,
            size=device.pool_size,
            available=available,
            short_since=since,
            now=self.now,
            fill_grace=grace,
            fill_failed=cause is not None,
        )
        self.deadlines.append(
            pool_rules.grace_deadline(
                enabled=enabled,
                size=device.pool_size,
                available=available,
                short_since=since,
                fill_grace=grace,
            )
        )
        did = device.device_id
        reason = cause or "filling it is taking longer than fill_grace"
        for key, active_now in (
            ("empty_backup_access_code_pool", health.empty),
            ("partial_backup_access_code_pool", health.partial),
        ):
            message = f"{PROBLEMS[key].message.rstrip('.')}: {reason}." if active_now else None
            await self._set_problem(did, key, active_now, message)
        many = enabled and pool_rules.many_active(active, self.pool.many_active_threshold)
        await self._set_problem(did, "many_active_backup_codes", many)
