"""One source of wall-clock time, so that schedules can be tested in milliseconds.

Network timeouts use the event loop's monotonic time and are not affected: only the
business calendar (``starts_at``, ``ends_at``, grace periods, resync) reads this clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    async def sleep_until(self, when: datetime) -> None:
        """Return at (or after) ``when`` on this clock."""


class SystemClock:
    """The real clock. Sleeps in bounded steps so that a wall-clock jump is noticed."""

    max_step = 60.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        while (remaining := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, self.max_step))


class ManualClock:
    """A clock that only moves when a test says so; sleepers wake in deadline order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), future))
        await future

    def advance(self, seconds: float = 0.0, **kwargs: float) -> datetime:
        """Move time forward and wake everyone whose deadline has come."""
        self.set(self._now + timedelta(seconds=seconds, **kwargs))
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError("a ManualClock never goes backwards")
        self._now = when
        while self._sleepers and self._sleepers[0][0] <= when:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


def isoformat(when: datetime) -> str:
    """The one timestamp format on the wire and in the database: UTC, milliseconds, ``Z``."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 as clients write it; a time without an offset is refused, not guessed."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone offset")
    return value.astimezone(UTC)
