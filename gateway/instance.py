"""One gateway per database.

Two gateways on one database would program the same locks against each other and, sharing the
MQTT client id, knock each other off the broker. The first holds an exclusive ``flock`` on
``<database>.lock`` for as long as it runs (the kernel drops it when the process dies, also by
``kill -9``, so a crash never leaves a stale lock behind); a second finds it taken and stops
before it opens the database or connects anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gateway.store import StoreError


class AlreadyRunning(Exception):
    """Another gateway holds the database."""


def lock_path(database: str | Path) -> Path:
    return Path(f"{database}.lock")


@contextlib.contextmanager
def sole_instance(database: str | Path) -> Iterator[None]:
    """Hold the database's instance lock for the block; raise :class:`AlreadyRunning` at once
    if another process (or another gateway in this one) holds it. An in-memory database needs
    none."""
    if str(database) == ":memory:":
        yield
        return
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot use database {database}: {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunning(
                f"another lockgate (pid {holder}) is already running on database {database}; "
                "stop it first (systemctl stop lockgate), or give this one its own database"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock if this process held it
