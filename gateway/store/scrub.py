"""PINs leave the history with their codes.

An ended or deleted code's PIN, and a PIN an update replaced once the lock holds the new one,
open no door any more, but they would stay readable in the stored events
(``access_code.set_on_device`` carries the PIN it set) and in the replies kept for idempotent
retries, and from there in every copy of the database file. They are blanked (``code``: null) in
the unit that makes them obsolete; the events keep what happened. The database runs with
``secure_delete``, so the old bytes are zeroed rather than left in freed pages, and the writer
checkpoints the WAL after a scrub (see ``gateway.store.db``).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.domain import compact_json
from gateway.model import EventType, Json
from gateway.store.db import Tx


def scrub_pins(tx: Tx, access_code_id: str, keep: str | None = None) -> None:
    """Blank every stored copy of ``access_code_id``'s PINs but ``keep`` (its PIN in force)."""
    rows = tx.fetchall(
        "SELECT seq, body FROM events WHERE access_code_id = ? AND event_type = ?",
        (access_code_id, EventType.CODE_SET.value),
    )
    for row in rows:
        body = json.loads(row["body"])
        if body.get("code") not in (None, keep):
            body["code"] = None
            tx.execute(
                "UPDATE events SET body = ? WHERE seq = ?",
                (compact_json(body), row["seq"]),
            )
            tx.scrubbed = True
    replies = tx.fetchall(
        "SELECT i.key, i.reply FROM idempotency_codes c JOIN idempotency i ON i.key = c.key"
        " WHERE c.access_code_id = ?",
        (access_code_id,),
    )
    for row in replies:
        reply = json.loads(row["reply"])
        if _blank(reply, access_code_id, keep):
            tx.execute(
                "UPDATE idempotency SET reply = ? WHERE key = ?", (json.dumps(reply), row["key"])
            )
            tx.scrubbed = True
    if keep is None:
        tx.execute("DELETE FROM idempotency_codes WHERE access_code_id = ?", (access_code_id,))


def note_reply(tx: Tx, key: str, reply: Json) -> None:
    """Index a stored reply by the access codes it shows, for :func:`scrub_pins`."""
    ids = {obj["access_code_id"] for obj in _objects(reply) if "code" in obj}
    tx.executemany(
        "INSERT OR IGNORE INTO idempotency_codes (access_code_id, key) VALUES (?, ?)",
        [(i, key) for i in ids],
    )


def forget_replies(tx: Tx, created_before: str) -> None:
    """The index entries of replies about to expire."""
    tx.execute(
        "DELETE FROM idempotency_codes WHERE key IN"
        " (SELECT key FROM idempotency WHERE created_at < ?)",
        (created_before,),
    )


def _objects(value: Any) -> list[dict[str, Any]]:
    """Every JSON object in ``value`` that is an access code (has an ``access_code_id``)."""
    found: list[dict[str, Any]] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if isinstance(item.get("access_code_id"), str):
                found.append(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def _blank(reply: Json, access_code_id: str, keep: str | None) -> bool:
    changed = False
    for obj in _objects(reply):
        if obj["access_code_id"] == access_code_id and obj.get("code") not in (None, keep):
            obj["code"] = None
            changed = True
    return changed
