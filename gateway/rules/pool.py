"""Backup pool rules (contract section 9)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

#: A pool needs a slot for itself and at least one for the codes it backs up.
MIN_SLOTS_FOR_POOL = 2


def supports_pool(capacity: int | None) -> bool:
    """Every driver here programs codes, so support comes down to the slot count.

    A lock that has not reported its slot count yet is given the benefit of the doubt: the
    pool then simply fills as far as the lock turns out to allow.
    """
    return capacity is None or capacity >= MIN_SLOTS_FOR_POOL


@dataclass(frozen=True, slots=True)
class PoolHealth:
    empty: bool = False  # empty_backup_access_code_pool (error)
    partial: bool = False  # partial_backup_access_code_pool (warning)


def pool_health(
    *,
    enabled: bool,
    size: int,
    available: int,
    short_since: datetime | None,
    now: datetime,
    fill_grace: timedelta,
    fill_failed: bool,
) -> PoolHealth:
    """Contract section 7: a short pool is a problem once filling failed or outlived its grace.

    An empty pool is reported as empty only (not also partial): one problem, the worse one.
    """
    if not enabled or available >= size:
        return PoolHealth()
    overdue = fill_failed or (short_since is not None and now - short_since >= fill_grace)
    if not overdue:
        return PoolHealth()
    return PoolHealth(empty=available == 0, partial=available > 0)


def fill_failure(*, online: bool, no_space: bool, in_flight: int, failed: bool) -> str | None:
    """Why filling the pool has failed (the cause users see next to the pool problem), or None.

    No free slot counts as a failure only once nothing else is being placed: while backups are
    still being written the pool is filling, not failing.
    """
    if not online:
        return "the lock is offline"
    if failed:
        return "programming backup codes on the lock keeps failing"
    if no_space and in_flight == 0:
        return "the lock has no free slot for backup codes"
    return None


def grace_deadline(
    *,
    enabled: bool,
    size: int,
    available: int,
    short_since: datetime | None,
    fill_grace: timedelta,
) -> datetime | None:
    """When a short pool turns into a problem, so the worker wakes up for it."""
    if not enabled or available >= size or short_since is None:
        return None
    return short_since + fill_grace


def many_active(active: int, threshold: int) -> bool:
    return active >= threshold


def backup_name(token: str) -> str:
    """``Backup 7f3a``: recognisable on a lock's user list, unique enough to tell apart."""
    return f"Backup {token[:4]}"
