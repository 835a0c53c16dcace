"""Unmanaged codes (contract section 11): found in the observed table, cleared on request,
announced when they first appear. See ``gateway.rules.unmanaged`` for why they have no row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.clock import from_stored, isoformat
from gateway.domain import SlotTable, SlotValue, Unreadable
from gateway.logs import get_logger
from gateway.model import CodeStatus, CodeType, EventType, Json
from gateway.rules.slots import CodeView, unmanaged_pins
from gateway.rules.unmanaged import Removal, unmanaged_id
from gateway.store import slot_writes
from gateway.store.codes import codes_of_device
from gateway.store.db import Tx
from gateway.store.observed import load_table

log = get_logger("gateway.unmanaged")


@dataclass(frozen=True, slots=True)
class Unmanaged:
    """A PIN in a slot that the gateway neither manages there nor wrote there."""

    access_code_id: str
    device_id: str
    slot: int
    pin: str
    removal_requested_at: datetime | None = None  # ``unmanaged/delete`` asked, not done yet

    def to_json(self) -> Json:
        """The public access_code object of an unmanaged code (``unmanaged/list`` and ``get``)."""
        deleting = self.removal_requested_at is not None
        return {
            "access_code_id": self.access_code_id,
            "device_id": self.device_id,
            "name": None,
            "code": self.pin,
            "type": CodeType.ONGOING.value,
            "starts_at": None,
            "ends_at": None,
            "status": (CodeStatus.REMOVING if deleting else CodeStatus.SET).value,
            "created_at": None,  # not known: the gateway did not create it
            "errors": [],
            "warnings": [],
            "is_managed": False,
            "is_backup": False,
            "is_backup_access_code_available": False,
            "pulled_backup_access_code_id": None,
            "is_external_modification_allowed": False,
            "slot": self.slot,
            "is_one_time_use": False,
            "common_code_key": None,
            "pending_mutations": (
                [{"mutation_code": "deleting", "created_at": isoformat(self.removal_requested_at)}]
                if self.removal_requested_at is not None
                else []
            ),
        }


def _pins(tx: Tx, device_id: str, observed: Mapping[int, SlotValue]) -> dict[int, str]:
    """Slot -> PIN of the device's unmanaged codes in ``observed``."""
    views = [
        CodeView(c.access_code_id, c.code, c.slot, c.status, wanted=True)
        for c in codes_of_device(tx, device_id)
        if c.slot is not None
    ]
    table = SlotTable(capacity=max(observed, default=0), slots=observed)
    return unmanaged_pins(views, table, slot_writes.of_device(tx, device_id))


def of_device(tx: Tx, device_id: str) -> list[Unmanaged]:
    """The device's unmanaged codes as last observed, by slot."""
    requested = {
        (r["slot"], r["code"]): from_stored(r["requested_at"])
        for r in tx.fetchall(
            "SELECT slot, code, requested_at FROM unmanaged_removals WHERE device_id = ?",
            (device_id,),
        )
    }
    return [
        Unmanaged(
            unmanaged_id(device_id, slot, pin), device_id, slot, pin, requested.get((slot, pin))
        )
        for slot, pin in sorted(_pins(tx, device_id, load_table(tx, device_id)).items())
    ]


def resolve(tx: Tx, access_code_id: str) -> Unmanaged | None:
    """The unmanaged code with that id, if its PIN is still in its slot and still unmanaged."""
    # Its announcement names its device (ids are per device); else every lock is looked at.
    seen_on = last_seen_on(tx, access_code_id)
    query = "SELECT device_id, slot, code FROM observed_slots WHERE state = 'code'"
    if seen_on is None:
        rows = tx.fetchall(query)
    else:
        rows = tx.fetchall(f"{query} AND device_id = ?", (seen_on,))
    for row in rows:
        if unmanaged_id(row["device_id"], row["slot"], row["code"]) == access_code_id:
            return next(
                (u for u in of_device(tx, row["device_id"]) if u.access_code_id == access_code_id),
                None,
            )
    return None


def last_seen_on(tx: Tx, access_code_id: str) -> str | None:
    """The device an unmanaged code was announced on (its ``unmanaged.created`` event): an id
    that no longer resolves names its device nowhere else."""
    row = tx.fetchone(
        "SELECT device_id FROM events WHERE access_code_id = ? AND event_type = ?"
        " ORDER BY seq DESC LIMIT 1",
        (access_code_id, EventType.UNMANAGED_CREATED.value),
    )
    return None if row is None else str(row["device_id"])


def request_removal(tx: Tx, code: Unmanaged) -> None:
    """Remember the request (it survives a restart) and wake the lock's worker; asking again
    while it is pending changes nothing. A request for a PIN its slot no longer holds (not yet
    judged by a pass) is done: this one takes its place."""
    stale = [r for r in removals_of(tx, code.device_id) if r.slot == code.slot]
    removed(tx, code.device_id, [r for r in stale if r.pin != code.pin])
    tx.execute(
        "INSERT OR IGNORE INTO unmanaged_removals"
        " (device_id, slot, code, access_code_id, requested_at) VALUES (?, ?, ?, ?, ?)",
        (code.device_id, code.slot, code.pin, code.access_code_id, isoformat(tx.now)),
    )
    tx.reconcile(code.device_id)


def removals_of(tx: Tx, device_id: str) -> list[Removal]:
    return [
        Removal(
            r["access_code_id"],
            r["slot"],
            r["code"],
            r["attempts"],
            None if r["retry_at"] is None else from_stored(r["retry_at"]),
        )
        for r in tx.fetchall(
            "SELECT slot, code, access_code_id, attempts, retry_at FROM unmanaged_removals"
            " WHERE device_id = ? ORDER BY requested_at, slot",
            (device_id,),
        )
    ]


def count_attempt(tx: Tx, device_id: str, removal: Removal, retry_at: datetime | None) -> None:
    """Before its clear is sent: counted as failed until the lock is seen without the PIN."""
    tx.execute(
        "UPDATE unmanaged_removals SET attempts = attempts + 1, retry_at = ?"
        " WHERE device_id = ? AND slot = ?",
        (None if retry_at is None else isoformat(retry_at), device_id, removal.slot),
    )


def removed(tx: Tx, device_id: str, done: Iterable[Removal]) -> None:
    """The lock no longer holds these PINs in their slots: the requests are done."""
    for removal in done:
        tx.execute(
            "DELETE FROM unmanaged_removals WHERE device_id = ? AND slot = ? AND code = ?",
            (device_id, removal.slot, removal.pin),
        )
        log.info("unmanaged.removed", slot=removal.slot, access_code_id=removal.code_id)
        tx.emit(EventType.UNMANAGED_REMOVED, device_id, removal.code_id)


def note_appeared(
    tx: Tx, device_id: str, changed: Mapping[int, tuple[SlotValue, SlotValue]]
) -> None:
    """``access_code.unmanaged.created`` for each PIN that has just appeared in a slot (the
    observed table's changes, ``slot -> (before, now)``, already stored) and that the gateway
    did not put there. Once per appearance: a slot that was only unreadable in between (its
    PIN unseen, not seen gone) is not announced twice."""
    ours = {(w.slot, w.pin) for w in slot_writes.of_device(tx, device_id)}
    appeared = {
        slot: now
        for slot, (_, now) in changed.items()
        if isinstance(now, str) and (slot, now) not in ours
    }
    if not appeared:
        return  # the usual case: the lock reports a PIN the gateway has just written
    found = _pins(tx, device_id, load_table(tx, device_id))
    for slot, pin in sorted(appeared.items()):
        if found.get(slot) != pin:
            continue  # the gateway's own PIN
        code_id = unmanaged_id(device_id, slot, pin)
        if isinstance(changed[slot][0], Unreadable) and _announced(tx, code_id):
            continue
        log.info("unmanaged.found", slot=slot, access_code_id=code_id)
        tx.emit(EventType.UNMANAGED_CREATED, device_id, code_id)


def _announced(tx: Tx, code_id: str) -> bool:
    """Its last event says it appeared (and nothing since: not removed, not converted)."""
    row = tx.fetchone(
        "SELECT event_type FROM events WHERE access_code_id = ? ORDER BY seq DESC LIMIT 1",
        (code_id,),
    )
    return row is not None and row["event_type"] == EventType.UNMANAGED_CREATED.value
