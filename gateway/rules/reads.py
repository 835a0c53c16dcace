"""The read-back schedule of one lock: when to read it, what, and how long to back off.

One object owns it so that the worker (which sends reads and sees them succeed or fail) and the
pass (which decides whether a read comes next) cannot disagree. Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.domain import SlotTable
from gateway.rules.schedule import retry_delay


@dataclass(slots=True)
class ReadState:
    """What the worker knows about reading its lock back; the pass decides when to read."""

    due: bool = True  # read before anything else: at start, on reconnect, after an unknown outcome
    scope: frozenset[int] | None = None  # what the due read must cover (None: every slot)
    failures: int = 0
    not_before: datetime | None = None  # backoff after failed reads
    last: datetime | None = None  # the last successful read (for resync)
    table_after: SlotTable | None = None  # the table that read gave

    def request(self, slots: frozenset[int] | None) -> None:
        """Ask for a read of ``slots`` (None: all), on top of whatever is already asked."""
        if not self.due:
            self.scope = slots
        elif self.scope is not None and slots is not None:
            self.scope = self.scope | slots
        else:
            self.scope = None
        self.due = True

    def succeeded(self, now: datetime, table: SlotTable | None) -> None:
        """A read was answered: nothing is due, the backoff ends, resync counts from ``now``."""
        self.due = False
        self.scope = None
        self.failures = 0
        self.not_before = None
        self.last = now
        self.table_after = table

    def failed(self, now: datetime) -> None:
        """A read was refused or unanswered: back off, and stop holding writes back for it.

        Unverified writes are then retried and counted, so a code fails visibly instead of
        waiting forever for a lock that does not answer reads."""
        self.due = False
        self.failures += 1
        self.not_before = now + retry_delay(self.failures)

    def shift(self, by: timedelta) -> None:
        """The clock jumped by ``by``: backoff and resync keep the time left to them."""
        if self.not_before is not None:
            self.not_before += by
        if self.last is not None:
            self.last += by

    def held_off_until(self, now: datetime) -> datetime | None:
        """While failed reads back off: when reading may start again (None: it may now)."""
        if self.not_before is not None and self.not_before > now:
            return self.not_before
        return None

    def resync_at(self, interval: float) -> datetime | None:
        """When the periodic read-back is due (None: never read yet, or ``interval`` is 0)."""
        if self.last is None or interval <= 0:
            return None
        return self.last + timedelta(seconds=interval)
