"""A full disk under the daemon's database, on any machine.

As root (here and in CI) the database lives on a tiny tmpfs that a filler file fills to the last
byte: writes fail with ENOSPC, exactly as on a full disk. Elsewhere the daemon's RLIMIT_FSIZE is
lowered to 0 while it runs (``prlimit`` on a process of one's own needs no privilege), so that
every write to a file fails with EFBIG; it ignores SIGXFSZ, which would otherwise kill it, and
logs through a pipe, since its log file would be refused too. Both give the space back with
:meth:`Disk.free`.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import resource
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tests.test_service import Daemon

#: The kinds this machine can run: both as root, the file-size cap alone otherwise.
KINDS = ("tmpfs", "file_size_cap") if os.geteuid() == 0 else ("file_size_cap",)


class Disk(abc.ABC):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @abc.abstractmethod
    def fill(self, daemon: Daemon) -> None:
        """No more room for the daemon's writes."""

    @abc.abstractmethod
    def free(self) -> None:
        """Room again."""


class Tmpfs(Disk):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._filler = directory / "filler"

    def fill(self, daemon: Daemon) -> None:
        chunk = b"\0" * 65536
        with self._filler.open("wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
            # The last partial chunk: fill the final bytes too, one at a time if need be.
            with contextlib.suppress(OSError):
                while f.write(b"\0"):
                    pass

    def free(self) -> None:
        self._filler.unlink()


class FileSizeCap(Disk):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._pid: int | None = None

    def fill(self, daemon: Daemon) -> None:
        assert daemon.proc is not None
        self._pid = daemon.proc.pid
        _, hard = resource.prlimit(self._pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self._pid, resource.RLIMIT_FSIZE, (0, hard))

    def free(self) -> None:
        assert self._pid is not None
        _, hard = resource.prlimit(self._pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self._pid, resource.RLIMIT_FSIZE, (hard, hard))


class CappableDaemon(Daemon):
    """The daemon as :class:`FileSizeCap` needs it: SIGXFSZ ignored, the log through a pipe."""

    def start(self, **popen: Any) -> None:
        super().start(stdout=subprocess.PIPE, preexec_fn=_ignore_sigxfsz, **popen)
        assert self.proc is not None
        assert self.proc.stdout is not None
        threading.Thread(target=_copy, args=(self.proc.stdout, self.log_file), daemon=True).start()


def _ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an ignored signal stays ignored over exec


def _copy(source: IO[bytes], target: Path) -> None:
    """Line by line as it comes, so the test can look for what the daemon has logged."""
    with source, target.open("ab", buffering=0) as out:
        while data := os.read(source.fileno(), 65536):
            out.write(data)


@contextlib.contextmanager
def small_disk(kind: str, directory: Path) -> Iterator[Disk]:
    directory.mkdir()
    if kind == "file_size_cap":
        yield FileSizeCap(directory)
        return
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(directory)], check=True
    )
    try:
        yield Tmpfs(directory)
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)
