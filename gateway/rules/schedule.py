"""When a code belongs on its lock, and when the next thing happens. Pure time arithmetic."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Window:
    starts_at: datetime | None
    ends_at: datetime | None


def on_lock_from(window: Window, program_ahead: timedelta) -> datetime | None:
    """The moment a time-bound code should be programmed; None for ongoing codes."""
    if window.starts_at is None:
        return None
    return window.starts_at - program_ahead


def belongs_on_lock(window: Window, now: datetime, program_ahead: timedelta) -> bool:
    """Ongoing codes always; time-bound ones from ``starts_at - program_ahead`` to ``ends_at``."""
    if window.ends_at is not None and now >= window.ends_at:
        return False
    start = on_lock_from(window, program_ahead)
    return start is None or now >= start


def has_ended(window: Window, now: datetime) -> bool:
    return window.ends_at is not None and now >= window.ends_at


def next_boundary(window: Window, now: datetime, program_ahead: timedelta) -> datetime | None:
    """The next moment ``belongs_on_lock`` changes its answer for this window."""
    candidates = [on_lock_from(window, program_ahead), window.ends_at]
    future = [t for t in candidates if t is not None and t > now]
    return min(future) if future else None


def earliest(times: Iterable[datetime | None]) -> datetime | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def retry_delay(failures: int, *, base: float = 5.0, ceiling: float = 600.0) -> timedelta:
    """Backoff between programming tries after ``failures`` failed tries (1 -> base)."""
    exponent = max(0, min(failures - 1, 16))
    return timedelta(seconds=min(ceiling, base * 2**exponent))
