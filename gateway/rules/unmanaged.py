"""Unmanaged codes: PINs found on a lock that the gateway did not put there (contract section 11).

They have no row of their own: an unmanaged code *is* a PIN in a slot, so its id is derived from
device, slot and PIN. It stays the same while the PIN stays in its slot (also across restarts,
the observed table being stored) and names nothing once the slot changes, which is what lets
``delete`` and ``convert_to_managed`` refuse to touch a slot that changed meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.domain import SlotTable, Unreadable
from gateway.rules.schedule import retry_delay


def unmanaged_id(device_id: str, slot: int, pin: str) -> str:
    """The stable id of the unmanaged code ``pin`` in ``slot`` of ``device_id``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{device_id}/{slot}/{pin}"))


@dataclass(frozen=True, slots=True)
class Removal:
    """An unmanaged code the gateway was asked to clear (``access_codes/unmanaged/delete``)."""

    code_id: str
    slot: int
    pin: str
    attempts: int = 0  # clears sent for it so far
    retry_at: datetime | None = None  # not before: the lock refused it (or did not answer)


@dataclass(slots=True)
class RemovalPlan:
    due: list[Removal] = field(default_factory=list)  # the slot still holds the PIN: clear it
    gone: list[Removal] = field(default_factory=list)  # the slot no longer holds it: done
    next_try: datetime | None = None  # the first one backing off may be tried again


def plan_removals(removals: Sequence[Removal], table: SlotTable, now: datetime) -> RemovalPlan:
    """Clear a slot only while it still holds the PIN that was asked to go: a slot that changed
    meanwhile (emptied, another PIN, masked, or no longer on a lock that shrank) is never
    cleared, and its request is done. A slot not read yet waits for a read."""
    result = RemovalPlan()
    for removal in removals:
        value = table.value(removal.slot)
        if value is Unreadable.UNKNOWN and removal.slot <= table.capacity:
            continue
        if value != removal.pin:
            result.gone.append(removal)
        elif removal.retry_at is not None and removal.retry_at > now:
            if result.next_try is None or removal.retry_at < result.next_try:
                result.next_try = removal.retry_at
        else:
            result.due.append(removal)
    return result


def retry_at(attempts: int, now: datetime, max_attempts: int) -> datetime | None:
    """When a clear about to be sent may be sent again if it fails: at once for the first
    ``max_attempts`` tries, then with the backoff of a code's commands (a lock that keeps
    refusing, say a master-code slot, is not hammered)."""
    if attempts + 1 < max_attempts:
        return None
    return now + retry_delay(attempts + 2 - max_attempts)
