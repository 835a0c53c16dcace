"""Door operations a lock reported (contract section 11): stored as ``lock.*`` events naming the
managed code that opened the door, and the end of a one-time code after its first unlock.

Run inside a lock worker's unit (with its pass, or alone while a command is on its way), so an
event is stored as soon as the worker hears it and a one-time code's removal is planned by the
very next pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.domain import EntryEvent, EntryKind, EntryMethod, SlotValue
from gateway.logs import get_logger
from gateway.model import AccessCode, Device
from gateway.store import codes as code_store
from gateway.store import slot_writes
from gateway.store.db import Tx
from gateway.store.observed import load_table

log = get_logger("gateway.entries")


def note_entry_events(tx: Tx, device_id: str) -> None:
    """The lock's stack reports door operations: ``has_native_entry_events`` becomes true and
    stays so (stored: a native lock proves it only by sending one, which a restart forgets)."""
    changed = tx.execute(
        "UPDATE devices SET entry_events = 1 WHERE device_id = ? AND entry_events = 0",
        (device_id,),
    )
    if changed:
        tx.touch(device_id)


def record_entries(
    tx: Tx,
    device: Device,
    events: Iterable[EntryEvent],
    table: Mapping[int, SlotValue] | None = None,
) -> None:
    """Store each event with the code it names; remove a one-time code that opened the door.

    ``table``: what the lock holds as the driver reports it now (else as last stored): the
    code a slot names is the one whose PIN is in that slot."""
    on_lock: Mapping[int, SlotValue] | None = table
    for event in events:
        code = None
        if event.method is EntryMethod.KEYCODE and event.slot is not None and device.is_managed:
            if on_lock is None:
                on_lock = load_table(tx, device.device_id)
            code = occupant(tx, device.device_id, event.slot, on_lock)
        tx.emit(
            event.event_type,
            device.device_id,
            code.access_code_id if code is not None else None,
            access_code_is_managed=code is not None,
            method=event.method.value,
            slot=event.slot,
        )
        log.info(
            "entries.heard",
            kind=event.kind.value,
            method=event.method.value,
            slot=event.slot,
            access_code_id=code.access_code_id if code is not None else None,
        )
        if (
            code is not None
            and event.kind is EntryKind.UNLOCKED
            and code.is_one_time_use
            and not code.deleting
        ):
            log.info("entries.one_time_code_used", access_code_id=code.access_code_id)
            code_store.remove(tx, code)


def occupant(
    tx: Tx, device_id: str, slot: int, on_lock: Mapping[int, SlotValue]
) -> AccessCode | None:
    """The managed code whose PIN opened ``slot``: the one that wrote the PIN the lock holds
    there (a backup evicted a moment ago still counts as itself) or holds that slot with it;
    where the table does not show the slot's PIN, the code assigned that slot. None for a PIN
    the gateway did not put there (a code of the same PIN waiting elsewhere is not it)."""
    pin = on_lock.get(slot)
    if isinstance(pin, str):
        writer = slot_writes.writer_of(tx, device_id, slot, pin)
        if writer is not None:
            return code_store.get_code(tx, writer)
        row = tx.fetchone(
            "SELECT access_code_id FROM access_codes WHERE device_id = ? AND slot = ? AND code = ?",
            (device_id, slot, pin),
        )
    else:
        row = tx.fetchone(
            "SELECT access_code_id FROM access_codes WHERE device_id = ? AND slot = ?",
            (device_id, slot),
        )
    return code_store.get_code(tx, row["access_code_id"]) if row else None
