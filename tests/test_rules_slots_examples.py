"""The slot planner (gateway.rules.slots), example by example: one placed code in every state,
free-slot choice, eviction of pooled backups, duplicates and no_space, and the order of actions.

Everything here is pure: no lock, no store, no clock. The rules under test, from the contract
(sections 6, 7, 9) and from what lock-code managers get wrong:

* a slot holding a PIN the gateway did not put there is never written or cleared;
* a slot that has not been read (UNKNOWN) is never taken for empty, nor for ours;
* ordinary codes come before backup codes, and may take the slot of an unpulled backup;
* a code whose window is not open (``wanted=False``) is never programmed;
* a plan never puts two managed codes in one slot, nor one code in two slots.

Helpers and scene strategies: :mod:`tests.slot_scenes`.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from drivers.base import SlotTable, SlotValue
from gateway.model import CodeStatus
from gateway.rules.slots import Clear, Write, plan, unmanaged_pins
from tests.slot_scenes import (
    OCCUPIED,
    OTHER,
    PIN,
    REMOVING,
    SET,
    SETTING,
    UNKNOWN,
    UNSET,
    code,
    lock,
    planned,
    writes,
)

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
