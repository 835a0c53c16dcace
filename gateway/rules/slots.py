"""Desired codes + observed slot table -> what is true now and what to send next.

The planner is the whole of the reconciler's judgement, kept pure so every case can be tested
without a lock. It never touches a slot that holds a code the gateway did not create, never
assumes an unread slot is empty, and puts ordinary codes before backup codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drivers.base import SlotTable, Unreadable
from gateway.model import CodeStatus


@dataclass(frozen=True, slots=True)
class CodeView:
    """What the planner needs to know about one managed code."""

    code_id: str
    pin: str
    slot: int | None
    status: CodeStatus
    wanted: bool  # belongs on the lock now
    pooled_backup: bool = False  # an unpulled backup: may give its slot to an ordinary code
    is_backup: bool = False
    allow_external: bool = False
    order: int = 0  # placement priority among codes waiting for a slot (lower first)


@dataclass(frozen=True, slots=True)
class Write:
    code_id: str
    slot: int
    pin: str
    evicts: str | None = None  # a pooled backup code that gives up this slot


@dataclass(frozen=True, slots=True)
class Clear:
    code_id: str
    slot: int


Action = Write | Clear


@dataclass(slots=True)
class Plan:
    verified: set[str] = field(default_factory=set)  # on its slot, as wanted
    gone: set[str] = field(default_factory=set)  # unwanted and no longer on its slot
    external: set[str] = field(default_factory=set)  # its slot was changed outside the gateway
    duplicates: set[str] = field(default_factory=set)  # its PIN sits in a slot not ours
    no_space: set[str] = field(default_factory=set)  # wanted, no slot to be had
    unreadable: set[int] = field(default_factory=set)  # slots that must be read first
    actions: list[Action] = field(default_factory=list)  # clears first, then writes

    @property
    def needs_read(self) -> bool:
        return bool(self.unreadable)


def plan(codes: Sequence[CodeView], table: SlotTable) -> Plan:
    result = Plan()
    assigned = {c.slot: c for c in codes if c.slot is not None}
    foreign = _foreign_pins(assigned, table)
    clears: list[Action] = []
    writes: list[Action] = []

    for code in codes:
        if code.slot is None:
            continue
        value = table.value(code.slot)
        if value is Unreadable.UNKNOWN:
            result.unreadable.add(code.slot)
            continue
        holds_it = value == code.pin or (
            value is Unreadable.OCCUPIED and code.status is not CodeStatus.UNSET
        )
        if code.wanted and code.pin in foreign.values():
            # Writing it would put one PIN in two slots (most locks refuse it anyway).
            result.duplicates.add(code.code_id)
            if not holds_it:
                continue
        if code.wanted and holds_it:
            result.verified.add(code.code_id)
        elif code.wanted:
            if code.status is CodeStatus.SET:
                result.external.add(code.code_id)
                if code.allow_external:
                    continue
            writes.append(Write(code.code_id, code.slot, code.pin))
        elif holds_it:
            clears.append(Clear(code.code_id, code.slot))
        else:
            result.gone.add(code.code_id)

    free = [
        slot
        for slot in range(1, table.capacity + 1)
        if table.value(slot) is None and slot not in assigned
    ]
    evictable = sorted(
        (
            c
            for c in codes
            if c.pooled_backup and c.slot is not None and c.slot not in result.unreadable
        ),
        key=lambda c: (c.status is CodeStatus.SET, -c.order),  # unset ones first, newest first
    )
    waiting = sorted(
        (c for c in codes if c.wanted and c.slot is None),
        key=lambda c: (c.is_backup, c.order),
    )
    for code in waiting:
        if code.pin in foreign.values():
            result.duplicates.add(code.code_id)
            continue
        if free:
            writes.append(Write(code.code_id, free.pop(0), code.pin))
        elif not code.is_backup and evictable:
            victim = evictable.pop(0)
            assert victim.slot is not None
            # The victim's own pending write or clear is void now: its slot is taken over.
            writes = [w for w in writes if w.code_id != victim.code_id]
            clears = [c for c in clears if c.code_id != victim.code_id]
            writes.append(Write(code.code_id, victim.slot, code.pin, evicts=victim.code_id))
        else:
            result.no_space.add(code.code_id)

    result.actions = clears + sorted(writes, key=_write_priority(codes))
    return result


def _foreign_pins(assigned: dict[int, CodeView], table: SlotTable) -> dict[int, str]:
    """PINs on the lock in slots that no managed code occupies: someone else's codes."""
    return {
        slot: value
        for slot, value in table.slots.items()
        if isinstance(value, str) and slot not in assigned
    }


def _write_priority(codes: Sequence[CodeView]) -> Callable[[Action], tuple[bool, int]]:
    backup = {c.code_id: (c.is_backup, c.order) for c in codes}

    def key(action: Action) -> tuple[bool, int]:
        return backup.get(action.code_id, (False, 0))

    return key


def unmanaged_pins(codes: Sequence[CodeView], table: SlotTable) -> dict[int, str]:
    """Slots holding a PIN that no managed code accounts for (``access_codes/unmanaged/list``)."""
    return _foreign_pins({c.slot: c for c in codes if c.slot is not None}, table)
