"""Reading the event history back (``events/list``, ``access_codes/get_timeline``).

The events table is the outbox, so it already holds every event ever emitted, in ``seq`` order.
Paging is by ``seq``, not by time: timestamps are only millisecond-precise and the wall clock may
step back, but ``seq`` gives every event exactly one place, so a client paging with
``after_event_id`` sees each event once, also while new ones are being added.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import isoformat
from gateway.model import EventType, Json
from gateway.store.db import Tx


def list_events(
    tx: Tx,
    *,
    since: datetime | None,
    after_event_id: str | None,
    device_id: str | None,
    access_code_id: str | None,
    event_types: Sequence[str] | None,
    limit: int,
) -> list[Json]:
    """Stored event bodies, oldest first, at most ``limit``.

    ``since`` keeps events with ``occurred_at >= since``; ``after_event_id`` keeps those stored
    after that event, whatever the filters (its own type or device need not match them).
    Raises ``LookupError`` when ``after_event_id`` is not in the history.
    """
    where: list[str] = []
    params: list[Any] = []
    first_seq = 1  # seq counts from 1 (AUTOINCREMENT)
    if after_event_id is not None:
        row = tx.fetchone("SELECT seq FROM events WHERE event_id = ?", (after_event_id,))
        if row is None:
            raise LookupError(after_event_id)
        first_seq = row["seq"] + 1
    if since is not None:
        bound = _lower_bound(since)
        if bound is None:
            return []
        # The first matching seq, found on events_occurred, turns the walk below into a seq
        # range instead of a scan from the oldest event. INDEXED BY: left alone, SQLite answers
        # MIN(seq) by walking the table from seq 1. occurred_at is still checked below, as the
        # wall clock may have stepped back between events.
        row = tx.fetchone(
            "SELECT MIN(seq) AS first FROM events INDEXED BY events_occurred"
            " WHERE occurred_at >= ?",
            (bound,),
        )
        if row is None or row["first"] is None:
            return []
        first_seq = max(first_seq, row["first"])
        where.append("occurred_at >= ?")
        params.append(bound)
    where.append("seq >= ?")
    params.append(first_seq)
    if device_id is not None:
        where.append("device_id = ?")
        params.append(device_id)
    if access_code_id is not None:
        where.append("access_code_id = ?")
        params.append(access_code_id)
    if event_types is not None:
        wanted = sorted(set(event_types))
        if not wanted:
            return []
        where.append(f"event_type IN ({', '.join(['?'] * len(wanted))})")
        params.extend(wanted)
    params.append(limit)
    rows = tx.fetchall(
        f"SELECT body FROM events WHERE {' AND '.join(where)}"  # noqa: S608 (fixed clauses)
        " ORDER BY seq LIMIT ?",
        params,
    )
    return [json.loads(row["body"]) for row in rows]


def code_timeline(tx: Tx, access_code_id: str, limit: int) -> list[Json]:
    """The stored events about one code and the backups pulled for it, oldest first, at most
    ``limit``: its story, also after the code itself is gone."""
    pulled = tx.fetchall(
        "SELECT body FROM events WHERE access_code_id = ? AND event_type = ? ORDER BY seq",
        (access_code_id, EventType.BACKUP_PULLED.value),
    )
    backups = {json.loads(row["body"]).get("backup_access_code_id") for row in pulled}
    ids = [access_code_id, *sorted(b for b in backups if isinstance(b, str))]
    rows = tx.fetchall(
        f"SELECT body FROM events WHERE access_code_id IN ({', '.join('?' * len(ids))})"  # noqa: S608
        " ORDER BY seq LIMIT ?",
        (*ids, limit),
    )
    return [json.loads(row["body"]) for row in rows]


def _lower_bound(since: datetime) -> str | None:
    """``since`` in the stored format, rounded *up* to the millisecond.

    Stored times are cut to milliseconds, so rounding up keeps exactly the events whose
    ``occurred_at`` as the client sees it is ``>= since``. None: nothing can be that late.
    """
    spare = since.microsecond % 1000
    try:
        return isoformat(since + timedelta(microseconds=1000 - spare) if spare else since)
    except OverflowError:
        return None


def latest_event(tx: Tx, device_id: str, event_type: EventType) -> Json | None:
    """The body of ``device_id``'s most recent stored event of ``event_type``, if any."""
    row = tx.fetchone(
        "SELECT body FROM events WHERE device_id = ? AND event_type = ? ORDER BY seq DESC LIMIT 1",
        (device_id, event_type.value),
    )
    if row is None:
        return None
    body: Json = json.loads(row["body"])
    return body
