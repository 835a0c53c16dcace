"""SQLite through aiosqlite: one writer with short ``BEGIN IMMEDIATE`` transactions, and one
read-only connection whose WAL snapshots never wait for the writer.

Why one writer: SQLite serialises writers anyway; one connection makes that explicit and cheap.
Why ``synchronous=FULL``: a success reply promises the change is durable, also across power loss
(practice.md). No network I/O ever happens inside a transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.clock import Clock, isoformat
from gateway.logs import get_logger
from gateway.model import Event, EventType
from gateway.store.schema import MIGRATIONS

log = get_logger("gateway.store")

Row = sqlite3.Row
Params = Sequence[Any] | dict[str, Any]


class StoreError(Exception):
    """The database cannot be used (corrupt, newer schema, unwritable)."""


class Tx:
    """One open write transaction; collects the events and changes it causes."""

    def __init__(self, conn: aiosqlite.Connection, clock: Clock) -> None:
        self.conn = conn
        self.now: datetime = clock.now()
        self.events: list[Event] = []
        self.devices_touched: set[str] = set()
        self.devices_to_reconcile: set[str] = set()

    # Each await is a round trip to aiosqlite's thread (~60 µs): one per statement, not three.

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement; returns the number of rows it changed."""
        cursor = await self.conn.execute(sql, params)
        return cursor.rowcount  # a finished DML cursor holds nothing: no close round trip

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self.conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    def touch(self, device_id: str) -> None:
        """Mark a device whose public object changes with this transaction."""
        self.devices_touched.add(device_id)

    def reconcile(self, device_id: str) -> None:
        """Mark a device whose desired state changes: its lock worker wakes after commit."""
        self.devices_touched.add(device_id)
        self.devices_to_reconcile.add(device_id)

    async def emit(
        self,
        event_type: EventType,
        device_id: str | None,
        access_code_id: str | None = None,
        **fields: Any,
    ) -> Event:
        """Store an event in the outbox, committed or rolled back with the change itself."""
        event = Event(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            occurred_at=self.now,
            device_id=device_id,
            access_code_id=access_code_id,
            fields=fields,
        )
        body = event.to_json()
        cursor = await self.conn.execute(
            "INSERT INTO events (event_id, event_type, occurred_at, device_id, access_code_id,"
            " body) VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.event_id,
                event_type.value,
                isoformat(event.occurred_at),
                device_id,
                access_code_id,
                json.dumps(body, separators=(",", ":")),
            ),
        )
        seq = cursor.lastrowid or 0
        stored = dataclasses.replace(event, seq=seq)
        self.events.append(stored)
        if device_id is not None:
            self.touch(device_id)
        return stored


CommitListener = Callable[[Tx], None]


class Store:
    """The database. Use :meth:`transaction` for writes and :meth:`fetchall` for reads."""

    def __init__(self, conn: aiosqlite.Connection, clock: Clock, path: Path) -> None:
        self._conn = conn
        self.clock = clock
        self.path = path
        self._write_lock = asyncio.Lock()
        # Reads go through a second connection: under WAL they see the last commit without
        # waiting for the writer, so API reads are not queued behind lock-worker passes.
        self._reader: aiosqlite.Connection | None = None
        self._read_lock = asyncio.Lock()
        self._listeners: list[CommitListener] = []

    @classmethod
    async def open(cls, path: str | Path, clock: Clock) -> Store:
        path = Path(path)
        if str(path) != ":memory:":
            _create_private(path)
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        store = cls(conn, clock, path)
        try:
            await store._prepare()
            if str(path) != ":memory:":
                reader = await aiosqlite.connect(str(path), isolation_level=None)
                reader.row_factory = sqlite3.Row
                await _configure(reader, "PRAGMA query_only=ON")
                store._reader = reader
        except sqlite3.Error as exc:
            await store.close()
            raise StoreError(f"cannot use database {path}: {exc}") from exc
        except BaseException:
            await store.close()
            raise
        return store

    async def _prepare(self) -> None:
        await _configure(self._conn)
        row = await self._fetchone_raw("PRAGMA quick_check")
        if row is None or row[0] != "ok":
            raise StoreError(f"database {self.path} failed its integrity check: {row and row[0]}")
        await self._migrate()

    async def _migrate(self) -> None:
        row = await self._fetchone_raw("PRAGMA user_version")
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise StoreError(
                f"database {self.path} has schema version {version}, newer than this "
                f"lockgate knows ({len(MIGRATIONS)}): refusing to touch it"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript would commit on its own; run the statements inside one transaction.
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    await self._conn.execute(statement)
                await self._conn.execute(f"PRAGMA user_version = {number}")
                await self._conn.execute("COMMIT")
            except BaseException:
                await asyncio.shield(self._conn.execute("ROLLBACK"))
                raise
            log.info("store.migrated", version=number)

    async def _fetchone_raw(self, sql: str) -> Row | None:
        async with self._conn.execute(sql) as cursor:
            return await cursor.fetchone()

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        await self._conn.close()

    def on_commit(self, listener: CommitListener) -> None:
        """``listener(tx)`` runs after every successful commit (outbox, publishers, reconciler)."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction; commits on normal exit, rolls back on any exception."""
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            tx = Tx(self._conn, self.clock)
            try:
                yield tx
            except BaseException:
                # Shielded: a cancelled caller must not leave the transaction open.
                await asyncio.shield(self._conn.execute("ROLLBACK"))
                raise
            await asyncio.shield(self._conn.execute("COMMIT"))
        for listener in self._listeners:
            try:
                listener(tx)
            except Exception:
                log.exception("store.listener_failed")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        """A consistent snapshot of the last commit; never sees half of a write transaction."""
        reader = self._reader
        if reader is None:  # in-memory database: one connection, so wait for the writer
            async with self._write_lock:
                yield Tx(self._conn, self.clock)
            return
        async with self._read_lock:
            await reader.execute("BEGIN")
            try:
                yield Tx(reader, self.clock)
            finally:
                await asyncio.shield(reader.execute("COMMIT"))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self.reading() as tx:
            return await tx.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self.reading() as tx:
            return await tx.fetchone(sql, params)


async def _configure(conn: aiosqlite.Connection, *extra: str) -> None:
    """Per-connection settings (WAL itself is stored in the file)."""
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=5000",
        *extra,
    ):
        await conn.execute(pragma)


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
