"""The slot planner (gateway.rules.slots) with the PINs the gateway wrote: no PIN outlives its
code (issue 7, finding 1), and an old PIN of the gateway's own is never foreign nor an external
change.

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

from gateway.rules.slots import Clear, Write, Written, plan, unmanaged_pins
from tests.slot_scenes import (
    OCCUPIED,
    PIN,
    REMOVING,
    SET,
    SETTING,
    UNKNOWN,
    clears,
    code,
    lock,
    writes,
)

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
