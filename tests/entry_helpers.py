"""Shared by the drivers' entry-event tests: collect what a driver heard of its door."""

from __future__ import annotations

import pytest

import drivers.entry_pairing
from drivers.base import Driver, EntryEvent
from tests.helpers import TIMEOUT, Wakes

#: The pairing window in these tests: a state change alone is told this late (long enough
#: for a loaded machine to take the two reports of one operation within it).
SHORT_WINDOW = 0.5


async def heard(
    driver: Driver, wakes: Wakes, count: int, timeout: float = TIMEOUT
) -> list[EntryEvent]:
    """The driver's entry events, taken as they come (each one wakes it) until ``count``; more
    than ``count`` is a failure the caller sees (an operation told twice)."""
    events: list[EntryEvent] = []

    def enough() -> bool:
        events.extend(driver.take_entry_events())
        return len(events) >= count

    await wakes.until(enough, timeout)
    return events


def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drivers made from now on tell a state change alone after :data:`SHORT_WINDOW`."""
    monkeypatch.setattr(drivers.entry_pairing, "PAIR_WINDOW", SHORT_WINDOW)
