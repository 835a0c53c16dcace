"""The outbox against a real broker and a real SQLite file: what goes out, when, what is marked."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.model import EventType
from gateway.outbox import Outbox
from gateway.store import Priority, Store, Tx
from tests.broker import Broker
from tests.fakes import store_at
from tests.helpers import TIMEOUT, Probe, running, session_for

PREFIX = "site"
TOPIC = f"{PREFIX}/events/{EventType.DEVICE_CONNECTED.value}"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with store_at(tmp_path / "outbox.db", SystemClock()) as opened:
        yield opened


def _emit(name: str) -> Callable[[Tx], None]:
    def unit(tx: Tx) -> None:
        tx.emit(EventType.DEVICE_CONNECTED, "door", name=name)

    return unit


async def _unmarked(store: Store) -> list[str]:
    rows = await store.fetchall("SELECT body FROM events WHERE published = 0 ORDER BY seq")
    return [json.loads(row["body"])["name"] for row in rows]


async def test_events_go_out_while_lock_passes_keep_the_writer_busy(
    broker: Broker, probe: Probe, store: Store
) -> None:
    """Marking events published waits its turn behind the lock passes, and the outbox does
    not wait for it: an event committed meanwhile goes out at once, not after the passes."""
    await probe.subscribe(TOPIC)
    session = session_for(broker, "test-outbox")
    outbox = Outbox(store, session, PREFIX)
    store.on_commit(outbox.notify)
    passes_left = 60
    release = threading.Event()

    def busy_pass(tx: Tx) -> None:
        nonlocal passes_left
        release.wait(TIMEOUT)  # the first pass holds the writer until the test lets it go
        time.sleep(0.02)  # a busy lock's pass
        passes_left -= 1

    async with running(("session", session.run()), ("outbox", outbox.run())):
        await session.wait_connected(TIMEOUT)
        await asyncio.wait_for(outbox.drained.wait(), TIMEOUT)
        passes = [store.submit(busy_pass, priority=Priority.PASS) for _ in range(passes_left)]
        first = asyncio.ensure_future(store.write(_emit("first")))
        release.set()
        await first
        assert (await probe.next(TOPIC))["name"] == "first"
        await store.write(_emit("second"))
        assert (await probe.next(TOPIC))["name"] == "second"
        assert passes_left > 30, "the second event waited for the lock passes"
        await asyncio.gather(*passes)
        # Once drained, what went out is marked so: a restart would not send it again.
        await asyncio.wait_for(outbox.drained.wait(), TIMEOUT)
        assert await _unmarked(store) == []


async def test_a_restart_sends_what_was_not_marked_and_nothing_already_marked(
    broker: Broker, probe: Probe, store: Store
) -> None:
    """At least once: an event whose mark was not committed (the gateway died first) goes out
    again after a restart; a marked one never does."""
    await probe.subscribe(TOPIC)
    await store.write(_emit("marked"))
    await store.write(lambda tx: tx.execute("UPDATE events SET published = 1"))
    await store.write(_emit("unmarked"))
    session = session_for(broker, "test-outbox")
    outbox = Outbox(store, session, PREFIX)
    store.on_commit(outbox.notify)
    async with running(("session", session.run()), ("outbox", outbox.run())):
        await asyncio.wait_for(outbox.drained.wait(), TIMEOUT)
        assert (await probe.next(TOPIC))["name"] == "unmarked"
        await store.write(_emit("later"))
        assert (await probe.next(TOPIC))["name"] == "later"
        await asyncio.wait_for(outbox.drained.wait(), TIMEOUT)
    assert [json.loads(p)["name"] for _, p in probe.history] == ["unmarked", "later"]
    assert await _unmarked(store) == []


async def test_an_event_goes_out_as_it_was_stored(
    broker: Broker, probe: Probe, store: Store
) -> None:
    """The stored body is published as it is: the same bytes, text in UTF-8 unescaped."""
    await probe.subscribe(TOPIC)
    await store.write(_emit("Café Ø 7"))
    stored = await store.fetchone("SELECT body FROM events")
    assert stored is not None
    session = session_for(broker, "test-outbox")
    outbox = Outbox(store, session, PREFIX)
    async with running(("session", session.run()), ("outbox", outbox.run())):
        raw = await probe.next_raw(TOPIC)
    assert raw == stored["body"].encode()
    assert "Café Ø 7".encode() in raw
