"""Token buckets (gateway.rules.rate): bursts, refill, keys kept apart, memory bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.rules.rate import Buckets, Rate


def test_a_burst_then_one_try_per_refill() -> None:
    buckets = Buckets(Rate(burst=3, per_minute=6))  # a try back every 10 s
    assert [buckets.take("lock", 0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take("lock", 9.9) is False
    assert buckets.take("lock", 10.0) is True
    assert buckets.take("lock", 10.0) is False
    # A long pause fills the bucket, never beyond its burst.
    assert [buckets.take("lock", 1000.0) for _ in range(4)] == [True, True, True, False]


def test_refused_tries_do_not_delay_the_refill() -> None:
    buckets = Buckets(Rate(burst=1, per_minute=60))
    assert buckets.take("k", 0.0) is True
    assert [buckets.take("k", t) for t in (0.2, 0.5, 0.9)] == [False, False, False]
    assert buckets.take("k", 1.0) is True


def test_keys_are_kept_apart() -> None:
    buckets = Buckets(Rate(burst=1, per_minute=1))
    assert buckets.take("a", 0.0) is True
    assert buckets.take("a", 0.0) is False
    assert buckets.take("b", 0.0) is True


def test_memory_is_bounded_and_an_empty_bucket_is_kept_longest() -> None:
    buckets = Buckets(Rate(burst=2, per_minute=1), max_keys=3)
    for _ in range(2):
        buckets.take("guesser", 0.0)  # empty now
    for n in range(10):
        buckets.take(f"passer-by-{n}", 0.0)
    assert len(buckets._levels) <= 3
    assert buckets.take("guesser", 0.0) is False  # not forgotten: still empty


@given(
    burst=st.integers(1, 20),
    per_minute=st.integers(1, 600),
    times=st.lists(st.floats(0, 600, allow_nan=False), min_size=1, max_size=60),
)
def test_never_more_than_burst_plus_refill(burst: int, per_minute: int, times: list[float]) -> None:
    buckets = Buckets(Rate(burst, per_minute))
    times.sort()
    granted = sum(buckets.take("k", t) for t in times)
    assert granted <= burst + (times[-1] - times[0]) * per_minute / 60 + 1e-9
