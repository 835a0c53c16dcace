"""SD-card wear (issue 13, point 8): what the gateway writes, and how often it forces it to disk,
per code it programs. Bytes from ``/proc/<pid>/io``; fsyncs counted by ``strace`` attached to
the gateway with a seccomp filter (only the traced calls stop the process, so the figures of the
burst it watches stay honest). Without strace, only the bytes are reported."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

_CALLS = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$", re.M)


def io_counters(pid: int | str = "self") -> dict[str, int]:
    """``/proc/<pid>/io``: ``write_bytes`` (sent to the storage layer), ``wchar`` (written)."""
    fields = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = int(value)
    return fields


@dataclass
class Wear:
    write_bytes: int
    wchar: int
    fsyncs: int | None  # None: strace is not on this machine (or may not attach)


class WearMeter:
    """Started before a phase, finished after it: the gateway's writes and fsyncs meanwhile."""

    def __init__(self, pid: int, workdir: Path) -> None:
        self._pid = pid
        self._summary = workdir / "strace-fsync.txt"
        self._strace: asyncio.subprocess.Process | None = None
        self._before = io_counters(pid)

    async def start(self) -> None:
        if shutil.which("strace") is None:
            return
        self._strace = await asyncio.create_subprocess_exec(
            "strace",
            "-f",
            "-c",
            "--seccomp-bpf",
            "-e",
            "trace=fsync,fdatasync",
            "-o",
            str(self._summary),
            "-p",
            str(self._pid),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._before = io_counters(self._pid)

    async def finish(self) -> Wear:
        after = io_counters(self._pid)
        fsyncs: int | None = None
        if self._strace is not None:
            with contextlib.suppress(ProcessLookupError):
                self._strace.send_signal(signal.SIGINT)  # detach: it writes its summary
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._strace.wait()
            if self._summary.exists():
                text = self._summary.read_text()
                found = _CALLS.findall(text)
                fsyncs = sum(int(calls) for calls, _ in found) if "total" in text else None
        return Wear(
            write_bytes=after["write_bytes"] - self._before["write_bytes"],
            wchar=after["wchar"] - self._before["wchar"],
            fsyncs=fsyncs,
        )
