"""Every PIN the gateway has written (or begun to write) to a slot, until the lock is seen
without it: the memory that lets no PIN outlive its code (see ``rules.slots.Written``).

A write that timed out may still land, even much later: a slow lock queues its commands. But a
lock works through its commands in order, and one worker sends it one command at a time, so the
lock's next real answer (to any command) proves every earlier write applied or dropped. Until
then a record is unsettled, and its code cannot be forgotten."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.rules.slots import Written
from gateway.store.db import Tx


def record(tx: Tx, written: Written, device_id: str) -> None:
    """Before the command is sent (``settled`` False): after a crash the write may have landed.
    Also a PIN the gateway adopts where it is (``unmanaged/convert_to_managed``, settled)."""
    tx.execute(
        "INSERT OR REPLACE INTO slot_writes (device_id, slot, code, access_code_id, answered)"
        " VALUES (?, ?, ?, ?, ?)",
        (device_id, written.slot, written.pin, written.code_id, int(written.settled)),
    )


def settle(tx: Tx, device_id: str) -> None:
    """The lock answered a command: every write sent to it before can no longer land."""
    tx.execute(
        "UPDATE slot_writes SET answered = 1 WHERE device_id = ? AND answered = 0", (device_id,)
    )


def of_device(tx: Tx, device_id: str) -> list[Written]:
    rows = tx.fetchall(
        "SELECT slot, code, access_code_id, answered FROM slot_writes WHERE device_id = ?",
        (device_id,),
    )
    return [
        Written(r["access_code_id"], r["slot"], r["code"], settled=bool(r["answered"]))
        for r in rows
    ]


def drop(tx: Tx, device_id: str, left: Iterable[Written]) -> None:
    """The lock was seen without these PINs, and no command can bring them back."""
    tx.executemany(
        "DELETE FROM slot_writes WHERE device_id = ? AND slot = ? AND code = ?",
        [(device_id, w.slot, w.pin) for w in left],
    )


def writer_of(tx: Tx, device_id: str, slot: int, pin: str) -> str | None:
    """The code that wrote ``pin`` into ``slot`` (still there, or possibly landed), if any."""
    row = tx.fetchone(
        "SELECT access_code_id FROM slot_writes WHERE device_id = ? AND slot = ? AND code = ?",
        (device_id, slot, pin),
    )
    return None if row is None else str(row["access_code_id"])


def has_any(tx: Tx, access_code_id: str) -> bool:
    row = tx.fetchone(
        "SELECT 1 FROM slot_writes WHERE access_code_id = ? LIMIT 1", (access_code_id,)
    )
    return row is not None


def forget_code(tx: Tx, access_code_id: str) -> None:
    tx.execute("DELETE FROM slot_writes WHERE access_code_id = ?", (access_code_id,))
