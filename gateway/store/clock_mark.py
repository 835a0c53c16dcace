"""The latest time the gateway has seen, kept across restarts (``gateway.clock.SteadyClock``)."""

from __future__ import annotations

from datetime import datetime

from gateway.clock import from_stored, isoformat
from gateway.store.db import Tx


def latest_seen(tx: Tx) -> datetime | None:
    """The later of the saved mark and the newest stored event since the last reset: on a busy
    site the events say it already, on an idle one the mark saved at the last stop does."""
    row = tx.fetchone(
        "SELECT MAX(t) AS latest FROM (SELECT value AS t FROM meta WHERE key = 'clock_mark'"
        " UNION ALL SELECT MAX(occurred_at) FROM events WHERE seq >"
        " COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'clock_reset_seq'), 0))"
    )
    return from_stored(row["latest"]) if row and row["latest"] else None


def reset_mark(tx: Tx) -> None:
    """``lockgate run --reset-clock-mark``: a clock that ran wrongly ahead pushed the mark (and
    the times of the events stored meanwhile) into the future. From now on the mark is the time
    of this start, and those events no longer count for it."""
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('clock_mark', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (isoformat(tx.now),),
    )
    tx.execute(
        "INSERT INTO meta (key, value) SELECT 'clock_reset_seq', COALESCE(MAX(seq), 0) FROM events"
        " WHERE true ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )


def save_mark(tx: Tx, mark: datetime) -> None:
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('clock_mark', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE excluded.value > value",
        (isoformat(mark),),
    )
