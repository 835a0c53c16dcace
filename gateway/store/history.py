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


def shift_idempotency(tx: Tx, seconds: float) -> None:
    """The wall clock jumped by ``seconds``: move the stored requests' times with it, so their
    24 hours are measured in time that passed, not in the jump."""
    rows = tx.fetchall("SELECT key, created_at FROM idempotency")
    tx.executemany(
        "UPDATE idempotency SET created_at = ? WHERE key = ?",
        [
            (isoformat(parse_timestamp(r["created_at"]) + timedelta(seconds=seconds)), r["key"])
            for r in rows
        ],
    )
