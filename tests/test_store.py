"""The SQLite store: durability settings, migrations, transactions, privacy."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.model import EventType
from gateway.store import Store, StoreError, Tx
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
