"""The slot planner (gateway.rules.slots) over random tables and code sets: every plan keeps the
rules, does not depend on list order, never double-writes a slot or a PIN, and applying plans
converges to a steady state.

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

from collections.abc import Iterable, Sequence
from dataclasses import replace

import pytest
from hypothesis import assume, example, given, settings

from drivers.base import SlotTable
from gateway.rules.slots import Action, CodeView, Plan, Write, plan
from tests.slot_scenes import (
    PIN,
    REMOVING,
    SET,
    SETTING,
    UNKNOWN,
    UNSET,
    Scene,
    any_scene,
    check_invariants,
    clears,
    code,
    foreign_slots,
    free_slots,
    lock,
    planned,
    writes,
)

# -- properties over random tables and code sets -------------------------------------------------


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
