"""Token buckets: how many tries a key has left, refilled at a steady rate. Pure: time is an
argument (monotonic seconds), so every case tests without waiting."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    burst: int  # tries a full bucket holds
    per_minute: int  # tries it regains a minute

    @property
    def refill_every(self) -> float:
        """Seconds per regained try."""
        return 60.0 / self.per_minute


class Buckets:
    """One bucket per key, all with the same ``rate``. Keys are cheap to invent (a client can
    name any reply topic), so at most ``max_keys`` are held: the fullest buckets are forgotten
    first, and a forgotten key is a full bucket again."""

    __slots__ = ("_levels", "max_keys", "rate")

    def __init__(self, rate: Rate, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._levels: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of when)

    def take(self, key: str, now: float) -> bool:
        """One try for ``key`` at ``now``: True if a token was left (and it is spent)."""
        tokens = self.tokens(key, now)
        if tokens < 1.0:
            self._levels[key] = (tokens, now)
            return False
        self._levels[key] = (tokens - 1.0, now)
        if len(self._levels) > self.max_keys:
            self._forget(now)
        return True

    def tokens(self, key: str, now: float) -> float:
        level = self._levels.get(key)
        if level is None:
            return float(self.rate.burst)
        tokens, since = level
        regained = max(0.0, now - since) / self.rate.refill_every  # a clock never runs back here
        return min(float(self.rate.burst), tokens + regained)

    def _forget(self, now: float) -> None:
        """Down to nine tenths of the bound (so this runs once per many new keys), the fullest
        buckets first: the emptiest belong to whoever is trying hardest."""
        keep = self.max_keys * 9 // 10
        by_fullness = sorted(self._levels, key=lambda k: self.tokens(k, now), reverse=True)
        for key in by_fullness[: len(by_fullness) - keep]:
            del self._levels[key]
