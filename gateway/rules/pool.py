"""Backup pool rules (contract section 9)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from gateway.domain import PROBLEMS, BackupState, CodeStatus, ProblemCode

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


#: The reason a short pool gives when nothing has failed: it is merely slow to fill.
SLOW_FILL = "filling it is taking longer than fill_grace"


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One backup (or other) code of the lock, as the pool's health sees it."""

    code_id: str
    state: BackupState | None  # None: not a backup code
    status: CodeStatus
    slot: int | None = None
    attempts: int = 0
    deleting: bool = False


@dataclass(frozen=True, slots=True)
class PoolFacts:
    """The lock's pool settings and state at the end of a pass."""

    enabled: bool  # enabled, and the lock is managed
    size: int
    short_since: datetime | None
    online: bool
    now: datetime
    fill_grace: timedelta
    many_active_threshold: int
    max_attempts: int
    raised: frozenset[str] = frozenset()  # the device's problems raised now


class ProblemChange(NamedTuple):
    code: ProblemCode
    active: bool
    message: str | None = None  # raised with this sentence (kept current while raised)


@dataclass(frozen=True, slots=True)
class PoolVerdict:
    short_since: datetime | None  # since when the pool is below size (None: it is not)
    problems: tuple[ProblemChange, ...]  # in the order to apply (their events follow it)
    deadline: datetime | None  # when the pool's health may turn without anything happening


def judge_pool(
    members: Sequence[PoolMember], no_space: Collection[str], facts: PoolFacts
) -> PoolVerdict:
    """Health of the pool after a pass: ``members`` are the lock's codes (not the forgotten
    ones), ``no_space`` the codes the plan found no slot for. A pool problem's message names
    its cause (:func:`fill_failure`); a message of one already raised is kept current."""
    live = [m for m in members if not m.deleting]
    pooled = [m for m in live if m.state is BackupState.POOLED]
    available = sum(1 for m in pooled if m.status is CodeStatus.SET)
    short = facts.enabled and available < facts.size
    since = (facts.short_since or facts.now) if short else None
    unset = [m for m in pooled if m.status is not CodeStatus.SET]
    cause = fill_failure(
        online=facts.online,
        no_space=any(m.code_id in no_space for m in pooled),
        in_flight=sum(1 for m in unset if m.slot is not None),
        failed=any(m.attempts >= facts.max_attempts for m in unset),
    )
    health = pool_health(
        enabled=facts.enabled,
        size=facts.size,
        available=available,
        short_since=since,
        now=facts.now,
        fill_grace=facts.fill_grace,
        fill_failed=cause is not None,
    )
    active = sum(1 for m in live if m.state is BackupState.PULLED)
    many = facts.enabled and many_active(active, facts.many_active_threshold)
    return PoolVerdict(
        short_since=since,
        problems=_pool_problems(health, many, cause or SLOW_FILL, facts.raised),
        deadline=grace_deadline(
            enabled=facts.enabled,
            size=facts.size,
            available=available,
            short_since=since,
            fill_grace=facts.fill_grace,
        ),
    )


def _pool_problems(
    health: PoolHealth, many: bool, reason: str, raised: frozenset[str]
) -> tuple[ProblemChange, ...]:
    changes = []
    for key, active in (
        (ProblemCode.EMPTY_BACKUP_ACCESS_CODE_POOL, health.empty),
        (ProblemCode.PARTIAL_BACKUP_ACCESS_CODE_POOL, health.partial),
    ):
        if active:
            changes.append(
                ProblemChange(key, True, f"{PROBLEMS[key].message.rstrip('.')}: {reason}.")
            )
        elif key in raised:
            changes.append(ProblemChange(key, False))
    if many != (ProblemCode.MANY_ACTIVE_BACKUP_CODES in raised):
        changes.append(ProblemChange(ProblemCode.MANY_ACTIVE_BACKUP_CODES, many))
    return tuple(changes)
