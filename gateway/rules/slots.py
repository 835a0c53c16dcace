"""Desired codes + observed slot table -> what is true now and what to send next.

The planner is the whole of the reconciler's judgement, kept pure so every case can be tested
without a lock. It never touches a slot that holds a code the gateway did not create, never
assumes an unread slot is empty, and puts ordinary codes before backup codes.

No PIN outlives its code: besides each code's current PIN, the planner is told every PIN the
gateway has written (or begun to write) to a slot and not yet seen leave it (:class:`Written`).
Those PINs are the gateway's own wherever they sit — an old PIN after an update, a write that
timed out and landed late, a backup's PIN in the slot an ordinary code took over — so they are
cleared, never listed as somebody else's, and a code is not gone while any of them may still be
on the lock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.domain import CodeStatus, SlotTable, SlotValue, Unreadable


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
class Written:
    """A PIN the gateway wrote (or began to write) to a slot, until the lock is seen without it."""

    code_id: str
    slot: int
    pin: str
    settled: bool = True  # no command carrying it can still land (answered, or long timed out)


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
    # Wanted, no free slot known, but slots not read yet may be free: unread is not full.
    waiting_for_read: set[str] = field(default_factory=set)
    unreadable: set[int] = field(default_factory=set)  # slots that must be read first
    lingering: set[str] = field(default_factory=set)  # may still have a PIN on the lock
    left: list[Written] = field(default_factory=list)  # seen gone for good: may be forgotten
    actions: list[Action] = field(default_factory=list)  # clears first, then writes

    @property
    def needs_read(self) -> bool:
        return bool(self.unreadable)


def plan(codes: Sequence[CodeView], table: SlotTable, written: Sequence[Written] = ()) -> Plan:
    """The plan for one lock: first what each PIN the gateway wrote and each placed code is
    now, then where the codes still waiting for a slot may go."""
    result = Plan()
    assigned = {c.slot: c for c in codes if c.slot is not None}
    ours = _written_pins(written)
    foreign = set(_foreign_pins(assigned, table, ours).values())
    residue, present = _residue(table, written, assigned, result)
    clears, writes = _judge_placed(codes, table, ours, foreign, result)
    clears += residue
    clears, writes = _place_waiting(
        codes, table, assigned, _Waiting(foreign, present, clears, writes), result
    )
    result.actions = clears + sorted(writes, key=_write_priority(codes))
    return result


def _judge_placed(
    codes: Sequence[CodeView],
    table: SlotTable,
    ours: Mapping[int, set[str]],
    foreign: Collection[str],
    result: Plan,
) -> tuple[list[Action], list[Action]]:
    """Every code that has a slot: verified, to write, to clear, or gone; (clears, writes)."""
    clears: list[Action] = []
    writes: list[Action] = []
    for code in codes:
        if code.slot is None:
            continue
        value = table.value(code.slot)
        if value is Unreadable.UNKNOWN:
            result.unreadable.add(code.slot)
            continue
        action = _placed(code, code.slot, value, ours=ours, foreign=foreign, result=result)
        if isinstance(action, Write):
            writes.append(action)
        elif action is not None:
            clears.append(action)
    return clears, writes


def _placed(
    code: CodeView,
    slot: int,
    value: SlotValue,
    *,
    ours: Mapping[int, set[str]],
    foreign: Collection[str],
    result: Plan,
) -> Action | None:
    """One code in its slot, whose content is known (``lingering`` is filled already)."""
    holds_it = value == code.pin or (
        value is Unreadable.OCCUPIED and code.status is not CodeStatus.UNSET
    )
    holds_ours = holds_it or _is_ours(ours, slot, value)
    if code.wanted and code.pin in foreign:
        # Writing it would put one PIN in two slots (most locks refuse it anyway).
        result.duplicates.add(code.code_id)
        if not holds_it:
            return None
    if code.wanted and holds_it:
        result.verified.add(code.code_id)
    elif code.wanted:
        if code.status is CodeStatus.SET and not holds_ours:
            result.external.add(code.code_id)
            if code.allow_external:
                return None
        return Write(code.code_id, slot, code.pin)
    elif holds_ours:
        return Clear(code.code_id, slot)
    elif code.code_id not in result.lingering:
        result.gone.add(code.code_id)
    return None


@dataclass(slots=True)
class _Waiting:
    """What placing the waiting codes starts from, and the actions it may still change."""

    foreign: Collection[str]  # PINs in slots not ours: a code with one of them is a duplicate
    present: Collection[str]  # PINs the gateway wrote that are (maybe) on the lock
    clears: list[Action]
    writes: list[Action]


def _place_waiting(
    codes: Sequence[CodeView],
    table: SlotTable,
    assigned: Mapping[int, CodeView],
    state: _Waiting,
    result: Plan,
) -> tuple[list[Action], list[Action]]:
    """Codes wanted and without a slot, ordinary ones first: a free slot, else an unpulled
    backup's (ordinary codes only), else wait for a read or have no space; (clears, writes)."""
    waiting = sorted(
        (c for c in codes if c.wanted and c.slot is None),
        key=lambda c: (c.is_backup, c.order),
    )
    if not waiting:  # most passes: the slots need not be scanned
        return state.clears, state.writes
    free = [
        slot
        for slot in range(1, table.capacity + 1)
        if table.value(slot) is None and slot not in assigned
    ]
    unread = any(
        table.value(slot) is Unreadable.UNKNOWN and slot not in assigned
        for slot in range(1, table.capacity + 1)
    )
    evictable = sorted(
        (
            c
            for c in codes
            if c.pooled_backup and c.slot is not None and c.slot not in result.unreadable
        ),
        key=lambda c: (c.status is CodeStatus.SET, -c.order),  # unset ones first, newest first
    )
    for code in waiting:
        if code.pin in state.foreign:
            result.duplicates.add(code.code_id)
        elif code.pin in state.present:
            pass  # still in the slot it was written to: cleared first, never twice on a lock
        elif free:
            state.writes.append(Write(code.code_id, free.pop(0), code.pin))
        elif not code.is_backup and evictable:
            _evict(code, evictable.pop(0), state)
        elif unread:
            result.waiting_for_read.add(code.code_id)
        else:
            result.no_space.add(code.code_id)
    return state.clears, state.writes


def _evict(code: CodeView, victim: CodeView, state: _Waiting) -> None:
    """``code`` takes the slot of the pooled backup ``victim``, in one overwrite."""
    assert victim.slot is not None
    # The victim's own pending write or clear is void now: its slot is taken over.
    state.writes = [w for w in state.writes if w.code_id != victim.code_id]
    state.clears = [c for c in state.clears if c.slot != victim.slot]
    state.writes.append(Write(code.code_id, victim.slot, code.pin, evicts=victim.code_id))


def _foreign_pins(
    assigned: Mapping[int, CodeView], table: SlotTable, ours: Mapping[int, set[str]]
) -> dict[int, str]:
    """PINs on the lock in slots no managed code occupies and the gateway never wrote there."""
    return {
        slot: value
        for slot, value in table.slots.items()
        if isinstance(value, str) and slot not in assigned and not _is_ours(ours, slot, value)
    }


def _written_pins(written: Sequence[Written]) -> dict[int, set[str]]:
    ours: dict[int, set[str]] = {}
    for w in written:
        ours.setdefault(w.slot, set()).add(w.pin)
    return ours


def _is_ours(ours: Mapping[int, set[str]], slot: int, value: SlotValue) -> bool:
    """The slot holds a PIN the gateway wrote there (masked: it may)."""
    if value is Unreadable.OCCUPIED:
        return slot in ours
    return isinstance(value, str) and value in ours.get(slot, ())


def _residue(
    table: SlotTable, written: Sequence[Written], assigned: Mapping[int, CodeView], result: Plan
) -> tuple[list[Action], set[str]]:
    """Judge every written PIN: still (maybe) there, gone for good, or left in a slot that no
    code holds any more, which is cleared. Fills ``lingering``, ``left`` and ``unreadable``;
    returns the clears and the PINs that are (maybe) on the lock."""
    clears: list[Action] = []
    cleared: set[int] = set()
    present: set[str] = set()
    for w in written:
        value = table.value(w.slot)
        if value is Unreadable.UNKNOWN:
            result.unreadable.add(w.slot)
            result.lingering.add(w.code_id)
            continue
        holder = assigned.get(w.slot)
        superseded = (  # the slot's own code is verified there with another PIN
            holder is not None
            and holder.pin != w.pin
            and value is Unreadable.OCCUPIED
            and holder.status is CodeStatus.SET
        )
        there = value == w.pin or (value is Unreadable.OCCUPIED and not superseded)
        if there:
            present.add(w.pin)
        if there or not w.settled:
            result.lingering.add(w.code_id)
        else:
            result.left.append(w)
        if there and holder is None and w.slot not in cleared:
            cleared.add(w.slot)
            clears.append(Clear(w.code_id, w.slot))
    return clears, present


def _write_priority(codes: Sequence[CodeView]) -> Callable[[Action], tuple[bool, int]]:
    backup = {c.code_id: (c.is_backup, c.order) for c in codes}

    def key(action: Action) -> tuple[bool, int]:
        return backup.get(action.code_id, (False, 0))

    return key


def unmanaged_pins(
    codes: Sequence[CodeView], table: SlotTable, written: Sequence[Written] = ()
) -> dict[int, str]:
    """Slots holding a PIN the gateway neither manages there nor wrote there
    (``access_codes/unmanaged/list``)."""
    assigned = {c.slot: c for c in codes if c.slot is not None}
    ours = _written_pins(written)
    return {
        slot: pin
        for slot, pin in _foreign_pins({}, table, ours).items()
        if slot not in assigned or assigned[slot].pin != pin
    }


def free_slots(table: SlotTable, held: Collection[int]) -> int:
    """Slots a new code could take: empty on the lock and given to no code."""
    return sum(
        1 for slot in range(1, table.capacity + 1) if table.value(slot) is None and slot not in held
    )
