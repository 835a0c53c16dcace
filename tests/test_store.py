"""The SQLite store: durability settings, migrations, transactions, privacy."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.model import EventType
from gateway.store import Store, StoreError, Tx, db
from gateway.store.schema import MIGRATIONS


async def test_file_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = await Store.open(tmp_path / "sub" / "lockgate.db", ManualClock())
        await store.write(
            lambda tx: tx.execute(
                "INSERT INTO idempotency (key, endpoint, reply, created_at)"
                " VALUES ('k', 'e', '{}', 'now')"
            )
        )
        await store.close()
    finally:
        os.umask(old)
    for name in ("lockgate.db", "lockgate.db-wal", "lockgate.db-shm"):
        path = tmp_path / "sub" / name
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, name


async def test_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    store = await Store.open(path, ManualClock())
    await store.close()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_durability_settings_and_schema_version(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db", ManualClock())
    try:
        assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
        assert (await store.fetchone("PRAGMA synchronous"))[0] == 2  # type: ignore[index]
        assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
        version = (await store.fetchone("PRAGMA user_version"))[0]  # type: ignore[index]
        assert version == len(MIGRATIONS)
    finally:
        await store.close()
    # Opening again migrates nothing and keeps the data.
    store = await Store.open(tmp_path / "db", ManualClock())
    await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path, ManualClock())


async def test_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises((StoreError, sqlite3.DatabaseError)):
        await Store.open(path, ManualClock())


async def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db", ManualClock())
    committed: list[int] = []
    store.on_commit(lambda tx: committed.append(len(tx.events)))
    try:

        def failing_change(tx: Tx) -> None:
            tx.emit(EventType.DEVICE_CONNECTED, "front_door")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await store.write(failing_change)
        assert (await store.fetchone("SELECT COUNT(*) FROM events"))[0] == 0  # type: ignore[index]
        assert committed == []
        event = await store.write(lambda tx: tx.emit(EventType.DEVICE_CONNECTED, "front_door"))
        assert committed == [1]
        row = await store.fetchone("SELECT event_id, published FROM events")
        assert row is not None
        assert row["event_id"] == event.event_id
        assert row["published"] == 0
    finally:
        await store.close()


async def test_committed_data_survives_a_crash(tmp_path: Path) -> None:
    """A second connection (as after kill -9) sees every committed row, and no open one."""
    store = await Store.open(tmp_path / "db", ManualClock())
    await store.write(lambda tx: tx.emit(EventType.DEVICE_CONNECTED, "front_door"))
    with sqlite3.connect(tmp_path / "db") as other:
        assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    await store.close()


async def test_a_new_database_gets_small_pages_and_incremental_vacuum(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db", ManualClock())
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "db")) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == db.PAGE_SIZE == 1024
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == db.AUTO_VACUUM == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_old_database_is_converted_once_and_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lockgate.db"
    # A database as lockgate made it before issue 13: 4 KB pages, no auto-vacuum, WAL.
    with monkeypatch.context() as before:
        before.setattr(db, "PAGE_SIZE", 4096)
        before.setattr(db, "AUTO_VACUUM", 0)
        store = await Store.open(path, ManualClock())
        for n in range(3):
            await store.write(
                lambda tx, n=n: tx.emit(EventType.DEVICE_CONNECTED, f"lock-{n}")  # type: ignore[misc]
            )
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    logged: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(db.log, "info", lambda event, **kw: logged.append((event, kw)))

    store = await Store.open(path, ManualClock())
    try:
        rows = await store.fetchall("SELECT device_id FROM events ORDER BY seq")
        assert [r["device_id"] for r in rows] == ["lock-0", "lock-1", "lock-2"]
        assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
        await store.write(lambda tx: tx.emit(EventType.DEVICE_CONNECTED, "lock-3"))
    finally:
        await store.close()
    assert logged == [
        (
            "store.converted",
            {"old_page_size": 4096, "page_size": 1024, "old_auto_vacuum": 0, "auto_vacuum": 2},
        )
    ]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 1024
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for name in ("lockgate.db", "lockgate.db-wal", "lockgate.db-shm"):
        if (tmp_path / name).exists():
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    assert not (tmp_path / "lockgate.db-journal").exists()

    logged.clear()
    store = await Store.open(path, ManualClock())  # converted already: nothing to do
    try:
        row = await store.fetchone("SELECT COUNT(*) FROM events")
        assert row is not None
        assert row[0] == 4
    finally:
        await store.close()
    assert [event for event, _ in logged if event == "store.converted"] == []


async def test_ids_the_gateway_makes_are_time_ordered_uuids() -> None:
    ids = [db.new_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == value
    # Sorted by their first 48 bits (milliseconds): index entries made together stay together.
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)
