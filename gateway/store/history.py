"""Stored events are kept for a while, not forever (issue 13): a busy site stores about a
kilobyte of events per code, so without pruning the database grows without end on an SD card.

Deleted in small batches, oldest first: events past the retention, then the oldest beyond the
row limit. Never one that is not published yet: the outbox owns those. Idempotency records
expire here too, on their own schedule, not only when another keyed request comes. The freed
pages are reused by later writes (the file levels off instead of growing).
"""

from __future__ import annotations

from datetime import timedelta

from gateway.clock import isoformat, parse_timestamp
from gateway.store.db import Tx
from gateway.store.scrub import forget_replies

#: Rows a prune unit deletes at most: a unit is one short step of the writer, requests first.
PRUNE_BATCH = 500
#: How long a keyed request's reply is kept for its retries (contract section 4).
IDEMPOTENCY_WINDOW = timedelta(hours=24)


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
    return gone


def database_bytes(tx: Tx) -> int:
    """The database file's size, free pages included (what the disk holds for it)."""
    pages = tx.fetchone("PRAGMA page_count")
    size = tx.fetchone("PRAGMA page_size")
    return int(pages[0]) * int(size[0]) if pages and size else 0


#: Stored times that measure how long something has waited (the idempotency window, a code's
#: retry and its delay warning, a pool's grace, an unmanaged clear's retry): moved with a jump.
_DEADLINES = (
    ("idempotency", "created_at", "key"),
    ("access_codes", "retry_at", "access_code_id"),
    ("access_codes", "status_since", "access_code_id"),
    ("devices", "pool_short_since", "device_id"),
    ("unmanaged_removals", "retry_at", "device_id || '/' || slot"),
)


def shift_deadlines(tx: Tx, seconds: float) -> None:
    """The wall clock jumped by ``seconds``: what waits keeps the time left to it, so a jump
    neither skips a backoff, nor raises a delay warning at once, nor expires a retry's reply."""
    by = timedelta(seconds=seconds)
    for table, column, key in _DEADLINES:
        rows = tx.fetchall(
            f"SELECT {key} AS k, {column} AS t FROM {table} WHERE {column} IS NOT NULL"  # noqa: S608 (fixed names)
        )
        tx.executemany(
            f"UPDATE {table} SET {column} = ? WHERE {key} = ?",  # noqa: S608 (fixed names)
            [(isoformat(parse_timestamp(r["t"]) + by), r["k"]) for r in rows],
        )
