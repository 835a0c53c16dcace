"""A history that forgets (issue 13, point 7): months of guests, compressed on an injected clock.
Events past the retention go, the database file stops growing, and no PIN of an ended stay is
left in it."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock, isoformat
from gateway.model import EventType, Json
from gateway.store import Store, Tx, db, history
from tests.conftest import ConfigFactory
from tests.contract import EPOCH
from tests.harness import Site, create, ok, running_site

DAY = 86400.0
RETENTION_DAYS = 20


@pytest.fixture(autouse=True)
def prompt_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "SCRUB_CHECKPOINT_EVERY", 0.0)


def file_bytes(database: Path) -> int:
    return sum(p.stat().st_size for p in (database, Path(f"{database}-wal")) if p.exists())


async def a_day_passes(site: Site) -> None:
    """A day on the clock, and the pruning round it brings."""
    gateway = site.gateway
    gateway.pruned.clear()
    await site.advance(DAY)
    async with asyncio.timeout(10):
        await gateway.pruned.wait()
    await site.settled()


async def all_events(site: Site) -> list[Json]:
    found: list[Json] = []
    after: str | None = None
    while True:
        page: dict[str, Any] = {"after_event_id": after} if after else {"since": EPOCH}
        batch = ok(await site.api.call("events/list", limit=1000, **page))["events"]
        found += batch
        if len(batch) < 1000:
            return found
        after = batch[-1]["event_id"]


async def test_months_of_stays_level_off(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[{"device_id": "front_door", "driver": "native", "slots": 20}],
        history={"retention": f"{RETENTION_DAYS}d"},
    )
    clock = ManualClock()
    pins: list[str] = []
    sizes: dict[int, int] = {}
    async with running_site(config, clock) as site:
        for day in range(1, 91):
            now = clock.now()
            pin = f"{90000000 + day * 137:08d}"
            pins.append(pin)
            await create(
                site,
                device_id="front_door",
                code=pin,
                idempotency_key=f"stay-{day}",
                starts_at=isoformat(now),
                ends_at=isoformat(now + timedelta(hours=20)),
            )
            await site.settled()
            await a_day_passes(site)
            if day in (45, 90):
                sizes[day] = file_bytes(config.database)

        events = await all_events(site)
        oldest = min(e["occurred_at"] for e in events)
        assert oldest >= isoformat(clock.now() - timedelta(days=RETENTION_DAYS + 1))
        kinds = {e["event_type"] for e in events}
        assert "access_code.created" in kinds  # the recent weeks are still told
        # The file stopped growing once pruning kept pace (pages freed are reused).
        assert sizes[90] <= sizes[45] * 1.1, sizes
        # Every stay ended: none of their PINs is anywhere in the file.
        raw = b"".join(
            p.read_bytes() for p in (config.database, Path(f"{config.database}-wal")) if p.exists()
        )
        assert not [pin for pin in pins if pin.encode() in raw]


async def test_space_a_forgotten_burst_took_goes_back(tmp_path: Path) -> None:
    """A burst of history, then retention forgets it: the pages go back to the file system
    (incremental vacuum), all but a reserve for the next burst."""
    clock = ManualClock()
    store = await Store.open(tmp_path / "lockgate.db", clock)
    try:

        def burst(tx: Tx) -> None:
            for n in range(4000):
                tx.emit(EventType.CODE_CREATED, None, f"code-{n}", note="x" * 500)
            tx.execute("UPDATE events SET published = 1")

        await store.write(burst)
        peak = await store.read(history.database_bytes)
        clock.advance(days=2)
        unit = functools.partial(history.prune, retention=timedelta(days=1), max_events=10**6)
        while await store.write(unit):
            pass
        after = await store.read(history.database_bytes)
        free = await store.fetchone("PRAGMA freelist_count")
    finally:
        await store.close()
    assert peak > 2_000_000
    assert after < peak / 2, (peak, after)
    assert free is not None
    assert free[0] <= history.SPARE_PAGES
    assert (tmp_path / "lockgate.db").stat().st_size == after  # the file itself shrank

