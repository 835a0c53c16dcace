"""Windows, boundaries and retry backoff (gateway.rules.schedule): pure time arithmetic.

A time-bound code belongs on its lock from ``starts_at - program_ahead`` (inclusive) until
``ends_at`` (exclusive); an ongoing code always. A code whose window has passed is never
programmed, and the worker wakes exactly when the answer changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.rules.schedule import (
    Window,
    belongs_on_lock,
    earliest,
    has_ended,
    next_boundary,
    on_lock_from,
    retry_delay,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
US = timedelta(microseconds=1)
H = timedelta(hours=1)
NO_AHEAD = timedelta(0)

START = T0 + 10 * H
END = T0 + 20 * H
BOUNDED = Window(START, END)


# -- belongs_on_lock -----------------------------------------------------------------------------

# (window, now, program_ahead, belongs)
BELONGS: list[tuple[Window, datetime, timedelta, bool]] = [
    # ongoing: always
    (Window(None, None), T0, NO_AHEAD, True),
    (Window(None, None), T0 + 1000 * H, H, True),
    # both ends, no program_ahead: [start, end)
    (BOUNDED, START - H, NO_AHEAD, False),
    (BOUNDED, START - US, NO_AHEAD, False),
    (BOUNDED, START, NO_AHEAD, True),  # inclusive start
    (BOUNDED, START + US, NO_AHEAD, True),
    (BOUNDED, END - US, NO_AHEAD, True),
    (BOUNDED, END, NO_AHEAD, False),  # exclusive end
    (BOUNDED, END + H, NO_AHEAD, False),
    # program_ahead moves the start earlier, never the end
    (BOUNDED, START - 2 * H, H, False),
    (BOUNDED, START - H - US, H, False),
    (BOUNDED, START - H, H, True),
    (BOUNDED, START - US, H, True),
    (BOUNDED, END - US, H, True),
    (BOUNDED, END, H, False),
    # program_ahead longer than the whole window: still nothing after the end
    (BOUNDED, START - 30 * H, 30 * H, True),
    (BOUNDED, END, 30 * H, False),
    # a start only: from start on, for ever
    (Window(START, None), START - US, NO_AHEAD, False),
    (Window(START, None), START, NO_AHEAD, True),
    (Window(START, None), START + 10_000 * H, NO_AHEAD, True),
    (Window(START, None), START - H, H, True),
    # an end only: until the end
    (Window(None, END), T0 - 1000 * H, NO_AHEAD, True),
    (Window(None, END), END - US, NO_AHEAD, True),
    (Window(None, END), END, NO_AHEAD, False),
    (Window(None, END), END, H, False),
    # an empty window is never on the lock (the API refuses it, and inverted ones, anyway)
    (Window(START, START), START - US, NO_AHEAD, False),
    (Window(START, START), START, NO_AHEAD, False),
]


@pytest.mark.parametrize(("window", "now", "ahead", "belongs"), BELONGS)
def test_belongs_on_lock(window: Window, now: datetime, ahead: timedelta, belongs: bool) -> None:
    assert belongs_on_lock(window, now, ahead) is belongs


def test_on_lock_from() -> None:
    assert on_lock_from(Window(None, None), H) is None
    assert on_lock_from(Window(None, END), H) is None
    assert on_lock_from(BOUNDED, NO_AHEAD) == START
    assert on_lock_from(BOUNDED, 90 * S) == START - 90 * S


@pytest.mark.parametrize(
    ("window", "now", "ended"),
    [
        (Window(None, None), T0 + 10_000 * H, False),
        (Window(START, None), T0 + 10_000 * H, False),
        (BOUNDED, START, False),
        (BOUNDED, END - US, False),
        (BOUNDED, END, True),
        (BOUNDED, END + H, True),
        (Window(None, END), END, True),
    ],
)
def test_has_ended(window: Window, now: datetime, ended: bool) -> None:
    assert has_ended(window, now) is ended


def test_an_ended_code_never_belongs_whatever_program_ahead() -> None:
    for ahead in (NO_AHEAD, S, H, 1000 * H):
        for now in (END, END + US, END + 1000 * H):
            assert has_ended(BOUNDED, now)
            assert not belongs_on_lock(BOUNDED, now, ahead)


# -- next_boundary -------------------------------------------------------------------------------

BOUNDARIES: list[tuple[Window, datetime, timedelta, datetime | None]] = [
    (Window(None, None), T0, NO_AHEAD, None),
    (Window(None, None), T0, H, None),
    (BOUNDED, T0, NO_AHEAD, START),
    (BOUNDED, T0, H, START - H),
    (BOUNDED, START - US, NO_AHEAD, START),
    (BOUNDED, START, NO_AHEAD, END),  # exactly at the start: the next change is the end
    (BOUNDED, START - H, H, END),
    (BOUNDED, START - H - US, H, START - H),
    (BOUNDED, END - US, NO_AHEAD, END),
    (BOUNDED, END, NO_AHEAD, None),  # exactly at the end: nothing more will happen
    (BOUNDED, END + H, H, None),
    (Window(START, None), T0, NO_AHEAD, START),
    (Window(START, None), START, NO_AHEAD, None),
    (Window(None, END), T0, H, END),
    (Window(None, END), END, H, None),
]


@pytest.mark.parametrize(("window", "now", "ahead", "boundary"), BOUNDARIES)
def test_next_boundary(
    window: Window, now: datetime, ahead: timedelta, boundary: datetime | None
) -> None:
    assert next_boundary(window, now, ahead) == boundary


def test_next_boundary_is_always_in_the_future() -> None:
    for now in (START - H, START, END):
        b = next_boundary(BOUNDED, now, H)
        assert b is None or b > now


offsets = st.integers(-50 * 3600, 50 * 3600).map(lambda s: timedelta(seconds=s))
durations = st.integers(1, 30 * 3600).map(lambda s: timedelta(seconds=s))
aheads = st.integers(0, 10 * 3600).map(lambda s: timedelta(seconds=s))


@st.composite
def windows(draw: st.DrawFn) -> Window:
    """Windows the API accepts: ``ends_at`` after ``starts_at`` when both are given."""
    start = T0 + draw(offsets) if draw(st.booleans()) else None
    if draw(st.booleans()):
        return Window(start, None)
    if start is not None:
        return Window(start, start + draw(durations))
    return Window(None, T0 + draw(offsets))


@settings(max_examples=150, deadline=None)
@given(windows(), offsets, aheads, st.lists(st.floats(0, 1), max_size=8))
@example(Window(None, T0), -S, NO_AHEAD, [0.9999999999999999])  # rounds onto the boundary
def test_next_boundary_is_the_next_change_of_belongs(
    window: Window, offset: timedelta, ahead: timedelta, fractions: list[float]
) -> None:
    """``belongs_on_lock`` holds still from now until the boundary, and changes right at it."""
    now = T0 + offset
    before = belongs_on_lock(window, now, ahead)
    boundary = next_boundary(window, now, ahead)
    if boundary is None:
        horizon = now + 200 * H
        probes = [now + (horizon - now) * f for f in fractions] + [horizon]
        assert all(belongs_on_lock(window, t, ahead) is before for t in probes)
        return
    assert boundary > now
    probes = [now + (boundary - now) * f for f in fractions] + [now, boundary - US]
    assert all(belongs_on_lock(window, t, ahead) is before for t in probes if t < boundary)
    assert belongs_on_lock(window, boundary, ahead) is not before


def test_earliest() -> None:
    assert earliest([]) is None
    assert earliest([None, None]) is None
    assert earliest([None, END, START, None]) == START
    assert earliest(iter([END])) == END


# -- retry_delay ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [
        (-5, 5.0),
        (0, 5.0),
        (1, 5.0),  # the first failure waits the base
        (2, 10.0),
        (3, 20.0),
        (4, 40.0),
        (5, 80.0),
        (6, 160.0),
        (7, 320.0),
        (8, 600.0),  # 640 capped
        (9, 600.0),
        (100, 600.0),
        (10**9, 600.0),
    ],
)
def test_retry_delay_doubles_up_to_the_ceiling(failures: int, seconds: float) -> None:
    assert retry_delay(failures) == timedelta(seconds=seconds)


def test_retry_delay_takes_its_base_and_ceiling() -> None:
    assert retry_delay(1, base=1.0, ceiling=3.0) == timedelta(seconds=1)
    assert retry_delay(2, base=1.0, ceiling=3.0) == timedelta(seconds=2)
    assert retry_delay(3, base=1.0, ceiling=3.0) == timedelta(seconds=3)
    assert retry_delay(50, base=1.0, ceiling=3.0) == timedelta(seconds=3)
    assert retry_delay(1, base=0.5, ceiling=600.0) == timedelta(milliseconds=500)
    assert retry_delay(5, base=10.0, ceiling=10.0) == timedelta(seconds=10)


def test_retry_delay_exponent_is_bounded_for_huge_failure_counts() -> None:
    """No overflow, however long a lock has been failing, even with no practical ceiling."""
    assert retry_delay(10**12, base=1.0, ceiling=1e12) == timedelta(seconds=2**16)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(-3, 200),
    st.floats(0.01, 100.0),
    st.floats(0.01, 10_000.0),
)
def test_retry_delay_grows_and_stays_capped(failures: int, base: float, ceiling: float) -> None:
    delay = retry_delay(failures, base=base, ceiling=ceiling)
    following = retry_delay(failures + 1, base=base, ceiling=ceiling)
    assert timedelta(0) < delay <= following
    assert delay <= timedelta(seconds=ceiling)
    assert delay >= timedelta(seconds=min(base, ceiling)) - US
