"""The lock's slot table as last observed, kept so it survives a restart."""

from __future__ import annotations

from gateway.domain import SlotTable, SlotValue, Unreadable
from gateway.store.db import Tx


def _row(device_id: str, slot: int, value: SlotValue) -> tuple[str, int, str | None, str]:
    if isinstance(value, Unreadable):
        return (device_id, slot, None, value.value)
    if value is None:
        return (device_id, slot, None, "empty")
    return (device_id, slot, value, "code")


def record_table(
    tx: Tx, device_id: str, table: SlotTable, previous: SlotTable | None = None
) -> dict[int, tuple[SlotValue, SlotValue]]:
    """Store the table, writing only the slots that differ from what is stored: a lock that
    reports what it held before (a restart, a resync) costs no write. ``previous``: the table
    recorded last (the worker remembers it), else what is stored is read first. Returns what
    changed, ``slot -> (before, now)`` (a slot not known before was ``UNKNOWN``)."""
    if previous is not None:
        stored = {slot: previous.value(slot) for slot in range(1, previous.capacity + 1)}
    else:
        stored = load_table(tx, device_id)
    seen = {slot: table.value(slot) for slot in range(1, table.capacity + 1)}
    gone = [(device_id, slot) for slot in stored if slot not in seen]
    if gone:
        tx.executemany("DELETE FROM observed_slots WHERE device_id = ? AND slot = ?", gone)
    changed = {
        slot: (stored.get(slot, Unreadable.UNKNOWN), value)
        for slot, value in seen.items()
        if slot not in stored or stored[slot] != value
    }
    if changed:
        tx.executemany(
            "INSERT OR REPLACE INTO observed_slots (device_id, slot, code, state)"
            " VALUES (?, ?, ?, ?)",
            [_row(device_id, slot, now) for slot, (_, now) in changed.items()],
        )
    return changed


def load_table(tx: Tx, device_id: str) -> dict[int, SlotValue]:
    rows = tx.fetchall(
        "SELECT slot, code, state FROM observed_slots WHERE device_id = ?", (device_id,)
    )
    values: dict[int, SlotValue] = {}
    for row in rows:
        state = row["state"]
        if state == "code":
            values[row["slot"]] = row["code"]
        elif state == "empty":
            values[row["slot"]] = None
        else:
            values[row["slot"]] = Unreadable(state)
    return values
