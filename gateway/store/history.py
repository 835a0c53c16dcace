"""Stored events are kept for a while, not forever (issue 13): a busy site stores about a
kilobyte of events per code, so without pruning the database grows without end on an SD card.

Deleted in small batches, oldest first: events past the retention, then the oldest beyond the
row limit. Never one that is not published yet: the outbox owns those. Idempotency records
expire here too, on their own schedule, not only when another keyed request comes. Freed pages
are reused by later writes, and those beyond a reserve go back to the file system (the file
levels off, and shrinks after a burst that retention has since forgotten).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.clock import isoformat
from gateway.domain import EventType
from gateway.store.db import Tx
from gateway.store.scrub import forget_replies

#: Rows a prune unit deletes at most: a unit is one short step of the writer, requests first.
PRUNE_BATCH = 500
#: How long a keyed request's reply is kept for its retries (contract section 4).
IDEMPOTENCY_WINDOW = timedelta(hours=24)
#: Free pages kept for reuse, at least (and a tenth of the file): giving back space that the
#: next burst takes again would write every page twice.
SPARE_PAGES = 256
#: Pages one prune unit gives back at most (each is a page moved or cut off the file's end).
RETURN_BATCH = 1000


def prune(tx: Tx, retention: timedelta, max_events: int) -> int:
    """One batch: how many rows went (0: nothing left to prune now)."""
    cutoff = isoformat(tx.now - retention)
    gone = tx.execute(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE published = 1"
        " AND occurred_at < ? ORDER BY seq LIMIT ?)",
        (cutoff, PRUNE_BATCH),
    )
    if gone < PRUNE_BATCH:
        row = tx.fetchone("SELECT MAX(seq) - MIN(seq) + 1 AS span FROM events")
        # seq is AUTOINCREMENT: the span bounds the row count without counting every row
        excess = min(PRUNE_BATCH - gone, max(0, int(row["span"] or 0) - max_events)) if row else 0
        if excess:
            gone += tx.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE published = 1"
                " ORDER BY seq LIMIT ?)",
                (excess,),
            )
    expired = isoformat(tx.now - IDEMPOTENCY_WINDOW)
    forget_replies(tx, expired)
    gone += tx.execute(
        "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency WHERE created_at < ?"
        " LIMIT ?)",
        (expired, PRUNE_BATCH),
    )
    if gone:
        _return_free_pages(tx)
    return gone


def _return_free_pages(tx: Tx) -> None:
    """Incremental vacuum of the free pages beyond the reserve, in this unit's transaction."""
    free = _pragma(tx, "freelist_count")
    spare = max(SPARE_PAGES, _pragma(tx, "page_count") // 10)
    # Python's sqlite3 steps a pragma once, and one step of incremental_vacuum frees one page.
    for _ in range(min(RETURN_BATCH, free - spare)):
        tx.execute("PRAGMA incremental_vacuum")


def database_bytes(tx: Tx) -> int:
    """The database file's size, free pages included (what the disk holds for it)."""
    return _pragma(tx, "page_count") * _pragma(tx, "page_size")


def _pragma(tx: Tx, name: str) -> int:
    row = tx.fetchone(f"PRAGMA {name}")
    return int(row[0]) if row else 0


#: Stored times that measure how long something has waited (the idempotency window, a code's
#: retry and its delay warning, a pool's grace, an unmanaged clear's retry): moved with a jump.
_DEADLINES = (
    ("idempotency", "created_at"),
    ("access_codes", "retry_at"),
    ("access_codes", "status_since"),
    ("devices", "pool_short_since"),
    ("unmanaged_removals", "retry_at"),
)


def clock_jumped(tx: Tx, seconds: float) -> None:
    """The wall clock jumped by ``seconds`` while the gateway ran (negative: it reads earlier
    than the gateway has already seen; its time went on regardless). The jump is recorded in the
    history, and after a forward one what waits keeps the time left to it: a jump neither skips
    a backoff, nor raises a delay warning at once, nor expires a retry's reply."""
    if seconds > 0:
        _shift(tx, _DEADLINES, seconds)
    tx.emit(EventType.CLOCK_JUMPED, None, seconds=round(seconds, 1))


def resume_windows(tx: Tx, stopped_at: datetime) -> None:
    """At start: the gateway was stopped at ``stopped_at`` (as far as it knows). A retry's
    idempotency window counts the gateway's running time, so neither a long stop nor a forward
    jump of the clock across it (the two look alike from here) forgets a reply whose retry may
    still come."""
    down = (tx.now - stopped_at).total_seconds()
    if down > 0:
        _shift(tx, _DEADLINES[:1], down)


def _shift(tx: Tx, deadlines: tuple[tuple[str, str], ...], seconds: float) -> None:
    """One statement per column, in SQLite: its ``strftime`` writes the format ``isoformat``
    does (UTC, milliseconds, ``Z``)."""
    by = f"{seconds:+.3f} seconds"
    for table, column in deadlines:
        tx.execute(
            f"UPDATE {table} SET {column} = strftime('%Y-%m-%dT%H:%M:%fZ', {column}, ?)"  # noqa: S608 (fixed names)
            f" WHERE {column} IS NOT NULL",
            (by,),
        )
