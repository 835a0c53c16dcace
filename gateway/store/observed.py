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


async def record_table(tx: Tx, device_id: str, table: SlotTable) -> None:
    await tx.execute("DELETE FROM observed_slots WHERE device_id = ?", (device_id,))
    await tx.executemany(
        "INSERT INTO observed_slots (device_id, slot, code, state) VALUES (?, ?, ?, ?)",
        [_row(device_id, slot, table.value(slot)) for slot in range(1, table.capacity + 1)],
    )


async def load_table(tx: Tx, device_id: str) -> dict[int, SlotValue]:
    rows = await tx.fetchall(
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
