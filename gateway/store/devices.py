"""Devices in the database: synced from the YAML at start, changed by the API and the locks."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from gateway.clock import from_stored, isoformat
from gateway.config import BackupPoolSettings, DeviceConfig
from gateway.model import PROBLEMS, Device, EventType, Problem, ProblemCode
from gateway.rules.pool import supports_pool
from gateway.store import codes as code_store
from gateway.store.db import Row, Tx
from gateway.store.problems import clear_device_problems, problems_of, set_problem

_COUNTS = """
    SELECT device_id,
           SUM(backup_state = 'pooled' AND status = 'set' AND NOT deleting) AS available,
           SUM(backup_state = 'pulled' AND NOT deleting) AS active
      FROM access_codes WHERE is_backup = 1 {only} GROUP BY device_id
"""


def sync_from_config(
    tx: Tx,
    devices: Sequence[DeviceConfig],
    pool: BackupPoolSettings,
    programmable: Callable[[str], bool] = lambda driver: True,
) -> None:
    """Make the devices table follow the YAML; a pool enabled once is never disabled here.

    ``programmable(driver)`` says whether this build can program codes through that driver."""
    now = isoformat(tx.now)
    for device in devices:
        lengths = json.dumps(list(device.code_lengths)) if device.code_lengths else None
        size = device.backup_pool.size or pool.size
        tx.execute(
            "INSERT INTO devices (device_id, name, driver, created_at, pool_enabled, pool_size,"
            " capacity, code_lengths, in_config, programmable)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
            " ON CONFLICT (device_id) DO UPDATE SET name = excluded.name,"
            " driver = excluded.driver, pool_size = excluded.pool_size, in_config = 1,"
            " programmable = excluded.programmable,"
            " pool_enabled = MAX(pool_enabled, excluded.pool_enabled),"
            " capacity = COALESCE(excluded.capacity, capacity),"
            " code_lengths = COALESCE(excluded.code_lengths, code_lengths)",
            (
                device.device_id,
                device.name,
                device.driver,
                now,
                int(device.backup_pool.enabled),
                size,
                device.slots,
                lengths,
                int(programmable(device.driver)),
            ),
        )
        tx.touch(device.device_id)
    ids = [d.device_id for d in devices]
    marks = ",".join("?" * len(ids))
    sql = f"UPDATE devices SET in_config = 0 WHERE device_id NOT IN ({marks})"  # noqa: S608
    tx.execute(sql, ids)


def get_device(tx: Tx, device_id: str) -> Device | None:
    found = _load(tx, "WHERE device_id = ? AND in_config", (device_id,))
    return found[0] if found else None


def get_device_for_pass(tx: Tx, device_id: str) -> Device | None:
    """The device as its lock's pass reads it: its row, without the backup counts and the
    problems of its public object, two queries a pass never needs (it counts the pool from its
    codes and reads the problems with theirs). Its counts read 0, its problems none: it is
    never shown to anyone."""
    found = _load(tx, "WHERE device_id = ? AND in_config", (device_id,), shown=False)
    return found[0] if found else None


#: Ids per query when loading many devices (far below SQLite's limit of bound parameters).
_CHUNK = 500


def get_devices(tx: Tx, device_ids: Sequence[str]) -> list[Device]:
    """The configured devices among ``device_ids``, in id order, a few queries per 500."""
    found: list[Device] = []
    ids = sorted(device_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = tuple(ids[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        where = f"WHERE device_id IN ({marks}) AND in_config ORDER BY device_id"
        found += _load(tx, where, chunk)
    return found


def configured_device_ids(tx: Tx) -> list[str]:
    rows = tx.fetchall("SELECT device_id FROM devices WHERE in_config ORDER BY device_id")
    return [r["device_id"] for r in rows]


def removed_device_ids(tx: Tx) -> list[str]:
    """Devices taken out of the YAML: their retained objects must be withdrawn."""
    rows = tx.fetchall("SELECT device_id FROM devices WHERE NOT in_config")
    return [r["device_id"] for r in rows]


def list_devices(tx: Tx) -> list[Device]:
    return _load(tx, "WHERE in_config ORDER BY device_id", ())


def _load(tx: Tx, where: str, params: tuple[str, ...], *, shown: bool = True) -> list[Device]:
    rows = tx.fetchall(f"SELECT * FROM devices {where}", params)  # noqa: S608
    if not rows:
        return []
    if not shown:
        return [_device(row, None, []) for row in rows]
    args: tuple[str, ...] = ()
    sql = _COUNTS.format(only="")
    if len(rows) <= _CHUNK:  # some devices (one: every lock worker pass): count only theirs
        args = tuple(r["device_id"] for r in rows)
        sql = _COUNTS.format(only=f"AND device_id IN ({','.join('?' * len(args))})")
    counts = {r["device_id"]: r for r in tx.fetchall(sql, args)}
    problems = problems_of(tx, [r["device_id"] for r in rows])
    return [_device(row, counts.get(row["device_id"]), problems[row["device_id"]]) for row in rows]


def _device(row: Row, counts: Row | None, problems: list[Problem]) -> Device:
    lengths = json.loads(row["code_lengths"]) if row["code_lengths"] else None
    capacity = row["capacity"]
    return Device(
        device_id=row["device_id"],
        name=row["name"],
        driver=row["driver"],
        is_managed=bool(row["is_managed"]),
        created_at=from_stored(row["created_at"]),
        online=bool(row["online"]),
        pool_enabled=bool(row["pool_enabled"]),
        pool_size=row["pool_size"],
        capacity=capacity,
        code_lengths=(lengths[0], lengths[1]) if lengths else None,
        supports_pool=bool(row["programmable"]) and supports_pool(capacity),
        backup_codes_available=int(counts["available"] or 0) if counts else 0,
        active_backup_codes=int(counts["active"] or 0) if counts else 0,
        problems=problems,
        has_entry_events=bool(row["entry_events"]),
        pool_short_since=from_stored(row["pool_short_since"])
        if row["pool_short_since"]
        else None,
    )


def set_managed(tx: Tx, device_id: str, managed: bool) -> bool:
    """Flip management; True (and an event) only when it changed. Backup codes exist only for
    a managed pool: they leave the lock with management (the other codes stay as they are)."""
    changed = tx.execute(
        "UPDATE devices SET is_managed = ? WHERE device_id = ? AND is_managed != ?",
        (int(managed), device_id, int(managed)),
    )
    if changed:
        event = EventType.DEVICE_MANAGED if managed else EventType.DEVICE_UNMANAGED
        tx.emit(event, device_id)
        tx.touch(device_id)
        tx.reconcile(device_id)
        if not managed:
            for code in code_store.codes_of_device(tx, device_id):
                if code.is_backup:
                    code_store.mark_deleting(tx, code)
    return bool(changed)


def has_backups(tx: Tx, device_id: str) -> bool:
    """Whether any backup code of the device is still in the database (on its lock, or being
    cleared from it)."""
    row = tx.fetchone(
        "SELECT 1 FROM access_codes WHERE device_id = ? AND is_backup = 1 LIMIT 1", (device_id,)
    )
    return row is not None


def retire(tx: Tx, device_id: str) -> None:
    """A device a reload removed, once its backups are off its lock: out of the API, as if it
    had been left out of the configuration at start (its history stays)."""
    tx.execute("UPDATE devices SET in_config = 0 WHERE device_id = ?", (device_id,))
    tx.touch(device_id)


def enable_pool(tx: Tx, device_id: str) -> bool:
    changed = tx.execute(
        "UPDATE devices SET pool_enabled = 1 WHERE device_id = ? AND NOT pool_enabled",
        (device_id,),
    )
    if changed:
        tx.touch(device_id)
        tx.reconcile(device_id)
    return bool(changed)


def set_online(tx: Tx, device_id: str, online: bool) -> bool:
    """Record the lock's reachability with its event and the ``device_disconnected`` error."""
    return bool(set_online_many(tx, [device_id], online))


def set_online_many(tx: Tx, device_ids: Sequence[str], online: bool) -> list[str]:
    """:func:`set_online` for many locks in a few statements (ten thousand locks are found
    online at start: a statement each, the writer thread waited for the GIL at every one of
    them). Returns those that changed, in order of id, each with its event."""
    ids = json.dumps(list(device_ids))
    changed = [
        row[0]
        for row in tx.fetchall(
            "SELECT device_id FROM devices WHERE device_id IN (SELECT value FROM json_each(?))"
            " AND online != ? ORDER BY device_id",
            (ids, int(online)),
        )
    ]
    if changed:
        tx.execute(
            "UPDATE devices SET online = ? WHERE device_id IN (SELECT value FROM json_each(?))"
            " AND online != ?",
            (int(online), ids, int(online)),
        )
    if online:
        clear_device_problems(tx, device_ids, ProblemCode.DEVICE_DISCONNECTED)
    else:
        for device_id in device_ids:
            set_problem(tx, device_id, ProblemCode.DEVICE_DISCONNECTED, True, device_id=device_id)
    event = EventType.DEVICE_CONNECTED if online else EventType.DEVICE_DISCONNECTED
    for device_id in changed:
        tx.emit(event, device_id)
        tx.touch(device_id)
    return changed


def set_report_refused(tx: Tx, device_id: str, reason: str | None) -> None:
    """Raise ``invalid_report_from_device`` naming ``reason`` (never a PIN), or clear it."""
    message = None if reason is None else f"The lock's last report was refused: {reason}."
    set_problem(
        tx,
        device_id,
        ProblemCode.INVALID_REPORT_FROM_DEVICE,
        reason is not None,
        device_id=device_id,
        message=message,
    )


def set_not_found(tx: Tx, device_id: str, check: str | None) -> None:
    """Raise ``device_not_found_on_stack`` naming what to ``check``, or clear it."""
    spec = PROBLEMS[ProblemCode.DEVICE_NOT_FOUND_ON_STACK]
    set_problem(
        tx,
        device_id,
        ProblemCode.DEVICE_NOT_FOUND_ON_STACK,
        check is not None,
        device_id=device_id,
        message=None if check is None else f"{spec.message.rstrip('.')}: {check}.",
    )


def set_shape(
    tx: Tx, device_id: str, capacity: int | None, code_lengths: tuple[int, int] | None
) -> None:
    """Remember the slot count and PIN lengths the lock itself reported."""
    set_shape_many(tx, [device_id], capacity, code_lengths)


def set_shape_many(
    tx: Tx, device_ids: Sequence[str], capacity: int | None, code_lengths: tuple[int, int] | None
) -> None:
    """:func:`set_shape` for many locks of one model, in one statement."""
    lengths = json.dumps(list(code_lengths)) if code_lengths else None
    changed = tx.execute(
        "UPDATE devices SET capacity = COALESCE(?, capacity),"
        " code_lengths = COALESCE(?, code_lengths)"
        " WHERE device_id IN (SELECT value FROM json_each(?))"
        " AND (capacity IS NOT COALESCE(?, capacity)"
        "      OR code_lengths IS NOT COALESCE(?, code_lengths))",
        (capacity, lengths, json.dumps(list(device_ids)), capacity, lengths),
    )
    if changed:  # those that were already so are published as they are: no change shows
        for device_id in device_ids:
            tx.touch(device_id)


def set_pool_short_since(tx: Tx, device_id: str, since: datetime | None) -> None:
    tx.execute(
        "UPDATE devices SET pool_short_since = ? WHERE device_id = ?",
        (isoformat(since) if since else None, device_id),
    )
