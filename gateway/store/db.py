"""SQLite with group commit: one writer thread, one reader thread, and units of work.

A *unit* is a plain function ``unit(tx) -> result`` that runs all its statements on the
database thread, with no await between them. The writer thread takes every unit that is
waiting, runs them back to back in one ``BEGIN IMMEDIATE`` transaction, each inside its own
savepoint (a unit that raises rolls back alone), commits once with ``synchronous=FULL`` and only
then releases the callers: a success reply still means durable, while 64 requests in flight
share one fsync instead of paying 64.

Requests come first. A pull (``Priority.URGENT``: a guest may be at the door) goes before
everything, and a batch holding one takes nothing else and commits at once. Other API units
(``Priority.REQUEST``) go before any lock-worker pass (``Priority.POOL_PASS``, then the locks
found online at start, ``Priority.PRESENCE``, then the look that follows a command a lock has
answered, ``Priority.FOLLOW_UP``, then ``Priority.PASS``); a batch stops taking
passes as soon as a request is in it or :data:`PASS_BUDGET` has been spent, and a request that
arrives meanwhile joins the open batch. A pull therefore waits for at most one running unit and
one commit, never for a queue of them.
A batch that changed nothing is rolled back: a pass that finds nothing to do costs no write.

Reads run on a second connection in its own thread: under WAL they see the last commit and
never wait for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

from gateway.clock import Clock, isoformat
from gateway.domain import compact_json
from gateway.logs import get_logger
from gateway.model import Event, EventType
from gateway.store.schema import MIGRATIONS

log = get_logger("gateway.store")

Row = sqlite3.Row
Params = Sequence[Any] | dict[str, Any]
T = TypeVar("T")

#: How long one batch may keep taking lock-worker passes before it commits (seconds). It bounds
#: how long a pass waits for its commit, not a request: a request joins the open batch, which
#: then takes no more passes and commits. Long enough that the fsync (milliseconds on an SD card)
#: is shared by many passes when thousands of locks come online at once.
PASS_BUDGET = 0.05
#: At most this many units share one commit (bounds the time a batch holds its callers).
MAX_BATCH = 512
#: After a PIN was scrubbed, the WAL is truncated at most this often (seconds).
SCRUB_CHECKPOINT_EVERY = 10.0
#: The database's page size (bytes). Every commit writes each page it touches whole to the WAL,
#: and a checkpoint writes it again: most of what a commit touches is one small row or index
#: entry per page, so small pages are what spares an SD card (issue 13; docs/benchmarks.md).
PAGE_SIZE = 1024
#: Freed pages can be given back to the file system (``PRAGMA incremental_vacuum``).
AUTO_VACUUM = 2  # INCREMENTAL


def new_id() -> str:
    """A new id for a row the gateway creates (an event, an access code): a UUID of version 7
    (RFC 9562), whose first 48 bits are the time in milliseconds and the other 74 random.

    Ids made close in time sort together, so a commit's new rows land in the same few pages of
    every index on the id, where random (version 4) ids put each one on a page of its own: that
    was half of the pages a commit wrote (issue 13)."""
    millis = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    version, variant = 0x7 << 76, 0b10 << 62
    value = millis << 80 | version | (rand >> 62 & 0xFFF) << 64 | variant | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


class StoreError(Exception):
    """The database cannot be used (corrupt, newer schema, unwritable)."""


class Priority(IntEnum):
    URGENT = 0  # a pull: a guest may be at the door; its batch takes nothing else
    REQUEST = 1  # an API request (or anything a person waits for)
    POOL_PASS = 2  # a pass of a lock with a backup pool: filled before the others
    PRESENCE = 3  # locks found online at start (gateway.reconciler.Presence): small units
    #: The look right after a command was answered: what the lock now holds is recorded (and
    #: its event sent) before other locks' next commands are planned, not behind all of them.
    FOLLOW_UP = 4
    PASS = 5  # a lock worker's pass, the outbox's bookkeeping: may wait a few milliseconds


class Tx:
    """One unit's view of the open transaction; collects the events and changes it causes.

    Used only on the database thread, inside a unit: every method runs its statement at once."""

    def __init__(self, conn: sqlite3.Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        #: A PIN was blanked in this unit: the writer checkpoints the WAL soon (old page
        #: images holding it live there until then).
        self.scrubbed = False
        self.events: list[Event] = []
        self.devices_touched: set[str] = set()
        self.devices_to_reconcile: set[str] = set()

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement; returns the number of rows it changed."""
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self.conn.executemany(sql, rows)

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def touch(self, device_id: str) -> None:
        """Mark a device whose public object (``P/devices/<id>``) may change with this unit: its
        row, its own errors and warnings, or its backup counts. Nothing else about its codes
        shows there, so their changes do not touch it: the publisher would read and encode the
        object again for nothing (most of a burst's codes are not backups)."""
        self.devices_touched.add(device_id)

    def reconcile(self, device_id: str) -> None:
        """Mark a device whose desired state changes: its lock worker wakes after commit."""
        self.devices_to_reconcile.add(device_id)

    def emit(
        self,
        event_type: EventType,
        device_id: str | None,
        access_code_id: str | None = None,
        **fields: Any,
    ) -> Event:
        """Store an event in the outbox, committed or rolled back with the change itself."""
        event = Event(
            event_id=new_id(),
            event_type=event_type,
            occurred_at=self.now,
            device_id=device_id,
            access_code_id=access_code_id,
            fields=fields,
        )
        cursor = self.conn.execute(
            "INSERT INTO events (event_id, event_type, occurred_at, device_id, access_code_id,"
            " body) VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.event_id,
                event_type.value,
                isoformat(event.occurred_at),
                device_id,
                access_code_id,
                compact_json(event.to_json()),
            ),
        )
        stored = dataclasses.replace(event, seq=cursor.lastrowid or 0)
        self.events.append(stored)
        return stored


Unit = Callable[[Tx], T]
CommitListener = Callable[[Tx], None]


@dataclasses.dataclass(slots=True)
class WriterStats:
    """What the writer did since start: the wear and batching figures benchmarks report."""

    units: int = 0
    commits: int = 0  # batches that changed something (each one fsync of the WAL)
    failed_units: int = 0


class _Job(Generic[T]):
    __slots__ = ("committed", "context", "future", "loop", "unit")

    def __init__(
        self, unit: Unit[T], loop: asyncio.AbstractEventLoop, committed: CommitListener
    ) -> None:
        self.unit = unit
        self.loop = loop
        self.committed = committed
        self.context = contextvars.copy_context()  # the caller's log context, on the thread
        self.future: asyncio.Future[T] = loop.create_future()


class _Writer:
    """The one thread that writes: group commit with requests first (see the module doc)."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock
        self._ready = threading.Condition()
        self._queues: tuple[deque[_Job[Any]], ...] = tuple(deque() for _ in Priority)
        self._closing = False
        self._running: list[_Job[Any]] = []  # the open batch's units, until they are settled
        self.stats = WriterStats()
        self._scrub_pending = False
        self._last_checkpoint = float("-inf")
        self._thread = threading.Thread(target=self._main, name="lockgate-db-writer", daemon=True)
        self._thread.start()

    def submit(self, job: _Job[Any], priority: Priority) -> None:
        with self._ready:
            if self._closing:
                raise StoreError("the database is closed")
            self._queues[priority].append(job)
            self._ready.notify()

    def close(self) -> None:
        """Finish every unit already submitted, then stop (blocking: call from a thread)."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()

    def _main(self) -> None:
        queues = self._queues
        while True:
            with self._ready:
                while not (any(queues) or self._closing):
                    # A scrub's checkpoint that was held back comes due even on an idle site.
                    due = self._checkpoint_due_in() if self._scrub_pending else None
                    if due is not None and due <= 0:
                        break
                    self._ready.wait(due)
                idle = not any(queues)
                if idle and self._closing:
                    return
            if idle:
                self._checkpoint_if_scrubbed()  # outside the lock: submitters never wait on it
                continue
            self._running = []
            try:
                self._batch()
            except sqlite3.Error as exc:
                # The batch's own statements failed (SAVEPOINT, RELEASE, ROLLBACK TO: a disk
                # error): nothing of it is committed, every unit in it says so, the thread
                # goes on with the next batch. It must never die: callers would wait forever.
                log.error("store.batch_failed", reason=str(exc))  # noqa: TRY400
                with contextlib.suppress(sqlite3.Error):
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                for job in self._running:
                    _settle(job, None, None, exc)

    def _next(
        self, started: float, taken: int, top: Priority
    ) -> tuple[_Job[Any], Priority] | None:
        """The next unit for this batch, most urgent first. ``top``: the most urgent priority
        already in the batch. A batch with a pull takes only pulls; one with a request takes
        no passes; passes are taken only while the budget lasts."""
        with self._ready:
            if taken >= MAX_BATCH:
                return None
            for priority, queue in zip(Priority, self._queues, strict=True):
                if queue and _may_join(priority, top, time.perf_counter() - started):
                    return queue.popleft(), priority
                if queue:
                    return None  # a more urgent kind waits: nothing less urgent goes first
        return None

    def _batch(self) -> None:
        conn = self._conn
        done: list[tuple[Priority, _Job[Any], Tx, Any]] = []
        started = time.perf_counter()
        before = conn.total_changes
        top = Priority.PASS
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail_next(exc)
            return
        while (taken := self._next(started, len(done), top)) is not None:
            job, priority = taken
            self._running.append(job)
            top = min(top, priority)
            tx = Tx(conn, self._clock.now())
            conn.execute("SAVEPOINT unit")
            try:
                result = job.context.run(job.unit, tx)
            except BaseException as exc:  # noqa: BLE001 (it is the caller's, handed over)
                self.stats.failed_units += 1
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    self._running.remove(job)
                    _settle(job, None, None, exc)
                    # The error's traceback holds this frame: were the frame to hold the job
                    # (and so, through its future, the error), they would make a reference
                    # cycle, and the whole batch would wait for the garbage collector.
                    del job, taken
                    continue
                # The error ended the whole transaction (a full disk may): the batch is lost.
                for other in self._running:
                    _settle(other, None, None, exc)
                return
            conn.execute("RELEASE unit")
            done.append((priority, job, tx, result))
        self.stats.units += len(done)
        try:
            if conn.total_changes == before:
                conn.execute("ROLLBACK")  # nothing to write: no fsync
            else:
                conn.execute("COMMIT")
                self.stats.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, job, _, _ in done:
                _settle(job, None, None, exc)
            return
        self._running = []
        # Most urgent first: a pull that joined a batch of requests is not released after them.
        done.sort(key=lambda unit: unit[0])
        _settle_all([(job, tx, result) for _, job, tx, result in done])
        if any(tx.scrubbed for _, _, tx, _ in done):
            self._scrub_pending = True
        self._checkpoint_if_scrubbed()  # after the callers are on their way: they need not wait

    def _checkpoint_due_in(self) -> float:
        return self._last_checkpoint + SCRUB_CHECKPOINT_EVERY - time.monotonic()

    def _checkpoint_if_scrubbed(self) -> None:
        """After a scrub, the WAL still holds the old page images: truncate it, at most once
        per :data:`SCRUB_CHECKPOINT_EVERY` (a busy site scrubs often; an SD card wears)."""
        if not self._scrub_pending or self._checkpoint_due_in() > 0:
            return
        self._last_checkpoint = time.monotonic()
        try:
            row = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("store.checkpoint_failed", reason=str(exc))
            return
        self._scrub_pending = bool(row and row[0])  # busy: a reader held it back, try again

    def _fail_next(self, exc: BaseException) -> None:
        """No transaction could begin: the oldest waiting unit gets the error, not a hang."""
        with self._ready:
            queue = next((q for q in self._queues if q), None)
            job = queue.popleft() if queue else None
        if job is not None:
            _settle(job, None, None, exc)


def _may_join(priority: Priority, top: Priority, elapsed: float) -> bool:
    """Whether a unit of ``priority`` may join a batch whose most urgent unit is ``top``."""
    if priority is Priority.URGENT:
        return True
    if top is Priority.URGENT:
        return False  # commit the pull now
    if priority is Priority.REQUEST:
        return True
    return top > Priority.REQUEST and elapsed < PASS_BUDGET


def _settle(job: _Job[Any], tx: Tx | None, result: Any, exc: BaseException | None) -> None:
    """Hand a unit's outcome to its caller's loop (from the database thread)."""
    with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown): nobody waits
        job.loop.call_soon_threadsafe(_deliver, job, tx, result, exc)


def _settle_all(committed: list[tuple[_Job[Any], Tx, Any]]) -> None:
    """A committed batch's outcomes, in order, with one wake-up of each caller's loop: a
    wake-up is a write to the loop's pipe and a hand-over of the GIL, and a batch in a burst
    holds dozens of units."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job[Any], Tx, Any]]] = {}
    for item in committed:
        by_loop.setdefault(item[0].loop, []).append(item)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown): nobody waits
            loop.call_soon_threadsafe(_deliver_all, items)


def _deliver_all(items: list[tuple[_Job[Any], Tx, Any]]) -> None:
    for job, tx, result in items:
        try:
            _deliver(job, tx, result, None)
        except Exception:  # never: but the units after it must not wait forever
            log.exception("store.deliver_failed")


def _deliver(job: _Job[Any], tx: Tx | None, result: Any, exc: BaseException | None) -> None:
    """On the caller's loop: the listeners of a committed unit, then its caller's answer."""
    if tx is not None:  # committed: listeners run even if the caller was cancelled
        job.committed(tx)
    if job.future.done():  # the caller was cancelled: the unit ran all the same
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


class Store:
    """The database. :meth:`write` runs a unit in a group commit; :meth:`read` on a snapshot."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        reader: sqlite3.Connection | None,
        clock: Clock,
        path: Path,
    ) -> None:
        self.clock = clock
        self.path = path
        self._writer = _Writer(conn, clock)
        self._writer_conn = conn
        self._reader = reader  # None for an in-memory database: reads go through the writer
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="lockgate-db-reader")
        self._listeners: list[CommitListener] = []
        #: The gateway's event loop, where listeners run (a unit may come from another loop:
        #: the urgent lane's, ``gateway.api.urgent_lane``).
        self._home: asyncio.AbstractEventLoop | None = None

    @property
    def stats(self) -> WriterStats:
        return self._writer.stats

    @classmethod
    async def open(cls, path: str | Path, clock: Clock) -> Store:
        path = Path(path)
        conn, reader = await asyncio.to_thread(_open_connections, path)
        store = cls(conn, reader, clock, path)
        store._home = asyncio.get_running_loop()
        return store

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._writer.close()
        self._writer_conn.close()
        self._read_thread.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()

    def on_commit(self, listener: CommitListener) -> None:
        """``listener(tx)`` runs on the loop after every committed unit that changed something
        (outbox, publishers, reconciler), before the unit's caller resumes."""
        self._listeners.append(listener)

    async def write(self, unit: Unit[T], *, priority: Priority = Priority.REQUEST) -> T:
        """Run ``unit(tx)`` in the next group commit; returns once that commit is durable.

        If ``unit`` raises, its own changes are rolled back and the exception is raised here;
        the other units of the batch are not affected."""
        return await self.submit(unit, priority=priority)

    def submit(self, unit: Unit[T], *, priority: Priority = Priority.REQUEST) -> asyncio.Future[T]:
        """:meth:`write` for a caller that goes on meanwhile: the future is done once the
        commit holding ``unit`` is durable (or the unit failed)."""
        loop = asyncio.get_running_loop()
        home = self._home
        committed = self._committed if home in (None, loop) else self._committed_at_home
        job = _Job(unit, loop, committed)
        self._writer.submit(job, priority)
        return job.future

    def _committed_at_home(self, tx: Tx) -> None:
        """A unit from another loop: its caller resumes there at once, while the listeners
        run on the gateway's loop, as for every other unit."""
        assert self._home is not None
        with contextlib.suppress(RuntimeError):  # the gateway's loop is gone (shutdown)
            self._home.call_soon_threadsafe(self._committed, tx)

    def _committed(self, tx: Tx) -> None:
        for listener in self._listeners:
            try:
                listener(tx)
            except Exception:
                log.exception("store.listener_failed")

    async def read(self, unit: Unit[T]) -> T:
        """Run ``unit(tx)`` on a consistent snapshot of the last commit, never waiting for the
        writer (an in-memory database has one connection: there it goes through the writer)."""
        reader = self._reader
        if reader is None:
            return await self.write(unit)
        clock = self.clock

        def snapshot() -> T:
            reader.execute("BEGIN")
            try:
                return unit(Tx(reader, clock.now()))
            finally:
                reader.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._read_thread, snapshot)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.read(lambda tx: tx.fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self.read(lambda tx: tx.fetchone(sql, params))


# -- opening ---------------------------------------------------------------------------------


def _open_connections(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection | None]:
    """The writer (checked and migrated) and, for a file, the reader (blocking: in a thread)."""
    memory = str(path) == ":memory:"
    if not memory:
        _create_private(path)
    conn = _connect(path)
    reader = None
    try:
        _configure(conn)
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise StoreError(f"database {path} failed its integrity check: {row and row[0]}")
        _set_layout(conn, path)
        _migrate(conn, path)
        if not memory:
            reader = _connect(path)
            _configure(reader, "PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot use database {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn, reader


def _connect(path: Path) -> sqlite3.Connection:
    try:
        # Autocommit mode (isolation_level None): transactions are the writer's, explicit.
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    row = conn.execute("PRAGMA user_version").fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise StoreError(
            f"database {path} has schema version {version}, newer than this "
            f"lockgate knows ({len(MIGRATIONS)}): refusing to touch it"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript would commit on its own; run the statements inside one transaction.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("store.migrated", version=number)


def _set_layout(conn: sqlite3.Connection, path: Path) -> None:
    """The file's own settings: :data:`PAGE_SIZE`, :data:`AUTO_VACUUM` and WAL (the writer's
    connection, before anything else uses the file).

    A new database gets them before its first table (a page size cannot change afterwards in
    WAL mode). One made with other settings (4 KB pages, no auto-vacuum: before issue 13) is
    rewritten once, whole, by a ``VACUUM`` outside WAL: atomic under its rollback journal, so
    a crash in the middle leaves the old file, converted at the next start."""
    settings = _layout(conn)
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:  # new: nothing written yet
        # In this order: the page size first (set after auto_vacuum, it is not taken).
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute(f"PRAGMA auto_vacuum={AUTO_VACUUM}")
    elif settings != (PAGE_SIZE, AUTO_VACUUM) and str(path) != ":memory:" and _known(conn):
        conn.execute("PRAGMA journal_mode=DELETE")  # checkpoints the WAL and removes it
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute(f"PRAGMA auto_vacuum={AUTO_VACUUM}")
        # The copy VACUUM builds holds every PIN: in memory, not in a temporary file.
        conn.execute("PRAGMA temp_store=MEMORY")
        try:
            conn.execute("VACUUM")
        finally:
            conn.execute("PRAGMA temp_store=DEFAULT")
        log.info(
            "store.converted",
            old_page_size=settings[0],
            page_size=PAGE_SIZE,
            old_auto_vacuum=settings[1],
            auto_vacuum=AUTO_VACUUM,
        )
    conn.execute("PRAGMA journal_mode=WAL")


def _known(conn: sqlite3.Connection) -> bool:
    """Whether this lockgate knows the file's schema (a newer one is refused, untouched)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0]) <= len(MIGRATIONS)


def _layout(conn: sqlite3.Connection) -> tuple[int, int]:
    """The page size and auto-vacuum mode the file has."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    auto_vacuum = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    return int(page_size), int(auto_vacuum)


def _configure(conn: sqlite3.Connection, *extra: str) -> None:
    """Per-connection settings (WAL, the page size and auto-vacuum are stored in the file:
    :func:`_set_layout`)."""
    for pragma in (
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=5000",
        # Deleted and overwritten content is zeroed, not left in free pages: no PIN outlives
        # its code in the file (gateway.store.scrub).
        "PRAGMA secure_delete=ON",
        *extra,
    ):
        conn.execute(pragma)


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does, so PINs are never world-readable.

    A directory or file the gateway may not write (read-only, wrong owner) is a StoreError:
    the one-line message an operator can act on, not a traceback.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot open database {path}: {exc.strerror or exc}") from exc


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our migrations hold no ';' inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
