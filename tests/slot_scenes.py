"""Shared by the ``test_rules_slots_*`` files and :mod:`tests.test_rules_verdict`: codes and
locks for the slot planner (gateway.rules.slots), :func:`check_invariants` (what every plan must
satisfy), and the hypothesis strategies that draw random scenes (codes + slot table) from them.

Everything here is pure: no lock, no store, no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from hypothesis import strategies as st

from drivers.base import SlotTable, SlotValue, Unreadable
from gateway.model import CodeStatus
from gateway.rules.slots import Action, Clear, CodeView, Plan, Write, plan

UNSET, SETTING, SET, REMOVING = (
    CodeStatus.UNSET,
    CodeStatus.SETTING,
    CodeStatus.SET,
    CodeStatus.REMOVING,
)
UNKNOWN, OCCUPIED = Unreadable.UNKNOWN, Unreadable.OCCUPIED

PIN = "4821"  # the code under test
OTHER = "7390"  # somebody else's PIN


# -- helpers -------------------------------------------------------------------------------------


def code(
    code_id: str,
    pin: str,
    slot: int | None = None,
    status: CodeStatus = UNSET,
    *,
    wanted: bool = True,
    backup: bool = False,
    pooled: bool = False,
    allow_external: bool = False,
    order: int = 0,
) -> CodeView:
    """A managed code; ``pooled`` implies ``backup`` (an unpulled backup is a backup)."""
    return CodeView(
        code_id=code_id,
        pin=pin,
        slot=slot,
        status=status,
        wanted=wanted,
        pooled_backup=pooled,
        is_backup=backup or pooled,
        allow_external=allow_external,
        order=order,
    )


def lock(capacity: int, slots: Mapping[int, SlotValue] | None = None) -> SlotTable:
    """A lock that has been read in full: every slot empty unless ``slots`` says otherwise."""
    values: dict[int, SlotValue] = dict.fromkeys(range(1, capacity + 1))
    values.update(slots or {})
    return SlotTable(capacity=capacity, slots=values)


def writes(result: Plan) -> list[Write]:
    return [a for a in result.actions if isinstance(a, Write)]


def clears(result: Plan) -> list[Clear]:
    return [a for a in result.actions if isinstance(a, Clear)]


def actions_of(result: Plan, code_id: str) -> list[Action]:
    return [a for a in result.actions if a.code_id == code_id]


def foreign_slots(codes: Sequence[CodeView], table: SlotTable) -> dict[int, str]:
    """Slots holding a PIN that no managed code is assigned to: someone else's codes."""
    assigned = {c.slot for c in codes if c.slot is not None}
    return {
        slot: value
        for slot, value in table.slots.items()
        if isinstance(value, str) and slot not in assigned
    }


def free_slots(codes: Sequence[CodeView], table: SlotTable) -> list[int]:
    """Slots read as empty, inside the lock's range, that no managed code is assigned to."""
    assigned = {c.slot for c in codes if c.slot is not None}
    return [
        slot
        for slot in range(1, table.capacity + 1)
        if table.value(slot) is None and slot not in assigned
    ]


def holds(c: CodeView, table: SlotTable) -> bool:
    """The code's slot holds it, as far as the lock lets anyone see."""
    if c.slot is None:
        return False
    value = table.value(c.slot)
    return value == c.pin or (value is OCCUPIED and c.status is not UNSET)


def check_invariants(  # noqa: C901 (the planner's rules as one checklist, read top to bottom)
    codes: Sequence[CodeView], table: SlotTable, result: Plan
) -> None:
    """What every plan must satisfy, whatever the input (the known-bug rules are separate)."""
    by_id = {c.code_id: c for c in codes}
    assigned = {c.slot: c for c in codes if c.slot is not None}
    foreign = foreign_slots(codes, table)
    free = free_slots(codes, table)

    # Every action names a known code, and no code gets two actions (so never two slots).
    ids = [a.code_id for a in result.actions]
    assert set(ids) <= by_id.keys()
    assert len(ids) == len(set(ids)), result.actions

    for w in writes(result):
        c = by_id[w.code_id]
        assert c.wanted, f"{w} programs a code that does not belong on the lock"
        assert w.pin == c.pin
        assert 1 <= w.slot <= table.capacity
        assert w.slot not in foreign, f"{w} overwrites someone else's PIN"
        assert table.value(w.slot) is not UNKNOWN, f"{w} writes into an unread slot"
        if w.evicts is not None:
            victim = by_id[w.evicts]
            assert victim.pooled_backup, f"{w} evicts a code that is not an unpulled backup"
            assert victim.code_id != c.code_id
            assert victim.slot == w.slot
            assert c.slot is None, f"{w}: only a waiting code evicts"
            assert not c.is_backup, f"{w}: a backup code never evicts"
        elif c.slot is not None:
            assert w.slot == c.slot, f"{w}: a placed code is only ever restored in its own slot"
        else:
            assert w.slot in free, f"{w}: a waiting code goes to a free slot"
            assert w.slot not in assigned

    for cl in clears(result):
        c = by_id[cl.code_id]
        assert not c.wanted, f"{cl} clears a code that belongs on the lock"
        assert cl.slot == c.slot, f"{cl}: a code is only cleared from its own slot"
        assert holds(c, table), f"{cl} clears a slot that does not hold this code"

    # A victim gives its slot exactly once.
    victims = [w.evicts for w in writes(result) if w.evicts is not None]
    assert len(victims) == len(set(victims))

    # Clears first, then writes; among writes ordinary before backup, then by order.
    is_clear = [isinstance(a, Clear) for a in result.actions]
    assert is_clear == sorted(is_clear, reverse=True), result.actions
    keys = [(by_id[w.code_id].is_backup, by_id[w.code_id].order) for w in writes(result)]
    assert keys == sorted(keys), result.actions

    # Truths.
    assert result.unreadable == {
        c.slot for c in codes if c.slot is not None and table.value(c.slot) is UNKNOWN
    }
    assert result.needs_read == bool(result.unreadable)
    for cid in result.verified:
        c = by_id[cid]
        assert c.wanted
        assert holds(c, table), f"{cid} verified but its slot does not hold it"
    for cid in result.gone:
        c = by_id[cid]
        assert not c.wanted
        assert c.slot is not None
        assert table.value(c.slot) is not UNKNOWN, f"{cid}: an unread slot is not proof of gone"
        assert not holds(c, table)
    for cid in result.external:
        c = by_id[cid]
        assert c.wanted
        assert c.status is SET
        assert c.slot is not None
        assert table.value(c.slot) is not UNKNOWN
        assert not holds(c, table)
    for cid in result.duplicates:
        assert by_id[cid].wanted
        assert by_id[cid].pin in foreign.values()
    for cid in result.no_space:
        c = by_id[cid]
        assert c.wanted
        assert c.slot is None
        assert cid not in result.duplicates
        assert not actions_of(result, cid)
    for cid in result.waiting_for_read:
        c = by_id[cid]
        assert c.wanted
        assert c.slot is None
        assert not actions_of(result, cid)
        assert any(
            table.value(n) is UNKNOWN and n not in assigned for n in range(1, table.capacity + 1)
        ), f"{cid} waits for a read, but no slot is unread"
    sets = [result.verified, result.gone, result.external, result.no_space, result.waiting_for_read]
    for a, b in itertools.combinations(sets, 2):
        assert not a & b
    acting = set(ids)
    assert not acting & (result.verified | result.gone | result.no_space)

    # Every placed code with a readable slot is judged; every waiting wanted code is either
    # placed, a duplicate or short of space, exactly one of them.
    for c in codes:
        if c.slot is not None and table.value(c.slot) is not UNKNOWN:
            truths = result.verified | result.gone | result.external | result.duplicates
            acted_on = bool(actions_of(result, c.code_id)) or c.code_id in victims
            assert c.code_id in truths or acted_on, f"{c}: not judged, nothing done"
            if c.wanted:
                assert (c.code_id in result.duplicates) == (c.pin in foreign.values())
        if c.slot is None and c.wanted:
            outcomes = [
                bool(actions_of(result, c.code_id)),
                c.code_id in result.duplicates,
                c.code_id in result.no_space,
                c.code_id in result.waiting_for_read,
            ]
            assert outcomes.count(True) == 1, (c, result)
            assert (c.code_id in result.duplicates) == (c.pin in foreign.values())
        if c.slot is None and not c.wanted:
            assert not actions_of(result, c.code_id)
            assert c.code_id not in (result.verified | result.gone | result.no_space)

    # Fresh placements take the lowest free slots, in priority order; nobody evicts or goes
    # without while a free slot is left; an ordinary code goes without only when no unpulled
    # backup with a readable slot is left to give one up.
    fresh = [w.slot for w in writes(result) if w.evicts is None and by_id[w.code_id].slot is None]
    assert fresh == free[: len(fresh)]
    if victims or result.no_space or result.waiting_for_read:
        assert len(fresh) == len(free), "a free slot was left while a code went without"
    evictable = {
        c.code_id
        for c in codes
        if c.pooled_backup and c.slot is not None and table.value(c.slot) is not UNKNOWN
    }
    if any(not by_id[cid].is_backup for cid in result.no_space):
        assert set(victims) == evictable, "an ordinary code went without while a backup sat"


def planned(codes: Sequence[CodeView], table: SlotTable) -> Plan:
    result = plan(codes, table)
    check_invariants(codes, table, result)
    return result


# -- scenes: random tables and code sets ---------------------------------------------------------

MANAGED_PINS = [f"{n}{n}{(n + 1) % 10}{(n + 2) % 10}" for n in range(10)]  # 0012, 1123, ...
FOREIGN_PINS = ["9001", "9002", "9003"]


@dataclass(frozen=True)
class Scene:
    codes: tuple[CodeView, ...]
    table: SlotTable


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    capacity = draw(st.integers(1, 5))
    n = draw(st.integers(0, 7))
    pins = draw(st.lists(st.sampled_from(MANAGED_PINS), min_size=n, max_size=n, unique=True))
    orders = draw(st.permutations(range(n)))
    taken: set[int] = set()
    codes = []
    for i, pin in enumerate(pins):
        free = [s for s in range(1, capacity + 1) if s not in taken]
        slot = draw(st.none() | st.sampled_from(free)) if free else None
        if slot is not None:
            taken.add(slot)
        pooled = draw(st.booleans())
        codes.append(
            code(
                f"c{i}",
                pin,
                slot,
                draw(st.sampled_from(list(CodeStatus))),
                wanted=draw(st.booleans()),
                backup=pooled or draw(st.booleans()),
                pooled=pooled,
                allow_external=draw(st.booleans()),
                order=orders[i],
            )
        )
    own = {c.slot: c.pin for c in codes if c.slot is not None}
    values: dict[int, SlotValue] = {}
    for slot in range(1, capacity + 2):  # one past the end, sometimes present, never a slot
        kind = draw(
            st.sampled_from(["own"] * 4 + ["empty"] * 2 + ["missing", "masked", "pin", "foreign"])
        )
        if kind == "own" and slot in own:
            values[slot] = own[slot]
        elif kind in ("own", "empty"):
            values[slot] = None
        elif kind == "masked":
            values[slot] = OCCUPIED
        elif kind == "pin":
            values[slot] = draw(st.sampled_from(MANAGED_PINS))
        elif kind == "foreign":
            values[slot] = draw(st.sampled_from(FOREIGN_PINS))
        elif draw(st.booleans()):
            values[slot] = UNKNOWN  # else: left out of the report, which means the same
    return Scene(tuple(draw(st.permutations(codes))), SlotTable(capacity, slots=values))


@st.composite
def crowded_scenes(draw: st.DrawFn) -> Scene:
    """A lock with (nearly) no free slot, unpulled backups on it, and codes waiting: eviction."""
    capacity = draw(st.integers(1, 5))
    pins = iter(MANAGED_PINS)
    placed: list[CodeView] = []
    values: dict[int, SlotValue] = {}
    for slot in range(1, capacity + 1):
        kind = draw(st.sampled_from(["foreign", "ordinary", "backup", "backup", "backup"]))
        if kind == "foreign":
            values[slot] = draw(st.sampled_from(FOREIGN_PINS))
            continue
        pin = next(pins)
        status = draw(st.sampled_from([SETTING, SET, SET]))
        placed.append(code(f"p{slot}", pin, slot, status, pooled=kind == "backup"))
        values[slot] = draw(st.sampled_from([pin, pin, pin, None, OCCUPIED, UNKNOWN]))
    waiting = [
        code(f"w{i}", next(pins), backup=draw(st.booleans()))
        for i in range(draw(st.integers(1, 4)))
    ]
    everyone = placed + waiting
    orders = draw(st.permutations(range(len(everyone))))
    codes = [replace(c, order=o) for c, o in zip(everyone, orders, strict=True)]
    return Scene(tuple(draw(st.permutations(codes))), SlotTable(capacity, slots=values))


any_scene = scenes() | crowded_scenes()
