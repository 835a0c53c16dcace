"""drivers/entry_pairing.py: a lock's operation report and its state change are one operation,
whichever comes first; a state change alone is an operation of unknown method."""

from __future__ import annotations

import asyncio

from drivers.base import EntryEvent, EntryKind, EntryMethod
from drivers.entry_pairing import EntryPairing

WINDOW = 0.05
KEYPAD_UNLOCK = EntryEvent(EntryKind.UNLOCKED, EntryMethod.KEYCODE, 3)


def pairing() -> tuple[EntryPairing, list[EntryEvent]]:
    told: list[EntryEvent] = []
    return EntryPairing(told.append, WINDOW), told


async def test_the_first_state_is_where_the_lock_stands() -> None:
    pair, told = pairing()
    pair.state(EntryKind.LOCKED)
    pair.state(EntryKind.LOCKED)  # republished
    await asyncio.sleep(2 * WINDOW)
    assert told == []


async def test_the_report_first_then_its_state_change() -> None:
    pair, told = pairing()
    pair.state(EntryKind.LOCKED)
    pair.operation(KEYPAD_UNLOCK)
    pair.state(EntryKind.UNLOCKED)
    await asyncio.sleep(2 * WINDOW)
    assert told == [KEYPAD_UNLOCK]


async def test_the_state_change_first_then_its_report() -> None:
    pair, told = pairing()
    pair.state(EntryKind.LOCKED)
    pair.state(EntryKind.UNLOCKED)
    assert told == []  # held: the report may follow
    pair.operation(KEYPAD_UNLOCK)
    await asyncio.sleep(2 * WINDOW)
    assert told == [KEYPAD_UNLOCK]


async def test_a_state_change_alone_is_an_operation_of_unknown_method() -> None:
    pair, told = pairing()
    pair.state(EntryKind.UNLOCKED)
    pair.state(EntryKind.LOCKED)
    pair.state(None)  # jammed: says nothing
    await asyncio.sleep(2 * WINDOW)
    assert told == [EntryEvent(EntryKind.LOCKED, EntryMethod.UNKNOWN)]


async def test_a_late_report_of_another_kind_does_not_explain_a_change() -> None:
    pair, told = pairing()
    pair.state(EntryKind.UNLOCKED)
    denied = EntryEvent(EntryKind.ACCESS_DENIED, EntryMethod.KEYCODE)
    pair.operation(denied)  # a wrong PIN moves no bolt
    pair.state(EntryKind.LOCKED)
    await asyncio.sleep(2 * WINDOW)
    assert told == [denied, EntryEvent(EntryKind.LOCKED, EntryMethod.UNKNOWN)]


async def test_closed_it_tells_nothing_more() -> None:
    pair, told = pairing()
    pair.state(EntryKind.LOCKED)
    pair.state(EntryKind.UNLOCKED)
    pair.close()
    await asyncio.sleep(2 * WINDOW)
    assert told == []


async def test_what_was_held_is_told_before_what_came_after() -> None:
    pair, told = pairing()
    pair.state(EntryKind.LOCKED)
    pair.state(EntryKind.UNLOCKED)  # held
    auto_lock = EntryEvent(EntryKind.LOCKED, EntryMethod.AUTOMATIC)
    pair.operation(auto_lock)
    pair.state(EntryKind.LOCKED)
    pair.state(EntryKind.UNLOCKED)  # held
    pair.state(EntryKind.LOCKED)  # held, the unlock told first
    assert told == [
        EntryEvent(EntryKind.UNLOCKED, EntryMethod.UNKNOWN),
        auto_lock,
        EntryEvent(EntryKind.UNLOCKED, EntryMethod.UNKNOWN),
    ]


async def test_a_report_that_moved_nothing_explains_no_later_change() -> None:
    pair, told = pairing()
    pair.state(EntryKind.UNLOCKED)
    thumb_turn = EntryEvent(EntryKind.UNLOCKED, EntryMethod.MANUAL)
    pair.operation(thumb_turn)  # already unlocked
    pair.state(EntryKind.UNLOCKED)  # so says the lock
    pair.state(EntryKind.LOCKED)
    pair.state(EntryKind.UNLOCKED)  # an unlock nobody reported
    pair.state(EntryKind.LOCKED)
    assert told == [
        thumb_turn,
        EntryEvent(EntryKind.LOCKED, EntryMethod.UNKNOWN),
        EntryEvent(EntryKind.UNLOCKED, EntryMethod.UNKNOWN),
    ]
