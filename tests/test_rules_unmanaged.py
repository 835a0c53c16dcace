"""``gateway.rules.unmanaged``: stable ids, and which requested removals clear a slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.domain import SlotTable, Unreadable
from gateway.rules.unmanaged import Removal, plan_removals, retry_at, unmanaged_id
from tests.contract import is_uuid
from tests.slot_scenes import lock

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_ids_are_stable_and_name_device_slot_and_pin() -> None:
    uid = unmanaged_id("front_door", 3, "5550")
    assert is_uuid(uid)
    assert uid == unmanaged_id("front_door", 3, "5550")
    others = {
        unmanaged_id("back_door", 3, "5550"),
        unmanaged_id("front_door", 4, "5550"),
        unmanaged_id("front_door", 3, "5551"),
    }
    assert uid not in others
    assert len(others) == 3


def test_a_slot_is_cleared_only_while_it_holds_the_pin() -> None:
    held, emptied, changed, masked, unread, beyond = (
        Removal(f"id-{n}", n, "5550") for n in range(1, 7)
    )
    table = SlotTable(
        capacity=5,
        slots={1: "5550", 2: None, 3: "7777", 4: Unreadable.OCCUPIED},  # 5: not read yet
    )
    result = plan_removals([held, emptied, changed, masked, unread, beyond], table, NOW)
    assert result.due == [held]
    assert result.gone == [emptied, changed, masked, beyond]  # 6: the lock has 5 slots
    assert result.next_try is None


def test_nothing_asked_nothing_done() -> None:
    result = plan_removals([], lock(4, {1: "5550"}), NOW)
    assert (result.due, result.gone) == ([], [])


def test_a_refused_clear_backs_off_after_max_attempts() -> None:
    assert [retry_at(n, NOW, 3) for n in (0, 1)] == [None, None]
    assert retry_at(2, NOW, 3) == NOW + timedelta(seconds=5)
    assert retry_at(3, NOW, 3) == NOW + timedelta(seconds=10)
    later = NOW + timedelta(seconds=5)
    waiting = Removal("id-1", 1, "5550", attempts=3, retry_at=later)
    result = plan_removals([waiting], lock(2, {1: "5550"}), NOW)
    assert (result.due, result.next_try) == ([], later)
    assert plan_removals([waiting], lock(2, {1: "5550"}), later).due == [waiting]
    # Backing off or not, a slot that changed is done.
    assert plan_removals([waiting], lock(2), NOW).gone == [waiting]
