"""Access codes in the database: rows <-> objects, and every status change with its events."""

from __future__ import annotations

import json
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from gateway.clock import from_stored, isoformat
from gateway.model import AccessCode, BackupState, CodeStatus, EventType, Json, ProblemCode
from gateway.store import slot_writes
from gateway.store.db import Row, Tx, new_id
from gateway.store.problems import clear_all, problems_of, set_problem
from gateway.store.scrub import scrub_pins


def _ts(value: str | None) -> datetime | None:
    return None if value is None else from_stored(value)


#: The columns a code is read from: :class:`AccessCode`'s fields in order, then its
#: :class:`RetryState`'s. Named once and read by position: a ``sqlite3.Row`` looks a name up
#: by comparing it with each column's, and a pass over a lock with 200 codes reads 5,000.
_COLUMNS = (
    "access_code_id, device_id, name, code, starts_at, ends_at, status, created_at, is_backup,"
    " backup_state, pulled_for, pulled_backup_id, allow_external_modification, slot, deleting,"
    " on_lock, is_one_time_use, common_code_key, code_from, code_changed_at, window_from,"
    " window_changed_at, status_since, attempts, retry_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM access_codes"  # noqa: S608 (constant)


def _code(row: Row) -> AccessCode:
    (
        cid, device_id, name, pin, starts_at, ends_at, status, created_at, is_backup,
        backup_state, pulled_for, pulled_backup_id, allow_external, slot, deleting,
        on_lock, one_time, common_key, code_from, code_changed_at, window_from,
        window_changed_at, status_since, _, _,
    ) = row  # fmt: skip
    return AccessCode(
        access_code_id=cid,
        device_id=device_id,
        name=name,
        code=pin,
        starts_at=_ts(starts_at),
        ends_at=_ts(ends_at),
        status=CodeStatus(status),
        created_at=from_stored(created_at),
        is_backup=bool(is_backup),
        backup_state=BackupState(backup_state) if backup_state else None,
        pulled_for=pulled_for,
        pulled_backup_id=pulled_backup_id,
        allow_external_modification=bool(allow_external),
        slot=slot,
        deleting=bool(deleting),
        on_lock=bool(on_lock),
        is_one_time_use=bool(one_time),
        common_code_key=common_key,
        code_from=code_from,
        code_changed_at=_ts(code_changed_at),
        window_from=_window(window_from),
        window_changed_at=_ts(window_changed_at),
        status_since=_ts(status_since),
    )


def _window(value: str | None) -> tuple[datetime | None, datetime | None] | None:
    if value is None:
        return None
    starts_at, ends_at = json.loads(value)
    return _ts(starts_at), _ts(ends_at)


def get_code(tx: Tx, access_code_id: str) -> AccessCode | None:
    row = tx.fetchone(f"{_SELECT} WHERE access_code_id = ?", (access_code_id,))
    return _code(row) if row else None


def get_code_by_pin(tx: Tx, device_id: str, pin: str) -> AccessCode | None:
    row = tx.fetchone(
        f"{_SELECT} WHERE device_id = ? AND code = ?", (device_id, pin)
    )
    return _code(row) if row else None


def codes_of_device(tx: Tx, device_id: str) -> list[AccessCode]:
    rows = tx.fetchall(
        f"{_SELECT} WHERE device_id = ? ORDER BY created_at, rowid", (device_id,)
    )
    return [_code(r) for r in rows]


#: A code with nothing to do before its window opens (``starts_at`` after ``?``): never sent,
#: never failed, nothing raised, no PIN written anywhere. A lock pass skips it (a pass costs
#: what may change, not every guest of next month) and only wakes when it becomes due.
_DORMANT = """
    status = 'unset' AND slot IS NULL AND NOT deleting AND NOT on_lock AND attempts = 0
    AND starts_at IS NOT NULL AND starts_at > ?
    AND NOT EXISTS (SELECT 1 FROM problems p WHERE p.owner_id = access_codes.access_code_id)
    AND NOT EXISTS (
        SELECT 1 FROM slot_writes w WHERE w.access_code_id = access_codes.access_code_id)
"""


class Resting(NamedTuple):
    """A code whose row says it may be at rest (``gateway.rules.verdict.at_rest``): set, seen
    on the lock in its slot, no failure behind it, no update pending, nothing raised, and not
    a pooled backup (which may have to give its slot up). A pass plans it from these few
    columns; only if the plan finds it is not at rest after all is it built in full."""

    access_code_id: str
    code: str
    slot: int
    is_backup: bool
    backup_state: BackupState | None
    allow_external: bool
    starts_at: datetime | None
    ends_at: datetime | None
    row: Row

    def build(self) -> tuple[AccessCode, RetryState]:
        return _code(self.row), _retry(self.row)


@dataclass(slots=True)
class PassCodes:
    """What a lock pass starts from: its codes in order (oldest first), each either built in
    full with its retry state or :class:`Resting`; and when the first dormant one wakes."""

    codes: list[AccessCode]
    retry: dict[str, RetryState]
    resting: list[Resting]
    order: list[str]  # every id of both lists, oldest first
    first_dormant: datetime | None

    def build_all(self) -> None:
        """Build the resting codes too, each in its place (the plan found one not at rest)."""
        if not self.resting:
            return
        built = {c.access_code_id: c for c in self.codes}
        for rest in self.resting:
            built[rest.access_code_id], self.retry[rest.access_code_id] = rest.build()
        self.codes = [built[cid] for cid in self.order]
        self.resting = []


def _resting(row: Row) -> Resting | None:
    """A :class:`Resting` of a row read with :data:`_COLUMNS`, if it may be at rest."""
    (
        cid, _, _, pin, starts_at, ends_at, status, _, is_backup, backup_state, _, _,
        allow_external, slot, deleting, on_lock, _, _, code_from, _, window_from, _, _,
        attempts, _,
    ) = row  # fmt: skip
    if (
        status != "set"
        or not on_lock
        or slot is None
        or deleting
        or attempts
        or backup_state == "pooled"
        or code_from is not None
        or window_from is not None
    ):
        return None
    return Resting(
        cid,
        pin,
        slot,
        bool(is_backup),
        BackupState(backup_state) if backup_state else None,
        bool(allow_external),
        _ts(starts_at),
        _ts(ends_at),
        row,
    )


def codes_for_pass(
    tx: Tx, device_id: str, horizon: datetime, raised: Container[str] = ()
) -> PassCodes:
    """The device's codes but those dormant until after ``horizon`` (see :data:`_DORMANT`),
    from one read of their rows: those that may be at rest and have nothing in ``raised`` (the
    owners with problems raised) as :class:`Resting`, the others built with their retry
    states; and when the first dormant one opens its window."""
    bound = isoformat(horizon)
    rows = tx.fetchall(
        f"{_SELECT} WHERE device_id = ? AND NOT ({_DORMANT})"
        " ORDER BY created_at, rowid",
        (device_id, bound),
    )
    first = tx.fetchone(
        f"SELECT MIN(starts_at) AS first FROM access_codes WHERE device_id = ? AND {_DORMANT}",  # noqa: S608
        (device_id, bound),
    )
    found = PassCodes([], {}, [], [row[0] for row in rows], _ts(first["first"]) if first else None)
    for row in rows:
        rest = _resting(row)
        if rest is not None and rest.access_code_id not in raised:
            found.resting.append(rest)
        else:
            found.codes.append(_code(row))
            found.retry[row[0]] = _retry(row)
    return found


def codes_by_ids(tx: Tx, ids: Sequence[str]) -> list[AccessCode]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = tx.fetchall(
        f"{_SELECT} WHERE access_code_id IN ({marks})"
        " ORDER BY created_at, rowid",
        list(ids),
    )
    return [_code(r) for r in rows]


def pins_of_device(tx: Tx, device_id: str, *, except_id: str | None = None) -> set[str]:
    rows = tx.fetchall(
        "SELECT code FROM access_codes WHERE device_id = ? AND access_code_id IS NOT ?",
        (device_id, except_id),
    )
    return {r["code"] for r in rows}


def shared_pin(tx: Tx, common_code_key: str) -> str | None:
    """The PIN the managed codes under ``common_code_key`` share, while one is not deleted."""
    row = tx.fetchone(
        "SELECT code FROM access_codes WHERE common_code_key = ? AND NOT deleting"
        " ORDER BY created_at, rowid LIMIT 1",
        (common_code_key,),
    )
    return None if row is None else str(row["code"])


def codes_with_key(tx: Tx, common_code_key: str) -> list[AccessCode]:
    """The managed codes (not being deleted) that share ``common_code_key``, oldest first."""
    rows = tx.fetchall(
        f"{_SELECT} WHERE common_code_key = ? AND NOT deleting"
        " ORDER BY created_at, rowid",
        (common_code_key,),
    )
    return [_code(r) for r in rows]


def set_common_code_key(tx: Tx, code: AccessCode, common_code_key: str | None) -> None:
    """Link ``code`` to the other codes of ``common_code_key`` (their PIN is its PIN)."""
    tx.execute(
        "UPDATE access_codes SET common_code_key = ? WHERE access_code_id = ?",
        (common_code_key, code.access_code_id),
    )
    code.common_code_key = common_code_key


def insert_code(
    tx: Tx,
    *,
    access_code_id: str | None = None,  # an adopted unmanaged code keeps its id
    device_id: str,
    name: str | None,
    code: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
    allow_external_modification: bool = False,
    backup: bool = False,
) -> AccessCode:
    """A new managed code, ``unset`` until its lock worker takes it up."""
    access_code_id = access_code_id or new_id()
    now = isoformat(tx.now)
    tx.execute(
        "INSERT INTO access_codes (access_code_id, device_id, name, code, starts_at, ends_at,"
        " status, created_at, is_backup, backup_state, allow_external_modification,"
        " status_since) VALUES (?, ?, ?, ?, ?, ?, 'unset', ?, ?, ?, ?, ?)",
        (
            access_code_id,
            device_id,
            name,
            code,
            isoformat(starts_at) if starts_at else None,
            isoformat(ends_at) if ends_at else None,
            now,
            int(backup),
            BackupState.POOLED.value if backup else None,
            int(allow_external_modification),
            now,
        ),
    )
    tx.reconcile(device_id)
    created = get_code(tx, access_code_id)
    assert created is not None
    if not backup:
        tx.emit(EventType.CODE_CREATED, device_id, access_code_id)
    return created


def update_fields(tx: Tx, code: AccessCode, changes: dict[str, Any]) -> None:
    """Apply changed columns (already validated); the worker re-plans the lock afterwards."""
    if not changes:
        return
    columns = ", ".join(f"{name} = ?" for name in changes)
    values = [isoformat(v) if isinstance(v, datetime) else v for v in changes.values()]
    tx.execute(
        f"UPDATE access_codes SET {columns} WHERE access_code_id = ?",  # noqa: S608 (names fixed)
        [*values, code.access_code_id],
    )
    tx.reconcile(code.device_id)


def _touch_counts(tx: Tx, code: AccessCode) -> None:
    """A change of ``code`` that its device's backup counts may show (an ordinary code's
    changes show nowhere on the device's public object)."""
    if code.is_backup:
        tx.touch(code.device_id)


def set_status(tx: Tx, code: AccessCode, status: CodeStatus) -> bool:
    if code.status is status:
        return False
    resting = status in (CodeStatus.SET, CodeStatus.UNSET)
    tx.execute(
        "UPDATE access_codes SET status = ?, status_since = ?,"
        " code_from = CASE WHEN ? THEN NULL ELSE code_from END,"
        " window_from = CASE WHEN ? THEN NULL ELSE window_from END"
        " WHERE access_code_id = ?",
        (status.value, isoformat(tx.now), resting, resting, code.access_code_id),
    )
    if resting:  # the lock matches what was asked: no update is pending any more
        code.code_from = code.window_from = None
    code.status = status
    _touch_counts(tx, code)
    return True


def note_pending_update(
    tx: Tx,
    code: AccessCode,
    *,
    new_code: str,
    new_window: tuple[datetime | None, datetime | None],
) -> None:
    """Remember what an update replaces while the lock still has to follow it
    (``pending_mutations``); ``code`` is the row before the update. Forgotten once the code
    rests (``set_status``), or here when the update is undone before the lock saw it."""
    now = tx.now
    code_from = code.code_from if code.code_from is not None else code.code
    code_since = code.code_changed_at if code.code_from is not None else now
    pin_pending = code.on_lock and new_code != code_from
    due = new_window[1] is None or (
        (new_window[0] is None or new_window[0] <= now) and new_window[1] > now
    )
    window_from = code.window_from or (code.starts_at, code.ends_at)
    window_since = code.window_changed_at if code.window_from is not None else now
    window_pending = code.on_lock != due and new_window != window_from
    tx.execute(
        "UPDATE access_codes SET code_from = ?, code_changed_at = ?, window_from = ?,"
        " window_changed_at = ? WHERE access_code_id = ?",
        (
            code_from if pin_pending else None,
            _iso(code_since) if pin_pending else None,
            json.dumps([_iso(t) for t in window_from]) if window_pending else None,
            _iso(window_since) if window_pending else None,
            code.access_code_id,
        ),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else isoformat(value)


def set_on_lock(tx: Tx, code: AccessCode, on_lock: bool) -> None:
    if code.on_lock == on_lock:
        return
    tx.execute(
        "UPDATE access_codes SET on_lock = ? WHERE access_code_id = ?",
        (int(on_lock), code.access_code_id),
    )
    code.on_lock = on_lock


def set_slot(tx: Tx, code: AccessCode, slot: int | None) -> None:
    if code.slot == slot:
        return
    tx.execute(
        "UPDATE access_codes SET slot = ? WHERE access_code_id = ?", (slot, code.access_code_id)
    )
    code.slot = slot


def mark_deleting(tx: Tx, code: AccessCode) -> None:
    """Deletion is a desire: the row goes once the lock no longer holds the code."""
    tx.execute(
        "UPDATE access_codes SET deleting = 1 WHERE access_code_id = ?", (code.access_code_id,)
    )
    code.deleting = True
    _touch_counts(tx, code)
    tx.reconcile(code.device_id)


def remove(tx: Tx, code: AccessCode) -> None:
    """Delete: gone at once when the lock never got it, else ``removing`` until it is cleared."""
    mark_deleting(tx, code)
    if code.slot is None and not slot_writes.has_any(tx, code.access_code_id):
        forget(tx, code)
    else:
        # Possibly written already (outcome unknown): removing until the lock is seen without it.
        set_status(tx, code, CodeStatus.REMOVING)


def forget(tx: Tx, code: AccessCode) -> None:
    """Drop a code that is off its lock for good; its history stays in the events."""
    clear_all(tx, code.access_code_id, device_id=code.device_id)
    slot_writes.forget_code(tx, code.access_code_id)
    tx.execute(
        "UPDATE access_codes SET pulled_backup_id = NULL WHERE pulled_backup_id = ?",
        (code.access_code_id,),
    )
    tx.execute("DELETE FROM access_codes WHERE access_code_id = ?", (code.access_code_id,))
    scrub_pins(tx, code.access_code_id)
    _touch_counts(tx, code)
    if code.pulled_for is not None:
        # The code it stood in for is no longer using a backup.
        set_problem(
            tx,
            code.pulled_for,
            ProblemCode.USING_BACKUP_ACCESS_CODE,
            False,
            device_id=code.device_id,
        )
    if not code.is_backup or code.backup_state is BackupState.PULLED:
        tx.emit(EventType.CODE_DELETED, code.device_id, code.access_code_id)


def record_attempt(tx: Tx, code: AccessCode, *, failed: bool, retry_at: datetime | None) -> int:
    """Count a failed command (or reset the count); returns the failures so far."""
    if not failed:
        tx.execute(
            "UPDATE access_codes SET attempts = 0, retry_at = NULL WHERE access_code_id = ?",
            (code.access_code_id,),
        )
        return 0
    tx.execute(
        "UPDATE access_codes SET attempts = attempts + 1, retry_at = ? WHERE access_code_id = ?",
        (isoformat(retry_at) if retry_at else None, code.access_code_id),
    )
    return attempts_of(tx, code.access_code_id)


def uncount_attempt(tx: Tx, access_code_id: str) -> None:
    """The command counted before it was sent never left (the lock went offline meanwhile)."""
    tx.execute(
        "UPDATE access_codes SET attempts = MAX(attempts - 1, 0), retry_at = NULL"
        " WHERE access_code_id = ?",
        (access_code_id,),
    )


class RetryState(NamedTuple):
    """How a code's programming is going (a tuple still, so it unpacks as before)."""

    attempts: int  # failed (or unanswered) commands since it last succeeded
    retry_at: datetime | None  # not to be tried again before this
    since: datetime  # when it entered its current status


def _retry(row: Row) -> RetryState:
    """The retry state of a row read with :data:`_COLUMNS`: its last three."""
    status_since, attempts, retry_at = row[-3:]
    return RetryState(attempts, _ts(retry_at), from_stored(status_since))


def retry_state(tx: Tx, device_id: str) -> dict[str, RetryState]:
    """Per code of ``device_id``: its :class:`RetryState`."""
    rows = tx.fetchall(f"{_SELECT} WHERE device_id = ?", (device_id,))
    return {r[0]: _retry(r) for r in rows}


def attempts_of(tx: Tx, access_code_id: str) -> int:
    """The code's failed (or unanswered) commands since it last succeeded, as stored now."""
    row = tx.fetchone(
        "SELECT attempts FROM access_codes WHERE access_code_id = ?", (access_code_id,)
    )
    return int(row["attempts"]) if row else 0


def to_json(tx: Tx, codes: Sequence[AccessCode]) -> list[Json]:
    """Public objects: each code's own problems plus its device's, and backup availability."""
    if not codes:
        return []
    device_ids = sorted({c.device_id for c in codes})
    problems = problems_of(tx, [c.access_code_id for c in codes] + device_ids)
    available = _pool_available(tx, device_ids)
    active_backups = _active_backups(tx, [c.access_code_id for c in codes])
    result = []
    for code in codes:
        code.problems = problems[code.access_code_id]
        result.append(
            code.to_json(
                device_problems=problems[code.device_id],
                backup_available=available.get(code.device_id, False)
                or code.access_code_id in active_backups,
                now=tx.now,
            )
        )
    return result


def _pool_available(tx: Tx, device_ids: Sequence[str]) -> dict[str, bool]:
    marks = ",".join("?" * len(device_ids))
    rows = tx.fetchall(
        "SELECT device_id, COUNT(*) AS n FROM access_codes"  # noqa: S608 (marks only)
        f" WHERE device_id IN ({marks}) AND is_backup = 1 AND backup_state = 'pooled'"
        " AND status = 'set' AND NOT deleting GROUP BY device_id",
        list(device_ids),
    )
    return {r["device_id"]: r["n"] > 0 for r in rows}


def _active_backups(tx: Tx, code_ids: Sequence[str]) -> set[str]:
    """Originals (among ``code_ids``) whose pulled backup has not ended."""
    marks = ",".join("?" * len(code_ids))
    rows = tx.fetchall(
        "SELECT pulled_for FROM access_codes"  # noqa: S608 (marks only)
        f" WHERE pulled_for IN ({marks}) AND backup_state = 'pulled' AND NOT deleting",
        list(code_ids),
    )
    return {r["pulled_for"] for r in rows}


def restart_programming(tx: Tx, code: AccessCode) -> None:
    """A changed PIN is not on the lock yet: back to ``setting`` with a fresh attempt count."""
    record_attempt(tx, code, failed=False, retry_at=None)
    if code.slot is not None:
        set_status(tx, code, CodeStatus.SETTING)


def active_backup_of(tx: Tx, code: AccessCode) -> AccessCode | None:
    """The pulled backup handed out for ``code``, while it has not ended."""
    if code.pulled_backup_id is None:
        return None
    backup = get_code(tx, code.pulled_backup_id)
    return None if backup is None or backup.deleting else backup


def available_backup(tx: Tx, device_id: str) -> AccessCode | None:
    """A pooled backup the lock already holds, lowest slot first."""
    row = tx.fetchone(
        f"{_SELECT} WHERE device_id = ? AND is_backup = 1"
        " AND backup_state = 'pooled' AND status = 'set' AND NOT deleting ORDER BY slot LIMIT 1",
        (device_id,),
    )
    return _code(row) if row else None


def pull(tx: Tx, backup: AccessCode, original: AccessCode) -> None:
    """Hand ``backup`` out for ``original``: out of the pool, ending when the original ends."""
    tx.execute(
        "UPDATE access_codes SET backup_state = 'pulled', pulled_for = ?, starts_at = ?,"
        " ends_at = ? WHERE access_code_id = ?",
        (
            original.access_code_id,
            isoformat(tx.now),
            isoformat(original.ends_at) if original.ends_at else None,
            backup.access_code_id,
        ),
    )
    tx.execute(
        "UPDATE access_codes SET pulled_backup_id = ? WHERE access_code_id = ?",
        (backup.access_code_id, original.access_code_id),
    )
    _touch_counts(tx, backup)
    tx.reconcile(original.device_id)
