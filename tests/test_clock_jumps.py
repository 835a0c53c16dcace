"""Time never runs backwards for the gateway (issue 13, point 3): a stale or backward wall clock
neither takes a code in its window (or a pulled backup) off its lock nor brings back one that
ended, also right after a restart; event times never go backwards. The wall clock jumps here
while the monotonic clock runs true, as NTP does to a board without a real-time clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway import service
from gateway.clock import ManualClock, SteadyClock
from gateway.config import Config
from gateway.model import Json
from gateway.service import Gateway
from tests.backup_pool_helpers import FRONT, gateway_site, pool_config, pull
from tests.conftest import ConfigFactory
from tests.contract import EPOCH
from tests.harness import (
    Recorder,
    Site,
    create,
    get_code,
    is_event,
    ok,
    running_simulator,
    wait_for_json,
)


class JumpingClock(ManualClock):
    """A wall clock a test may set anywhere, backwards too; its monotonic clock only moves with
    :meth:`advance` (real time passing), never with :meth:`jump`."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self._ticks = 0.0

    def advance(self, seconds: float = 0.0, **kwargs: float) -> datetime:
        step = timedelta(seconds=seconds, **kwargs)
        self._ticks += step.total_seconds()
        self._now += step
        self._fire()
        return self.now()

    def jump(self, when: datetime) -> None:
        """Timers are not fired by a jump: a real system's timers run on monotonic time."""
        self._now = when

    def monotonic(self) -> float:
        return self._ticks


# -- the clock alone ------------------------------------------------------------------------------


def test_a_backward_jump_is_not_believed_and_time_goes_on() -> None:
    wall = JumpingClock()
    clock = SteadyClock(wall)
    start = clock.now()
    wall.jump(start - timedelta(hours=1))
    assert clock.now() == start
    assert clock.behind == timedelta(hours=1)
    wall.advance(10)  # real time passes: the gateway's time does too
    assert clock.now() == start + timedelta(seconds=10)
    assert clock.behind == timedelta(hours=1)
    wall.jump(start + timedelta(hours=2))  # NTP puts it right: believed at once
    assert clock.now() == start + timedelta(hours=2)
    assert clock.behind is None


def test_small_slews_are_no_news() -> None:
    wall = JumpingClock()
    clock = SteadyClock(wall)
    start = clock.now()
    wall.jump(start - timedelta(milliseconds=300))
    assert clock.now() == start
    assert clock.behind is None


def test_a_restored_mark_outweighs_a_stale_clock() -> None:
    wall = JumpingClock(datetime(2024, 1, 1, tzinfo=UTC))
    clock = SteadyClock(wall)
    seen = datetime.fromisoformat("2030-01-01T12:00:00+00:00")
    clock.restore(seen)
    assert clock.now() == seen
    assert clock.behind is not None
    assert clock.behind > timedelta(days=365)
    clock.restore(seen - timedelta(days=1))  # an older mark changes nothing
    assert clock.now() == seen


def test_timers_follow_the_steady_time() -> None:
    wall = JumpingClock()
    clock = SteadyClock(wall)
    start = clock.now()
    wall.jump(start - timedelta(days=2))
    fired: list[datetime] = []
    clock.call_at(start + timedelta(seconds=30), lambda: fired.append(clock.now()))
    wall.advance(29)
    assert fired == []
    wall.advance(1)
    assert fired == [start + timedelta(seconds=30)]


# -- the gateway ----------------------------------------------------------------------------------


def backward(event: Json) -> bool:
    return bool(event["event_type"] == "gateway.clock_jumped" and event["seconds"] < 0)


async def stored_times(site: Site) -> list[str]:
    events: list[Json] = ok(await site.api.call("events/list", since=EPOCH, limit=1000))["events"]
    return [e["occurred_at"] for e in events]


async def test_a_stale_clock_takes_nothing_off_and_brings_nothing_back(
    make_config: ConfigFactory,
) -> None:
    config = pool_config(make_config, slots=8, size=2)
    wall = JumpingClock()
    async with running_simulator(config) as sim:
        lock = sim.lock(FRONT)
        async with gateway_site(config, SteadyClock(wall), sim) as site:
            events = await Recorder.events(site)
            now = site.clock.now()
            stay = await create(
                site,
                device_id=FRONT,
                code="48213",
                starts_at=(now - timedelta(minutes=10)).isoformat(),
                ends_at=(now + timedelta(minutes=20)).isoformat(),
            )
            gone = await create(
                site,
                device_id=FRONT,
                code="59324",
                starts_at=(now - timedelta(minutes=10)).isoformat(),
                ends_at=(now + timedelta(minutes=5)).isoformat(),
            )
            for code in (stay, gone):
                await events.wait(
                    is_event("access_code.set_on_device", access_code_id=code["access_code_id"])
                )
            backup = ok(await pull(site, stay["access_code_id"]))["backup_access_code"]
            await site.settled()
            wall.advance(6 * 60)  # the second code ends and comes off
            site.gateway.reconciler.wake_all()  # type: ignore[union-attr]
            await events.wait(
                is_event("access_code.deleted", access_code_id=gone["access_code_id"])
            )
            await site.settled()
            assert "59324" not in lock.slots.values()

            health = await site.api.subscribe(f"{config.prefix}/health")
            # The clock falls two days back, then an hour back: nothing changes on the lock.
            for back in (timedelta(days=2), timedelta(hours=1)):
                wall.jump(site.clock.now() - back)
                if back.days:  # the fall is told: in the history, once, with its size
                    (told,) = await events.wait(backward)
                    assert told["seconds"] == -2 * 86400
                    assert told["device_id"] is None
                site.gateway.reconciler.wake_all()  # type: ignore[union-attr]
                await site.settled()
                pins = set(lock.slots.values())
                assert {"48213", backup["code"]} <= pins
                assert "59324" not in pins
                assert (await get_code(site, stay["access_code_id"]))["status"] == "set"
            said = await wait_for_json(health, lambda h: h.get("clock_behind_seconds"))
            assert said["clock_behind_seconds"] == 2 * 86400
            wall.jump(site.clock.now() + timedelta(seconds=30))  # NTP puts it right
            await wait_for_json(health, lambda h: h.get("clock_behind_seconds", 0) is None)
            times = await stored_times(site)
            assert times == sorted(times)  # event times never went backwards
            assert events.count(backward) == 1

        # A restart with the clock still two days behind (a board without a clock, no NTP
        # yet): the mark in the database wins, the stay's PIN stays on the lock.
        stale = JumpingClock(wall.now() - timedelta(days=2))
        async with gateway_site(config, SteadyClock(stale), sim) as site:
            async with asyncio.timeout(5):
                await site.gateway.jumped.wait()
            listed = ok(await site.api.call("events/list", since=EPOCH, limit=1000))["events"]
            assert [round(e["seconds"]) for e in listed if backward(e)] == [-2 * 86400] * 2
            await site.settled()
            assert {"48213", backup["code"]} <= set(lock.slots.values())
            assert (await get_code(site, stay["access_code_id"]))["status"] == "set"
            times = await stored_times(site)
            assert times == sorted(times)


async def test_a_forward_jump_is_acted_on_at_once_and_retries_stay_idempotent(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock was two days behind when a stay was booked; NTP then steps it right. The stay
    that ended by the real time comes off at once (no timer would fire: they run on monotonic
    time), and the client's retry of the booking is answered as the first time."""
    monkeypatch.setattr(service, "JUMP_CHECK_EVERY", 0.01)
    config = pool_config(make_config, slots=8, size=1)
    real = ManualClock().now()
    wall = JumpingClock(real - timedelta(days=2))
    async with (
        running_simulator(config) as sim,
        gateway_site(config, SteadyClock(wall), sim) as site,
    ):
        events = await Recorder.events(site)
        now = site.clock.now()
        params: dict[str, Any] = {
            "device_id": FRONT,
            "code": "48213",
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "idempotency_key": "booking-77",
        }
        stay = await create(site, **params)
        await events.wait(
            is_event("access_code.set_on_device", access_code_id=stay["access_code_id"])
        )
        wall.jump(real)  # NTP: two days forward, the stay is long over
        await events.wait(
            is_event("access_code.removed_from_device", access_code_id=stay["access_code_id"]),
            timeout=10,
        )
        assert "48213" not in sim.lock(FRONT).slots.values()
        again = ok(await site.api.call("access_codes/create", **params))
        assert again["access_code"]["access_code_id"] == stay["access_code_id"]
        listed = ok(await site.api.call("access_codes/list", device_id=FRONT))["access_codes"]
        assert "48213" not in [c["code"] for c in listed]  # no second code was made
        (told,) = await events.wait(is_event("gateway.clock_jumped", device_id=None))
        assert round(told["seconds"]) == 2 * 86400


async def test_a_retry_after_a_stop_and_a_jump_is_answered_as_the_first_time(
    make_config: ConfigFactory,
) -> None:
    """Booked while the clock was two days behind; the gateway stops, the clock is put right
    meanwhile, the gateway starts. Across a stop a jump looks like downtime, and the gateway's
    downtime does not count against a retry's window: the retry makes no second code."""
    config = make_config()
    real = ManualClock().now()
    params: dict[str, Any] = {"device_id": FRONT, "code": "48213", "idempotency_key": "booking-78"}
    async with running_simulator(config) as sim:
        async with gateway_site(config, SteadyClock(JumpingClock(real - timedelta(days=2))), sim):
            pass  # the database is made, and the gateway has seen this time
        async with gateway_site(
            config, SteadyClock(JumpingClock(real - timedelta(days=2))), sim
        ) as site:
            first = await create(site, **params)
        async with gateway_site(config, SteadyClock(JumpingClock(real)), sim) as site:
            again = ok(await site.api.call("access_codes/create", **params))
            assert again["access_code"]["access_code_id"] == first["access_code_id"]
            listed = ok(await site.api.call("access_codes/list", device_id=FRONT))
            assert [c["code"] for c in listed["access_codes"]] == ["48213"]


async def test_a_forward_jump_skips_no_wait(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A code waits on a lock that does not answer; NTP steps the clock an hour forward. The
    code has waited seconds, not an hour: no delay warning comes of the jump."""
    monkeypatch.setattr(service, "JUMP_CHECK_EVERY", 0.01)
    config = make_config(timing={"command_timeout": "1s", "delay_warning_after": "10m"})
    wall = JumpingClock()
    async with (
        running_simulator(config) as sim,
        gateway_site(config, SteadyClock(wall), sim) as site,
    ):
        await sim.lock(FRONT).control({"silent": True})
        code = await create(site, device_id=FRONT, code="48213")
        wall.jump(wall.now() + timedelta(hours=1))
        async with asyncio.timeout(10):
            await site.gateway.jumped.wait()
        wall.advance(1)  # a second of real time: the worker looks again
        site.gateway.reconciler.wake_all()  # type: ignore[union-attr]
        await site.settled()
        waiting = await get_code(site, code["access_code_id"])
        assert waiting["status"] == "setting"
        assert "delay_in_setting_on_device" not in {w["warning_code"] for w in waiting["warnings"]}


async def clock_after_start(config: Config, wall: JumpingClock, *, reset: bool) -> datetime:
    """The gateway's time right after it started on ``wall`` (and stopped again)."""
    gateway = Gateway(config, clock=SteadyClock(wall), reset_clock_mark=reset)
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop), name="test-gateway")
    try:
        async with asyncio.timeout(10):
            await gateway.ready.wait()
        return gateway.clock.now()
    finally:
        stop.set()
        await running


async def test_a_mark_pushed_ahead_by_a_wrong_clock_can_be_reset(
    make_config: ConfigFactory,
) -> None:
    """A clock ran a month ahead while the gateway stored events; the clock is right again.
    The mark keeps the gateway in the wrong future until ``run --reset-clock-mark``."""
    config = make_config()
    real = ManualClock().now()
    ahead = real + timedelta(days=30)
    assert await clock_after_start(config, JumpingClock(ahead), reset=False) >= ahead
    assert await clock_after_start(config, JumpingClock(real), reset=False) >= ahead
    assert await clock_after_start(config, JumpingClock(real), reset=True) == real
    # From then on the wall clock counts again, across restarts too.
    later = real + timedelta(hours=1)
    assert await clock_after_start(config, JumpingClock(later), reset=False) == later
