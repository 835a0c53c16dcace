"""One source of wall-clock time, so that schedules can be tested in milliseconds.

Network timeouts use the event loop's monotonic time and are not affected: only the
business calendar (``starts_at``, ``ends_at``, grace periods, resync) reads this clock.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def call_at(self, when: datetime, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` once this clock reaches ``when`` (or a little later)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never run backwards, whatever the wall clock
        does: for spans of time (rate limits), not for dates."""


class SystemClock:
    """The real clock. Long waits are cut into steps of at most ``max_step`` seconds: the
    callback may then come early (callers re-check and re-arm), but a wall-clock jump is
    noticed within a step instead of after the whole wait."""

    max_step = 60.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_at(self, when: datetime, callback: Callable[[], None]) -> Timer:
        delay = max(0.0, (when - self.now()).total_seconds())
        return asyncio.get_running_loop().call_later(min(delay, self.max_step), callback)


class _ManualTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


class ManualClock:
    """A clock that only moves when a test says so; timers fire in deadline order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = self._start = start or datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        self._timers: list[tuple[datetime, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._start).total_seconds()  # it never goes backwards

    def call_at(self, when: datetime, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        if when <= self._now:
            self._fire()
        return timer

    def advance(self, seconds: float = 0.0, **kwargs: float) -> datetime:
        """Move time forward and fire every timer whose deadline has come."""
        self.set(self._now + timedelta(seconds=seconds, **kwargs))
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError("a ManualClock never goes backwards")
        self._now = when
        self._fire()

    def _fire(self) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer = heapq.heappop(self._timers)
            callback, timer.callback = timer.callback, None
            if callback is not None:
                callback()


#: A wall clock reading this much earlier than the gateway has already seen is a jump worth
#: telling (smaller differences are NTP slewing a clock that ran fast).
BACKWARD_TOLERANCE = timedelta(seconds=1)


class SteadyClock:
    """The wall clock as the gateway judges every window by: never earlier than it has seen.

    A board without a real-time clock boots with a stale time and jumps when NTP syncs, and any
    clock can be set back. Read naively, a code in its window would come off its lock because its
    ``starts_at`` is "in the future" again, and one that ended would come back. This clock keeps a
    high-water mark of the wall clock: its time is the later of the wall clock and the mark
    carried forward by the monotonic clock since the mark was taken. :meth:`restore` sets the mark
    from the database at start, so a stale clock after a reboot reads no earlier than the last
    time the gateway saw (the downtime itself cannot be known until the wall clock is right).
    """

    def __init__(self, wall: Clock) -> None:
        self._wall = wall
        # (mark, the wall clock's monotonic reading when it was taken), replaced as one value:
        # the event loop and the database thread both read this clock.
        self._high: tuple[datetime, float] | None = None
        self.behind: timedelta | None = None  # how far the wall clock reads early, while it does

    def restore(self, mark: datetime) -> None:
        """The latest time the gateway saw before this start (from the database)."""
        if mark > self.now():
            self._high = (mark, self._wall.monotonic())
            self.now()  # says at once that the wall clock reads early

    def now(self) -> datetime:
        wall = self._wall.now()
        high = self._high
        if high is not None:
            floor = high[0] + timedelta(seconds=self._wall.monotonic() - high[1])
            if wall < floor:
                behind = floor - wall
                self.behind = behind if behind > BACKWARD_TOLERANCE else None
                return floor
        self._high = (wall, self._wall.monotonic())
        self.behind = None
        return wall

    def monotonic(self) -> float:
        return self._wall.monotonic()

    def drift(self) -> float:
        """This clock's reading less the monotonic clock's, in seconds: constant while time
        runs true, changed by a forward jump of the wall clock (a step by NTP, a clock set by
        hand; a backward one does not move this clock)."""
        return self.now().timestamp() - self._wall.monotonic()

    def call_at(self, when: datetime, callback: Callable[[], None]) -> Timer:
        """``when`` in this clock's time, handed to the wall clock shifted by how far it reads
        early (so a timer neither waits for a stale clock to catch up nor fires early)."""
        ahead = self.now() - self._wall.now()
        return self._wall.call_at(when - ahead, callback)


def isoformat(when: datetime) -> str:
    """The one timestamp format on the wire and in the database: UTC, milliseconds, ``Z``."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 as clients write it; a time without an offset is refused, not guessed.

    Raises ValueError for anything else, also for an instant outside the years 1-9999 in UTC
    (year 1 at +01:00 parses, but only as a moment before the calendar begins).
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp {text!r} is out of range in UTC") from None


#: How many stored timestamps :func:`from_stored` remembers: every timestamp of a few thousand
#: codes, about 3 MB.
STORED_TIMESTAMPS_KEPT = 1 << 14


@functools.lru_cache(maxsize=STORED_TIMESTAMPS_KEPT)
def from_stored(text: str) -> datetime:
    """A timestamp read from the database. Remembered: a lock pass reads the same rows again
    and again (a lock with 200 codes, after every change), and parsing their timestamps was a
    fifth of the pass. A datetime is immutable, so one object serves every reader."""
    return parse_timestamp(text)


def as_stored(when: datetime) -> datetime:
    """``when`` cut to the whole milliseconds :func:`isoformat` keeps: compare what is stored."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)
