"""Backup pool rules (contract section 9)."""

from __future__ import annotations

#: A pool needs a slot for itself and at least one for the codes it backs up.
MIN_SLOTS_FOR_POOL = 2


def supports_pool(capacity: int | None) -> bool:
    """Every driver here programs codes, so support comes down to the slot count."""
    return capacity is not None and capacity >= MIN_SLOTS_FOR_POOL
