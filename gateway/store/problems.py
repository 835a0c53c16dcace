"""Raising and clearing errors and warnings, with their events, inside a transaction.

Raising twice keeps the first ``created_at``; clearing what is not raised does nothing. Only the
transitions emit events, so a level-triggered caller can state the condition every time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gateway.clock import from_stored, isoformat
from gateway.model import PROBLEMS, EventType, Problem, ProblemKind
from gateway.store.db import Tx

_DEVICE_EVENTS = {
    (ProblemKind.ERROR, True): EventType.DEVICE_ERROR_ADDED,
    (ProblemKind.ERROR, False): EventType.DEVICE_ERROR_CLEARED,
    (ProblemKind.WARNING, True): EventType.DEVICE_WARNING_ADDED,
    (ProblemKind.WARNING, False): EventType.DEVICE_WARNING_CLEARED,
}


def set_problem(
    tx: Tx, owner_id: str, code: str, active: bool, *, device_id: str, message: str | None = None
) -> bool:
    """Make problem ``code`` on ``owner_id`` raised or cleared; True when that changed it."""
    spec = PROBLEMS[code]
    shown = owner_id == device_id  # the device object shows its own problems, not its codes'
    if active:
        text = message or spec.message
        changed = tx.execute(
            "INSERT OR IGNORE INTO problems (owner_id, owner_kind, code, kind, message, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (owner_id, spec.on, code, spec.kind.value, text, isoformat(tx.now)),
        )
        # Still raised, perhaps for another reason now: keep the sentence current.
        if (
            not changed
            and message is not None
            and tx.execute(
                "UPDATE problems SET message = ? WHERE owner_id = ? AND code = ? AND message != ?",
                (text, owner_id, code, text),
            )
            and shown
        ):
            tx.touch(device_id)
    else:
        changed = tx.execute(
            "DELETE FROM problems WHERE owner_id = ? AND code = ?", (owner_id, code)
        )
    if not changed:
        return False
    if shown:
        tx.touch(device_id)
    if spec.on == "device":
        key = "error_code" if spec.kind is ProblemKind.ERROR else "warning_code"
        tx.emit(_DEVICE_EVENTS[(spec.kind, active)], device_id, **{key: code})
    return True


def clear_device_problems(tx: Tx, device_ids: Sequence[str], code: str) -> None:
    """Clear a device problem ``code`` on many devices: one statement finds the few that have
    it raised, and only those are cleared (each with its event)."""
    raised = tx.fetchall(
        "SELECT owner_id FROM problems WHERE code = ?"
        " AND owner_id IN (SELECT value FROM json_each(?)) ORDER BY owner_id",
        (code, json.dumps(list(device_ids))),
    )
    for (device_id,) in raised:
        set_problem(tx, device_id, code, False, device_id=device_id)


def problems_of(tx: Tx, owner_ids: list[str]) -> dict[str, list[Problem]]:
    """Current problems per owner, for building public objects."""
    found: dict[str, list[Problem]] = {owner: [] for owner in owner_ids}
    if not owner_ids:
        return found
    marks = ",".join("?" * len(owner_ids))
    rows = tx.fetchall(
        f"SELECT owner_id, code, kind, message, created_at FROM problems"  # noqa: S608 (marks only)
        f" WHERE owner_id IN ({marks})",
        owner_ids,
    )
    for row in rows:
        found[row["owner_id"]].append(
            Problem(
                code=row["code"],
                kind=ProblemKind(row["kind"]),
                message=row["message"],
                created_at=from_stored(row["created_at"]),
            )
        )
    return found


def clear_all(tx: Tx, owner_id: str, *, device_id: str) -> None:
    """Drop every problem of an owner (a code that is gone, a device that is unmanaged)."""
    rows = tx.fetchall("SELECT code FROM problems WHERE owner_id = ?", (owner_id,))
    for row in rows:
        set_problem(tx, owner_id, row["code"], False, device_id=device_id)


def raised_problems(tx: Tx, device_id: str) -> dict[str, set[str]]:
    """Per owner (the device and each of its codes): the problems raised on it, in one query.
    Keyed by owner so that a pass finds a code's problems without looking at every other's."""
    rows = tx.fetchall(
        "SELECT owner_id, code FROM problems WHERE owner_id = ? OR owner_id IN"
        " (SELECT access_code_id FROM access_codes WHERE device_id = ?)",
        (device_id, device_id),
    )
    raised: dict[str, set[str]] = {}
    for r in rows:
        raised.setdefault(r["owner_id"], set()).add(r["code"])
    return raised
