"""The store's writer: many units share one commit, a failing unit rolls back alone, requests
go before lock passes, a batch that changed nothing writes nothing, and reads never wait.

A "gate" unit holds the writer thread on a ``threading.Event``, so the order in which queued
units run is observed, not timed."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.model import EventType
from gateway.store import Priority, Store, Tx
from tests.fakes import store_at

WAIT = 5.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with store_at(tmp_path / "group.db", ManualClock()) as opened:
        yield opened


def insert(key: str, ran: list[str] | None = None) -> Callable[[Tx], str]:
    def unit(tx: Tx) -> str:
        tx.execute(
            "INSERT INTO idempotency (key, endpoint, reply, created_at) VALUES (?, 'e', '{}', 'x')",
            (key,),
        )
        if ran is not None:
            ran.append(key)
        return key

    return unit


def stored_keys(path: Path) -> set[str]:
    """What a second connection (as after a crash) finds committed."""
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute("SELECT key FROM idempotency")}


class Gate:
    """A unit that holds the writer thread until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self, tx: Tx) -> None:
        self.entered.set()
        assert self.open.wait(WAIT)

    async def holding(self, store: Store, priority: Priority) -> asyncio.Task[None]:
        task = asyncio.create_task(store.write(self, priority=priority))
        assert await asyncio.to_thread(self.entered.wait, WAIT)
        return task


async def test_units_waiting_together_share_one_commit(store: Store, tmp_path: Path) -> None:
    gate = Gate()
    held = await gate.holding(store, Priority.REQUEST)
    before = store.stats.commits
    writes = [asyncio.create_task(store.write(insert(f"k{i}"))) for i in range(50)]
    await asyncio.sleep(0)  # every write is queued behind the gate
    gate.open.set()
    assert await asyncio.gather(*writes) == [f"k{i}" for i in range(50)]
    await held
    # The fifty requests joined the gate's open batch: one commit for all of them.
    assert store.stats.commits - before == 1
    assert stored_keys(tmp_path / "group.db") == {f"k{i}" for i in range(50)}


async def test_a_batch_wakes_its_callers_loop_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty units of one batch are released by one wake-up of the loop (each is a write to
    its pipe and a hand-over of the GIL), in the order they ran."""
    loop = asyncio.get_running_loop()
    wakeups = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> asyncio.Handle:
        nonlocal wakeups
        wakeups += 1
        return call_soon_threadsafe(*args, **kwargs)

    gate = Gate()
    held = await gate.holding(store, Priority.REQUEST)
    resumed: list[str] = []

    async def write(key: str) -> None:
        resumed.append(await store.write(insert(key)))

    writes = [asyncio.create_task(write(f"k{i}")) for i in range(50)]
    await asyncio.sleep(0)
    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    gate.open.set()
    await asyncio.gather(*writes, held)
    assert wakeups == 1
    assert resumed == [f"k{i}" for i in range(50)]


async def test_a_failing_unit_rolls_back_alone(store: Store, tmp_path: Path) -> None:
    def fails_after_writing(tx: Tx) -> None:
        insert("doomed")(tx)
        raise RuntimeError("a bug")

    gate = Gate()
    held = await gate.holding(store, Priority.REQUEST)
    first = asyncio.create_task(store.write(insert("first")))
    doomed = asyncio.create_task(store.write(fails_after_writing))
    last = asyncio.create_task(store.write(insert("last")))
    await asyncio.sleep(0)
    gate.open.set()
    await held
    assert await first == "first"
    assert await last == "last"
    with pytest.raises(RuntimeError, match="a bug"):
        await doomed
    assert stored_keys(tmp_path / "group.db") == {"first", "last"}
    assert store.stats.failed_units == 1


class Refusing:
    """A unit that refuses, as a request for an unknown id does."""

    def __call__(self, tx: Tx) -> None:
        raise LookupError("no such code")


async def test_a_refused_unit_is_freed_at_once_not_by_the_garbage_collector(
    store: Store,
) -> None:
    """Its error goes to its caller with a traceback through the writer. Were that traceback
    to reach the unit's job again (and through it the error itself), the unit, its batch's
    units, their transactions and events would all wait for the collector."""
    gc.collect()
    gc.disable()
    try:
        unit = Refusing()
        freed = weakref.ref(unit)
        with contextlib.suppress(LookupError):
            await store.write(unit)
        del unit
        await store.write(insert("next"))  # the writer has left the refused unit's batch
        assert freed() is None
    finally:
        gc.enable()


async def test_a_unit_that_ends_the_transaction_fails_its_whole_batch(
    store: Store, tmp_path: Path
) -> None:
    """Nothing is reported committed that is not: when a unit's error takes the transaction
    with it (a full disk can), every unit of the batch gets the error."""

    def ends_everything(tx: Tx) -> None:
        tx.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    gate = Gate()
    held = await gate.holding(store, Priority.REQUEST)
    first = asyncio.create_task(store.write(insert("first")))
    breaking = asyncio.create_task(store.write(ends_everything))
    await asyncio.sleep(0)
    gate.open.set()
    for task in (held, first, breaking):
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            await task
    assert stored_keys(tmp_path / "group.db") == set()
    assert await store.write(insert("after")) == "after"  # the writer goes on
    assert stored_keys(tmp_path / "group.db") == {"after"}


async def test_requests_run_before_waiting_passes_and_each_pass_kind_in_its_order(
    store: Store,
) -> None:
    ran: list[str] = []
    gate = Gate()
    held = await gate.holding(store, Priority.PASS)
    passes = [
        asyncio.create_task(store.write(insert(f"pass{i}", ran), priority=Priority.PASS))
        for i in range(20)
    ]
    # A lock's look after its command was answered: what it now holds is recorded before other
    # locks' next commands are planned.
    follow_up = asyncio.create_task(
        store.write(insert("follow-up", ran), priority=Priority.FOLLOW_UP)
    )
    presence = asyncio.create_task(store.write(insert("online", ran), priority=Priority.PRESENCE))
    pool_pass = asyncio.create_task(store.write(insert("pool", ran), priority=Priority.POOL_PASS))
    await asyncio.sleep(0)
    request = asyncio.create_task(store.write(insert("request", ran)))
    pull = asyncio.create_task(store.write(insert("pull", ran), priority=Priority.URGENT))
    await asyncio.sleep(0)
    gate.open.set()
    await asyncio.gather(held, request, pull, pool_pass, presence, follow_up, *passes)
    assert ran[:5] == ["pull", "request", "pool", "online", "follow-up"]
    assert ran[5:] == [f"pass{i}" for i in range(20)]


async def test_a_pull_commits_without_waiting_for_the_requests_queued_before_it(
    store: Store,
) -> None:
    ran: list[str] = []
    gate, next_gate = Gate(), Gate()
    held = await gate.holding(store, Priority.REQUEST)
    held_next = asyncio.create_task(store.write(next_gate))  # the next request holds on
    requests = [asyncio.create_task(store.write(insert(f"r{i}", ran))) for i in range(10)]
    pull = asyncio.create_task(store.write(insert("pull", ran), priority=Priority.URGENT))
    await asyncio.sleep(0)
    gate.open.set()
    # The pull joins the open batch, which commits at once: the requests wait behind the gate.
    assert await asyncio.wait_for(pull, WAIT) == "pull"
    assert ran == ["pull"]
    next_gate.open.set()
    await asyncio.gather(held, held_next, *requests)
    assert ran == ["pull", *(f"r{i}" for i in range(10))]


async def test_a_pull_that_joins_a_batch_is_answered_before_the_units_that_ran_before_it(
    store: Store,
) -> None:
    """The commit releases every caller of the batch; the pull's goes first, not after the
    requests that happened to run before it."""
    released: list[str] = []
    first, last = Gate(), Gate()
    held = await first.holding(store, Priority.REQUEST)
    requests = [asyncio.create_task(store.write(insert(f"r{i}"))) for i in range(10)]
    held_last = asyncio.create_task(store.write(last))
    await asyncio.sleep(0)
    first.open.set()
    assert await asyncio.to_thread(last.entered.wait, WAIT)  # the requests ran: the batch is open
    pull = asyncio.create_task(store.write(insert("pull"), priority=Priority.URGENT))
    names = {pull: "pull", **{r: f"r{i}" for i, r in enumerate(requests)}}
    for task in names:
        task.add_done_callback(lambda done: released.append(names[done]))
    await asyncio.sleep(0)
    last.open.set()
    await asyncio.gather(held, held_last, pull, *requests)
    assert released == ["pull", *(f"r{i}" for i in range(10))]


async def test_a_request_joins_the_open_batch_and_commits_without_the_passes(
    store: Store,
) -> None:
    ran: list[str] = []
    gate, next_gate = Gate(), Gate()
    held = await gate.holding(store, Priority.PASS)  # a batch of passes is open
    held_next = asyncio.create_task(store.write(next_gate, priority=Priority.PASS))
    passes = [
        asyncio.create_task(store.write(insert(f"pass{i}", ran), priority=Priority.PASS))
        for i in range(5)
    ]
    request = asyncio.create_task(store.write(insert("request", ran)))
    await asyncio.sleep(0)
    gate.open.set()
    # Answered (committed) while the passes queued before it still wait behind the next gate.
    assert await asyncio.wait_for(request, WAIT) == "request"
    assert ran == ["request"]
    next_gate.open.set()
    await asyncio.gather(held, held_next, *passes)
    assert ran == ["request", *(f"pass{i}" for i in range(5))]


async def test_a_batch_that_changes_nothing_commits_nothing(store: Store) -> None:
    await store.write(insert("one"))
    commits = store.stats.commits
    for _ in range(5):
        await store.write(lambda tx: tx.fetchall("SELECT * FROM idempotency"))
        await store.write(
            lambda tx: tx.execute("UPDATE idempotency SET reply = reply WHERE key = 'none'"),
            priority=Priority.PASS,
        )
    assert store.stats.commits == commits


async def test_reads_do_not_wait_for_the_writer(store: Store) -> None:
    await store.write(insert("committed"))
    gate = Gate()
    held = await gate.holding(store, Priority.REQUEST)
    pending = asyncio.create_task(store.write(insert("pending")))
    rows = await asyncio.wait_for(store.fetchall("SELECT key FROM idempotency"), WAIT)
    assert [r["key"] for r in rows] == ["committed"]  # the last commit, not the open batch
    gate.open.set()
    await asyncio.gather(held, pending)


async def test_commit_listeners_run_before_the_caller_resumes_and_only_after_commit(
    store: Store,
) -> None:
    seen: list[int] = []
    store.on_commit(lambda tx: seen.append(len(tx.events)))

    def emits(tx: Tx) -> int:
        tx.emit(EventType.DEVICE_CONNECTED, "front_door")
        return len(seen)

    assert await store.write(emits) == 0  # the unit ran before the commit
    assert seen == [1]


async def test_the_writer_survives_a_batch_whose_own_statements_fail(
    store: Store, tmp_path: Path
) -> None:
    """Nothing a unit does can stop the writer thread: here one releases the savepoint the
    writer still needs, so the writer's own statement fails; every unit of that batch gets the
    error, none of it is committed, and the next write goes through."""

    def breaks_the_savepoint(tx: Tx) -> None:
        insert("broken")(tx)
        tx.execute("RELEASE unit")

    with pytest.raises(sqlite3.OperationalError):
        await store.write(breaks_the_savepoint)
    assert await store.write(insert("after")) == "after"
    assert stored_keys(tmp_path / "group.db") == {"after"}
