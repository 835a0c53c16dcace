"""Every PIN the gateway has written (or begun to write) to a slot, until the lock is seen
without it: the memory that lets no PIN outlive its code (see ``rules.slots.Written``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from gateway.clock import isoformat, parse_timestamp
from gateway.rules.slots import Written
from gateway.store.db import Tx


async def record(tx: Tx, written: Written, device_id: str, settles_at: datetime) -> None:
    """Before the command is sent: after a crash the write may have landed."""
    await tx.execute(
        "INSERT OR REPLACE INTO slot_writes (device_id, slot, code, access_code_id, settles_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (device_id, written.slot, written.pin, written.code_id, isoformat(settles_at)),
    )


async def settle(tx: Tx, device_id: str, answered: Iterable[tuple[int, str]]) -> None:
    """The lock answered these writes: none of them can land later."""
    await tx.executemany(
        "UPDATE slot_writes SET settles_at = NULL WHERE device_id = ? AND slot = ? AND code = ?",
        [(device_id, slot, pin) for slot, pin in answered],
    )


async def of_device(tx: Tx, device_id: str) -> list[tuple[Written, datetime | None]]:
    """Each written PIN with the moment it settles (None: settled), as of ``tx.now``."""
    rows = await tx.fetchall(
        "SELECT slot, code, access_code_id, settles_at FROM slot_writes WHERE device_id = ?",
        (device_id,),
    )
    found = []
    for row in rows:
        settles_at = parse_timestamp(row["settles_at"]) if row["settles_at"] else None
        settled = settles_at is None or settles_at <= tx.now
        written = Written(row["access_code_id"], row["slot"], row["code"], settled)
        found.append((written, None if settled else settles_at))
    return found


async def drop(tx: Tx, device_id: str, left: Iterable[Written]) -> None:
    """The lock was seen without these PINs, and no command can bring them back."""
    await tx.executemany(
        "DELETE FROM slot_writes WHERE device_id = ? AND slot = ? AND code = ?",
        [(device_id, w.slot, w.pin) for w in left],
    )


async def has_any(tx: Tx, access_code_id: str) -> bool:
    row = await tx.fetchone(
        "SELECT 1 FROM slot_writes WHERE access_code_id = ? LIMIT 1", (access_code_id,)
    )
    return row is not None


async def forget_code(tx: Tx, access_code_id: str) -> None:
    await tx.execute("DELETE FROM slot_writes WHERE access_code_id = ?", (access_code_id,))
