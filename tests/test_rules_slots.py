"""The slot planner (gateway.rules.slots): desired codes + observed slot table -> truths + actions.

Everything here is pure: no lock, no store, no clock. The rules under test, from the contract
(sections 6, 7, 9) and from what lock-code managers get wrong:

* a slot holding a PIN the gateway did not put there is never written or cleared;
* a slot that has not been read (UNKNOWN) is never taken for empty, nor for ours;
* ordinary codes come before backup codes, and may take the slot of an unpulled backup;
* a code whose window is not open (``wanted=False``) is never programmed;
* a plan never puts two managed codes in one slot, nor one code in two slots.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from drivers.base import SlotTable, SlotValue, Unreadable
from gateway.model import CodeStatus
from gateway.rules.slots import (
    Action,
    Clear,
    CodeView,
    Plan,
    Write,
    Written,
    plan,
    unmanaged_pins,
)

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


def check_invariants(codes: Sequence[CodeView], table: SlotTable, result: Plan) -> None:
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


# -- one placed code: wanted/unwanted x slot value x status x allow_external -------------------

VALUES: dict[str, SlotValue] = {
    "same": PIN,
    "other": OTHER,
    "empty": None,
    "unknown": UNKNOWN,
    "occupied": OCCUPIED,
}


def expected_placed(
    wanted: bool, value: str, status: CodeStatus, allow: bool
) -> tuple[str | None, str | None]:
    """The rules written out plainly: (the truth the code lands in, the action it gets)."""
    if value == "unknown":
        return ("unreadable", None)  # never guess: read first
    on_lock = value == "same" or (value == "occupied" and status is not UNSET)
    if wanted:
        if on_lock:
            return ("verified", None)
        if status is SET:  # it was on the lock: changed outside the gateway
            return ("external", None if allow else "write")
        return (None, "write")  # programming it is still under way
    if on_lock:
        return (None, "clear")
    return ("gone", None)  # empty, or somebody else's PIN now: never cleared


PLACED_CASES = list(itertools.product([True, False], VALUES, list(CodeStatus), [False, True]))


@pytest.mark.parametrize(("wanted", "value", "status", "allow"), PLACED_CASES)
def test_one_placed_code(wanted: bool, value: str, status: CodeStatus, allow: bool) -> None:
    a = code("a", PIN, 2, status, wanted=wanted, allow_external=allow)
    table = lock(3, {2: VALUES[value]})
    result = planned([a], table)

    truth, action = expected_placed(wanted, value, status, allow)
    truths = {
        name
        for name in ("verified", "gone", "external", "duplicates", "no_space")
        if "a" in getattr(result, name)
    }
    if 2 in result.unreadable:
        truths.add("unreadable")
    assert truths == ({truth} if truth else set())
    if action == "write":
        assert result.actions == [Write("a", 2, PIN)]
    elif action == "clear":
        assert result.actions == [Clear("a", 2)]
    else:
        assert result.actions == []
    assert result.needs_read == (value == "unknown")


@pytest.mark.parametrize("status", list(CodeStatus))
@pytest.mark.parametrize("value", [None, PIN, OTHER, OCCUPIED])
def test_an_unwanted_waiting_code_is_left_alone(status: CodeStatus, value: SlotValue) -> None:
    """Not on the lock (no slot) and not wanted: nothing to do, nothing to say."""
    a = code("a", PIN, None, status, wanted=False)
    result = planned([a], lock(2, {1: value}))
    assert result.actions == []
    assert "a" not in result.verified | result.gone | result.no_space | result.duplicates


@pytest.mark.parametrize("status", list(CodeStatus))
@pytest.mark.parametrize("allow", [False, True])
def test_a_wanted_waiting_code_goes_to_the_first_free_slot(status: CodeStatus, allow: bool) -> None:
    a = code("a", PIN, None, status, allow_external=allow)
    result = planned([a], lock(3))
    assert result.actions == [Write("a", 1, PIN)]
    assert not result.verified | result.external | result.no_space


def test_an_unknown_slot_is_not_proof_of_anything() -> None:
    """An unread slot of a code being removed: not gone, not cleared, read it first."""
    removing = code("r", PIN, 1, REMOVING, wanted=False)
    on_lock = code("s", "5555", 2, SET)
    table = SlotTable(capacity=3, slots={3: None})  # slots 1 and 2 never read
    result = planned([removing, on_lock], table)
    assert result.unreadable == {1, 2}
    assert result.needs_read
    assert result.actions == []
    assert not result.gone
    assert not result.verified
    assert not result.external


def test_a_slot_holding_someone_elses_pin_is_never_cleared() -> None:
    """Our code ended, but its slot now holds a PIN somebody typed in at the keypad."""
    ended = code("a", PIN, 1, REMOVING, wanted=False)
    result = planned([ended], lock(2, {1: OTHER}))
    assert result.actions == []
    assert result.gone == {"a"}


def test_a_slot_changed_outside_keeps_the_change_when_allowed() -> None:
    a = code("a", PIN, 1, SET, allow_external=True)
    result = planned([a], lock(2, {1: OTHER}))
    assert result.external == {"a"}
    assert result.actions == []
    assert "a" not in result.verified


def test_a_slot_changed_outside_is_restored_when_not_allowed() -> None:
    a = code("a", PIN, 1, SET)
    result = planned([a], lock(2, {1: OTHER}))
    assert result.external == {"a"}
    assert result.actions == [Write("a", 1, PIN)]


def test_a_masked_slot_counts_as_ours_only_once_we_wrote_it() -> None:
    never_written = code("a", PIN, 1, UNSET)
    written = code("b", "5555", 2, SETTING)
    result = planned([never_written, written], lock(2, {1: OCCUPIED, 2: OCCUPIED}))
    assert result.verified == {"b"}
    assert result.actions == [Write("a", 1, PIN)]


def test_unmanaged_pins_lists_foreign_slots_only() -> None:
    codes = [code("a", PIN, 1, SET), code("b", "5555", 2, SETTING)]
    table = lock(6, {1: PIN, 2: None, 3: OTHER, 4: OCCUPIED, 5: UNKNOWN, 6: "1357"})
    assert unmanaged_pins(codes, table) == {3: OTHER, 6: "1357"}
    assert unmanaged_pins([], lock(2, {1: PIN})) == {1: PIN}
    assert unmanaged_pins(codes, lock(2, {1: PIN})) == {}


# -- free-slot choice ----------------------------------------------------------------------------


def test_the_lowest_free_slot_is_taken() -> None:
    result = planned([code("a", PIN)], lock(5))
    assert result.actions == [Write("a", 1, PIN)]


def test_free_slot_choice_skips_every_slot_that_is_not_free() -> None:
    codes = [
        code("a", PIN, order=0),  # waiting
        code("b", "1111", 4, SET, order=1),  # on the lock
        code("c", "2222", 5, SETTING, order=2),  # assigned, programming under way
        code("d", "3333", 6, REMOVING, wanted=False, order=3),  # assigned, already gone
    ]
    table = SlotTable(
        capacity=9,
        slots={
            1: OTHER,  # someone else's PIN
            2: UNKNOWN,  # never read
            3: OCCUPIED,  # masked: holds something
            4: "1111",
            5: None,
            6: None,
            # 7: missing from the report: unknown
            8: None,  # the first truly free slot
            9: None,
            10: None,  # beyond the capacity: not a slot
        },
    )
    result = planned(codes, table)
    assert Write("a", 8, PIN) in result.actions
    assert result.actions == [Write("a", 8, PIN), Write("c", 5, "2222")]
    assert result.gone == {"d"}
    assert result.verified == {"b"}


def test_a_lock_with_no_empty_slot_in_range_has_no_space() -> None:
    table = SlotTable(capacity=2, slots={1: OTHER, 2: "9999", 3: None})
    result = planned([code("a", PIN)], table)
    assert result.no_space == {"a"}
    assert result.actions == []


def test_codes_waiting_for_unread_slots_are_not_out_of_space() -> None:
    """Issue 8 (11): at first contact zwave-js has read only the slots it was asked about; the
    rest are unknown. Unread is not full: the pool's backups wait for the read, not fail."""
    table = SlotTable(capacity=30, slots={1: None, 2: OTHER, 3: "5678"})
    backups = [code(f"b{n}", f"100{n}", pooled=True, order=n) for n in range(3)]
    result = planned(backups, table)
    assert writes(result) == [Write("b0", 1, "1000")]
    assert result.waiting_for_read == {"b1", "b2"}
    assert not result.no_space
    # Once every slot is read and none is free, the same codes are out of space.
    full = lock(3, {1: "1000", 2: OTHER, 3: "5678"})
    result = planned([replace(backups[0], slot=1, status=SET), *backups[1:]], full)
    assert result.no_space == {"b1", "b2"}
    assert not result.waiting_for_read


def test_an_unread_lock_is_never_written() -> None:
    """Nothing read yet: every slot is unknown, and unknown is not empty."""
    result = planned([code("a", PIN), code("b", "5555", order=1)], SlotTable(capacity=4))
    assert writes(result) == []
    assert not result.verified


@pytest.mark.parametrize("value", [OCCUPIED, UNKNOWN, OTHER])
def test_a_single_unusable_slot_is_never_written(value: SlotValue) -> None:
    result = planned([code("a", PIN)], lock(1, {1: value}))
    assert result.actions == []


def test_several_waiting_codes_take_the_lowest_slots_by_priority() -> None:
    codes = [
        code("late", "3333", order=2),
        code("first", "1111", order=0),
        code("second", "2222", order=1),
    ]
    result = planned(codes, lock(5, {1: OTHER, 3: OCCUPIED}))
    assert result.actions == [
        Write("first", 2, "1111"),
        Write("second", 4, "2222"),
        Write("late", 5, "3333"),
    ]


def test_ordinary_codes_take_free_slots_before_backups() -> None:
    codes = [
        code("backup", "1111", pooled=True, order=0),
        code("ordinary", "2222", order=1),
    ]
    result = planned(codes, lock(1))
    assert result.actions == [Write("ordinary", 1, "2222")]
    assert result.no_space == {"backup"}


def test_backups_fill_what_ordinary_codes_leave() -> None:
    codes = [
        code("b1", "1111", pooled=True, order=0),
        code("b2", "2222", pooled=True, order=1),
        code("ordinary", "3333", order=2),
    ]
    result = planned(codes, lock(2))
    assert result.actions == [Write("ordinary", 1, "3333"), Write("b1", 2, "1111")]
    assert result.no_space == {"b2"}


# -- eviction of pooled backups ------------------------------------------------------------------


def test_an_ordinary_code_takes_the_slot_of_a_pooled_backup() -> None:
    codes = [code("backup", "1111", 2, SET, pooled=True, order=0), code("a", PIN, order=1)]
    result = planned(codes, lock(2, {1: OTHER, 2: "1111"}))
    assert result.actions == [Write("a", 2, PIN, evicts="backup")]
    assert not result.no_space


def test_a_free_slot_is_preferred_to_eviction() -> None:
    codes = [code("backup", "1111", 2, SET, pooled=True), code("a", PIN, order=1)]
    result = planned(codes, lock(3, {1: OTHER, 2: "1111"}))
    assert result.actions == [Write("a", 3, PIN)]
    assert result.verified == {"backup"}


@pytest.mark.parametrize("pooled", [True, False])
def test_backup_codes_never_evict(pooled: bool) -> None:
    """A new pooled backup, or a pulled one that lost its slot: neither pushes a backup out."""
    codes = [
        code("sitting", "1111", 1, SET, pooled=True, order=0),
        code("new", "2222", backup=True, pooled=pooled, order=1),
    ]
    result = planned(codes, lock(1, {1: "1111"}))
    assert result.actions == []
    assert result.no_space == {"new"}


def test_pulled_backups_and_ordinary_codes_are_never_evicted() -> None:
    codes = [
        code("pulled", "1111", 1, SET, backup=True, order=0),
        code("ordinary", "2222", 2, SET, order=1),
        code("a", PIN, order=2),
    ]
    result = planned(codes, lock(2, {1: "1111", 2: "2222"}))
    assert result.actions == []
    assert result.no_space == {"a"}


def test_a_pooled_backup_in_an_unread_slot_is_not_evicted() -> None:
    codes = [code("backup", "1111", 1, SET, pooled=True), code("a", PIN, order=1)]
    result = planned(codes, SlotTable(capacity=1))
    assert result.actions == []
    assert result.unreadable == {1}


def test_victims_are_unconfirmed_first_then_newest_and_each_gives_its_slot_once() -> None:
    codes = [
        code("b_old", "1111", 1, SET, pooled=True, order=1),
        code("b_new", "2222", 2, SET, pooled=True, order=2),
        code("b_unconfirmed", "3333", 3, SETTING, pooled=True, order=0),
        code("a1", "5001", order=5),
        code("a2", "5002", order=6),
        code("a3", "5003", order=7),
        code("a4", "5004", order=8),
    ]
    table = lock(3, {1: "1111", 2: "2222", 3: "3333"})  # the unconfirmed one has landed
    result = planned(codes, table)
    assert result.actions == [
        Write("a1", 3, "5001", evicts="b_unconfirmed"),
        Write("a2", 2, "5002", evicts="b_new"),
        Write("a3", 1, "5003", evicts="b_old"),
    ]
    assert result.no_space == {"a4"}


def test_an_ordinary_code_whose_pin_is_foreign_does_not_evict() -> None:
    codes = [code("backup", "1111", 1, SET, pooled=True), code("a", PIN, order=1)]
    result = planned(codes, lock(2, {1: "1111", 2: PIN}))
    assert result.actions == []
    assert result.duplicates == {"a"}
    assert not result.no_space


def test_a_victim_still_being_programmed_is_not_also_written() -> None:
    codes = [
        code("backup", "1111", 1, SETTING, pooled=True, order=0),  # not on the lock yet
        code("a", PIN, order=1),
    ]
    result = plan(codes, lock(1))
    assert result.actions == [Write("a", 1, PIN, evicts="backup")]


# -- duplicates and no_space ---------------------------------------------------------------------


def test_a_waiting_code_whose_pin_sits_in_a_foreign_slot_is_not_placed() -> None:
    result = planned([code("a", PIN)], lock(4, {3: PIN}))
    assert result.duplicates == {"a"}
    assert result.actions == []
    assert not result.no_space


def test_a_placed_code_whose_pin_also_sits_in_a_foreign_slot_is_flagged() -> None:
    result = planned([code("a", PIN, 1, SET)], lock(4, {1: PIN, 3: PIN}))
    assert result.verified == {"a"}
    assert result.duplicates == {"a"}
    assert result.actions == []


def test_an_unwanted_code_is_never_a_duplicate() -> None:
    result = planned([code("a", PIN, 1, SET, wanted=False)], lock(3, {1: PIN, 2: PIN}))
    assert result.duplicates == set()
    assert result.actions == [Clear("a", 1)]


@pytest.mark.parametrize("status", [UNSET, SETTING, SET, REMOVING])
def test_a_placed_code_is_not_rewritten_while_its_pin_is_foreign(status: CodeStatus) -> None:
    """Someone moved the PIN to another slot: writing it back would put it on the lock twice."""
    result = planned([code("a", PIN, 1, status)], lock(4, {1: None, 3: PIN}))
    assert result.duplicates == {"a"}
    assert writes(result) == []


def test_no_space_is_reported_for_each_code_that_misses_out() -> None:
    codes = [code(f"c{i}", f"{5000 + i}", order=i) for i in range(4)]
    result = planned(codes, lock(2))
    assert [w.code_id for w in writes(result)] == ["c0", "c1"]
    assert result.no_space == {"c2", "c3"}


# -- action order --------------------------------------------------------------------------------


def test_clears_come_before_writes() -> None:
    codes = [
        code("new", "1111", order=0),
        code("restore", "2222", 2, SET, order=1),
        code("ended", "3333", 3, SET, wanted=False, order=2),
    ]
    result = planned(codes, lock(3, {3: "3333"}))
    assert result.actions == [
        Clear("ended", 3),
        Write("new", 1, "1111"),
        Write("restore", 2, "2222"),
    ]


def test_ordinary_writes_come_before_backup_writes() -> None:
    codes = [
        code("b_restore", "1111", 1, SET, pooled=True, order=0),
        code("b_new", "2222", pooled=True, order=1),
        code("o_late", "3333", order=3),
        code("o_restore", "4444", 2, SET, order=2),
        code("pulled_restore", "5555", 3, SET, backup=True, order=4),
    ]
    result = planned(codes, lock(5))
    assert [a.code_id for a in result.actions] == [
        "o_restore",
        "o_late",
        "b_restore",
        "b_new",
        "pulled_restore",
    ]


# -- PINs the gateway wrote: no PIN outlives its code (issue 7, finding 1) ----------------------


def written(code_id: str, slot: int, pin: str, *, settled: bool = True) -> Written:
    return Written(code_id, slot, pin, settled)


def test_a_deleted_code_whose_slot_holds_its_old_pin_is_cleared_not_gone() -> None:
    """Update then delete before the new PIN landed: the old PIN is the code's too."""
    doomed = code("a", "7310", 1, SETTING, wanted=False)
    result = plan([doomed], lock(2, {1: PIN}), [written("a", 1, PIN), written("a", 1, "7310")])
    assert clears(result) == [Clear("a", 1)]
    assert "a" not in result.gone
    assert unmanaged_pins([doomed], lock(2, {1: PIN}), [written("a", 1, PIN)]) == {}


def test_a_code_is_not_gone_while_a_write_of_it_may_still_land() -> None:
    doomed = code("a", PIN, 1, REMOVING, wanted=False)
    result = plan([doomed], lock(2), [written("a", 1, PIN, settled=False)])
    assert result.actions == []
    assert "a" not in result.gone
    assert "a" in result.lingering
    settled = plan([doomed], lock(2), [written("a", 1, PIN)])
    assert settled.gone == {"a"}
    assert settled.left == [written("a", 1, PIN)]


def test_a_written_pin_in_a_slot_nobody_holds_is_cleared_and_never_foreign() -> None:
    """A write that landed after the code moved on: the gateway's own, so it clears it."""
    waiting = code("b", "1111")
    table = lock(2, {1: PIN, 2: "5555"})
    result = plan([code("a", "5555", 2, SET), waiting], table, [written("a", 1, PIN)])
    assert result.actions[0] == Clear("a", 1)
    assert writes(result) == []  # slot 1 is not free until the PIN is seen gone
    assert unmanaged_pins([], table, [written("a", 1, PIN)]) == {2: "5555"}
    assert unmanaged_pins([], table) == {1: PIN, 2: "5555"}  # no record: somebody else's


def test_a_waiting_code_waits_while_its_pin_is_still_in_another_slot() -> None:
    backup = code("b", "1111", pooled=True)  # evicted: its PIN still in slot 1
    evictor = code("a", PIN, 1, SETTING)
    table = lock(2, {1: "1111"})
    result = plan([evictor, backup], table, [written("b", 1, "1111"), written("a", 1, PIN)])
    assert writes(result) == [Write("a", 1, PIN)]  # never "1111" in slot 2 as well
    assert "b" in result.lingering
    after = plan([evictor, backup], lock(2, {1: PIN}), [written("b", 1, "1111")])
    assert after.left == [written("b", 1, "1111")]
    assert writes(after) == [Write("b", 2, "1111")]


def test_an_old_pin_in_a_slot_is_the_gateways_own_not_an_external_change() -> None:
    updated = code("a", "7310", 1, SET)
    result = plan([updated], lock(1, {1: PIN}), [written("a", 1, PIN)])
    assert writes(result) == [Write("a", 1, "7310")]
    assert result.external == set()


def test_on_a_masked_lock_a_verified_holder_supersedes_older_pins() -> None:
    holder = code("a", "7310", 1, SET)
    records = [written("b", 1, PIN), written("a", 1, "7310")]
    result = plan([holder], lock(1, {1: OCCUPIED}), records)
    assert result.left == [written("b", 1, PIN)]
    assert result.verified == {"a"}


def test_an_unread_slot_with_a_written_pin_is_read_first() -> None:
    result = plan([code("a", PIN, wanted=False)], lock(2, {1: UNKNOWN}), [written("a", 1, PIN)])
    assert result.unreadable == {1}
    assert "a" in result.lingering


# -- properties over random tables and code sets -------------------------------------------------

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


@settings(max_examples=200, deadline=None)
@given(any_scene)
def test_every_plan_keeps_the_rules(scene: Scene) -> None:
    check_invariants(scene.codes, scene.table, plan(scene.codes, scene.table))


@settings(max_examples=100, deadline=None)
@given(any_scene)
def test_the_plan_does_not_depend_on_list_order(scene: Scene) -> None:
    """Priority is ``order``, not the position in the list the store happened to return."""
    forward = plan(scene.codes, scene.table)
    backward = plan(tuple(reversed(scene.codes)), scene.table)
    assert writes(forward) == writes(backward)
    assert set(clears(forward)) == set(clears(backward))
    assert forward.verified == backward.verified
    assert forward.gone == backward.gone
    assert forward.external == backward.external
    assert forward.duplicates == backward.duplicates
    assert forward.no_space == backward.no_space
    assert forward.unreadable == backward.unreadable


def _double_write() -> Scene:
    return Scene(
        (code("b", "1111", 1, SETTING, pooled=True, order=0), code("a", PIN, order=1)),
        lock(1),
    )


def _foreign_restore() -> Scene:
    return Scene((code("a", PIN, 1, SETTING),), lock(2, {1: None, 2: PIN}))


@settings(max_examples=50, deadline=None)
@given(any_scene)
@example(_double_write())
def test_no_two_writes_target_one_slot(scene: Scene) -> None:
    result = plan(scene.codes, scene.table)
    slots = [w.slot for w in writes(result)]
    assert len(slots) == len(set(slots)), result.actions
    victims = {w.evicts for w in writes(result) if w.evicts is not None}
    assert not victims & {a.code_id for a in result.actions}, "a victim also acts"


@settings(max_examples=150, deadline=None)
@given(any_scene)
@example(_foreign_restore())
def test_no_write_puts_a_pin_on_the_lock_twice(scene: Scene) -> None:
    result = plan(scene.codes, scene.table)
    foreign = foreign_slots(scene.codes, scene.table)
    for w in writes(result):
        assert w.pin not in foreign.values(), f"{w} duplicates a PIN already on the lock"


# -- convergence: apply the plan, plan again -----------------------------------------------------


def apply(
    codes: Sequence[CodeView], table: SlotTable, result: Plan, actions: Iterable[Action]
) -> tuple[tuple[CodeView, ...], SlotTable]:
    """What the reconciler records for the plan's truths and what the lock does for ``actions``.

    Verified -> set; gone -> off its slot, unset; no space -> unset; a Write records the slot
    and ``setting`` (and takes the victim off its slot); a Clear records ``removing``. The lock
    obeys: a Write puts the PIN in the slot, a Clear empties it.
    """
    state = {c.code_id: c for c in codes}
    values = dict(table.slots)
    for cid in result.verified:
        state[cid] = replace(state[cid], status=SET)
    for cid in result.gone:
        state[cid] = replace(state[cid], slot=None, status=UNSET)
    for cid in result.no_space:
        state[cid] = replace(state[cid], status=UNSET)
    for action in actions:
        if isinstance(action, Write):
            if action.evicts is not None:
                state[action.evicts] = replace(state[action.evicts], slot=None, status=UNSET)
            state[action.code_id] = replace(state[action.code_id], slot=action.slot, status=SETTING)
            values[action.slot] = action.pin
        else:
            state[action.code_id] = replace(state[action.code_id], status=REMOVING)
            values[action.slot] = None
    return tuple(state[c.code_id] for c in codes), replace(table, slots=values)


def one_code_per_slot(codes: Sequence[CodeView]) -> None:
    slots = [c.slot for c in codes if c.slot is not None]
    assert len(slots) == len(set(slots)), codes


def double_booked(result: Plan) -> bool:
    """Two Writes on one slot, or an evicted code that also acts: the known eviction bug."""
    slots = [w.slot for w in writes(result)]
    victims = {w.evicts for w in writes(result) if w.evicts is not None}
    return len(slots) != len(set(slots)) or bool(victims & {a.code_id for a in result.actions})


def enough_space(codes: Sequence[CodeView], table: SlotTable) -> bool:
    waiting = [c for c in codes if c.wanted and c.slot is None]
    return len(free_slots(codes, table)) >= len(waiting)


@settings(max_examples=200, deadline=None)
@given(any_scene)
@example(
    Scene(  # a clear frees a slot that a waiting code can only have two rounds later
        (code("x", "1111", 1, SET, wanted=False), code("a", PIN, order=1)),
        lock(1, {1: "1111"}),
    )
)
def test_applying_the_whole_plan_converges(scene: Scene) -> None:
    codes, table = scene.codes, scene.table
    first = planned(codes, table)
    space = enough_space(codes, table)

    codes, table = apply(codes, table, first, first.actions)
    one_code_per_slot(codes)
    second = planned(codes, table)
    for w in writes(first):
        assert w.code_id in second.verified, f"{w} applied, yet not verified next round"
    for cl in clears(first):
        assert cl.code_id in second.gone, f"{cl} applied, yet not gone next round"
    for w in writes(first):
        if w.evicts is not None:
            assert next(c for c in codes if c.code_id == w.evicts).slot is None
    assert not {a.code_id for a in second.actions} & second.verified
    if space:
        assert second.actions == [], "enough space, yet a second round of commands"
        assert not second.no_space

    # Without enough space, a slot freed by a clear is recorded free a round later: at most
    # three rounds of commands, then nothing more to do.
    result = second
    for _ in range(2):
        assume(not double_booked(result))
        codes, table = apply(codes, table, result, result.actions)
        one_code_per_slot(codes)
        result = planned(codes, table)
    assert result.actions == [], "still commands after three rounds"


@settings(max_examples=200, deadline=None)
@given(any_scene)
def test_one_command_per_pass_reaches_a_steady_state(scene: Scene) -> None:
    """As the reconciler runs it: record the truths, send the first command, look again."""
    codes, table = scene.codes, scene.table
    initial_space = enough_space(codes, table)
    for _ in range(3 * len(codes) + 4):
        result = planned(codes, table)
        new_codes, new_table = apply(codes, table, result, result.actions[:1])
        one_code_per_slot(new_codes)
        if (new_codes, new_table) == (codes, table):
            break
        codes, table = new_codes, new_table
    else:
        pytest.fail(f"no steady state: {codes} {table}")

    assert result.actions == []
    for c in codes:
        readable = c.slot is not None and table.value(c.slot) is not UNKNOWN
        if c.wanted:
            assert (
                c.code_id in result.verified
                or (c.code_id in result.external and c.allow_external)
                or (c.slot is not None and not readable)
                or c.code_id in result.duplicates
                or c.code_id in result.no_space
                or c.code_id in result.waiting_for_read  # only a read can move it on
            ), c
        else:
            assert c.slot is None or not readable, c
    if initial_space:
        assert not result.no_space
