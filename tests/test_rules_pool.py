"""Backup pool rules (gateway.rules.pool): contract sections 7 and 9, no I/O."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules.pool import (
    MIN_SLOTS_FOR_POOL,
    PoolHealth,
    backup_name,
    fill_failure,
    grace_deadline,
    many_active,
    pool_health,
    supports_pool,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=30)
US = timedelta(microseconds=1)

HEALTHY = PoolHealth()
EMPTY = PoolHealth(empty=True, partial=False)
PARTIAL = PoolHealth(empty=False, partial=True)

FRESH = NOW - GRACE + US  # short, but still within the grace
DUE = NOW - GRACE  # short for exactly the grace: a problem from this moment
OLD = NOW - 100 * GRACE


def health(
    enabled: bool,
    size: int,
    available: int,
    since: datetime | None,
    failed: bool,
    *,
    now: datetime = NOW,
    grace: timedelta = GRACE,
) -> PoolHealth:
    """``pool_health`` at ``now`` (NOW unless told), with ``grace`` as fill_grace."""
    return pool_health(
        enabled=enabled,
        size=size,
        available=available,
        short_since=since,
        now=now,
        fill_grace=grace,
        fill_failed=failed,
    )


# (enabled, size, available, short_since, fill_failed, expected)
HEALTH: list[tuple[bool, int, int, datetime | None, bool, PoolHealth]] = [
    # disabled: never a problem, however empty or failed
    (False, 3, 0, OLD, True, HEALTHY),
    (False, 3, 1, OLD, True, HEALTHY),
    (False, 3, 0, None, False, HEALTHY),
    # full (or more than full): never a problem, even if a fill failed
    (True, 3, 3, None, False, HEALTHY),
    (True, 3, 3, OLD, True, HEALTHY),
    (True, 3, 5, OLD, True, HEALTHY),
    (True, 1, 1, OLD, True, HEALTHY),
    # empty: fine while filling is within its grace, an error once past it or failed
    (True, 3, 0, None, False, HEALTHY),
    (True, 3, 0, FRESH, False, HEALTHY),
    (True, 3, 0, NOW, False, HEALTHY),
    (True, 3, 0, DUE, False, EMPTY),
    (True, 3, 0, OLD, False, EMPTY),
    (True, 3, 0, NOW, True, EMPTY),
    (True, 3, 0, None, True, EMPTY),
    (True, 1, 0, OLD, False, EMPTY),
    # partial: the same clock, a warning, and never both at once
    (True, 3, 1, None, False, HEALTHY),
    (True, 3, 2, FRESH, False, HEALTHY),
    (True, 3, 2, DUE, False, PARTIAL),
    (True, 3, 1, OLD, False, PARTIAL),
    (True, 3, 2, NOW, True, PARTIAL),
    (True, 3, 1, None, True, PARTIAL),
    (True, 100, 99, OLD, False, PARTIAL),
]


@pytest.mark.parametrize(("enabled", "size", "available", "since", "failed", "expected"), HEALTH)
def test_pool_health(
    enabled: bool,
    size: int,
    available: int,
    since: datetime | None,
    failed: bool,
    expected: PoolHealth,
) -> None:
    assert health(enabled, size, available, since, failed) == expected


def test_a_zero_grace_makes_a_short_pool_a_problem_at_once() -> None:
    assert health(True, 2, 1, NOW, False, grace=timedelta(0)) == PARTIAL


@settings(max_examples=150, deadline=None)
@given(
    enabled=st.booleans(),
    size=st.integers(1, 100),
    available=st.integers(0, 110),
    since=st.none() | st.integers(0, 120).map(lambda s: NOW - timedelta(seconds=s)),
    failed=st.booleans(),
)
def test_pool_health_follows_the_contract(
    enabled: bool, size: int, available: int, since: datetime | None, failed: bool
) -> None:
    """Section 7 written out: empty needs zero available, partial fewer than size, both need
    filling to have failed or to have outlived the grace; the worse one wins."""
    got = health(enabled, size, available, since, failed)
    overdue = failed or (since is not None and NOW - since >= GRACE)
    short = enabled and available < size
    assert got.empty is (short and overdue and available == 0)
    assert got.partial is (short and overdue and available > 0)
    assert not (got.empty and got.partial)


# -- grace_deadline ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enabled", "size", "available", "since", "deadline"),
    [
        (False, 3, 0, NOW, None),
        (True, 3, 3, NOW, None),
        (True, 3, 4, NOW, None),
        (True, 3, 0, None, None),
        (True, 3, 0, NOW, NOW + GRACE),
        (True, 3, 2, OLD, OLD + GRACE),  # already past: the worker looks now
    ],
)
def test_grace_deadline(
    enabled: bool, size: int, available: int, since: datetime | None, deadline: datetime | None
) -> None:
    got = grace_deadline(
        enabled=enabled, size=size, available=available, short_since=since, fill_grace=GRACE
    )
    assert got == deadline


@pytest.mark.parametrize("available", [0, 1, 2])
def test_the_grace_deadline_is_when_pool_health_turns(available: int) -> None:
    """A worker that sleeps until the deadline finds the problem there, not a moment later."""
    since = NOW
    deadline = grace_deadline(
        enabled=True, size=3, available=available, short_since=since, fill_grace=GRACE
    )
    assert deadline is not None

    def at(now: datetime) -> PoolHealth:
        return health(True, 3, available, since, False, now=now)

    assert at(deadline - US) == HEALTHY
    assert at(deadline) != HEALTHY
    assert at(deadline) == (EMPTY if available == 0 else PARTIAL)


# -- supports_pool, many_active, backup_name -----------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "supported"),
    [(None, True), (0, False), (1, False), (2, True), (3, True), (30, True), (250, True)],
)
def test_supports_pool(capacity: int | None, supported: bool) -> None:
    """A pool needs at least two slots: one for a backup, one for the code it backs up.

    A lock that has not reported its slot count yet (None) gets the benefit of the doubt."""
    assert supports_pool(capacity) is supported
    assert MIN_SLOTS_FOR_POOL == 2


@pytest.mark.parametrize(
    ("active", "threshold", "many"),
    [(0, 1, False), (1, 1, True), (1, 2, False), (2, 2, True), (3, 2, True), (9, 10, False)],
)
def test_many_active(active: int, threshold: int, many: bool) -> None:
    """``many_active_backup_codes``: pulled, still-active backups >= the threshold."""
    assert many_active(active, threshold) is many


@pytest.mark.parametrize(
    ("token", "name"),
    [("7f3a", "Backup 7f3a"), ("7f3a9c01", "Backup 7f3a"), ("00ff", "Backup 00ff")],
)
def test_backup_name(token: str, name: str) -> None:
    assert backup_name(token) == name


def test_backup_names_as_the_gateway_makes_them() -> None:
    for _ in range(50):
        assert re.fullmatch(r"Backup [0-9a-f]{4}", backup_name(secrets.token_hex(2)))


@pytest.mark.parametrize(
    ("online", "no_space", "in_flight", "failed", "expected"),
    [
        (True, False, 0, False, None),
        (False, False, 0, False, "offline"),
        (False, True, 0, True, "offline"),  # offline is the cause that explains the rest
        (True, False, 0, True, "failing"),
        (True, True, 0, False, "no free slot"),
        (True, True, 2, False, None),  # still placing backups: filling, not failing
        (True, False, 3, False, None),
    ],
)
def test_fill_failure_names_its_cause(
    online: bool, no_space: bool, in_flight: int, failed: bool, expected: str | None
) -> None:
    cause = fill_failure(online=online, no_space=no_space, in_flight=in_flight, failed=failed)
    if expected is None:
        assert cause is None
    else:
        assert cause is not None
        assert expected in cause
