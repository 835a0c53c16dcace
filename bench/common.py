"""What every benchmark shares: a private site, timing statistics, tables, figures and the machine.

A *site* is everything ``lockgate demo`` runs, in one process and one event loop: a private
mosquitto on a free port, the simulated locks on their own MQTT connection, the real gateway
with its SQLite database in a temporary directory, and an API client speaking MQTT to it.
Benchmarks measure through the same MQTT API a real client uses; they only peek at the gateway
object (``settled()``, the store) to know when background work is finished.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.sim_settings import with_generated_devices
from gateway import site
from gateway.broker import mosquitto_binary
from gateway.client import ApiClient
from gateway.clock import SystemClock
from gateway.config import Config, parse_config
from gateway.logs import configure_logging
from gateway.model import Json
from gateway.site import Site

#: Start-up and shutdown of one component; a benchmark's own phases take their own limits.
STARTUP_TIMEOUT = 60.0
#: The simulated lock's answer delay, as in the simulator's own default: a fast, healthy radio.
SIM_LATENCY = "20ms"


# --------------------------------------------------------------------------------------------
# The site


class BenchError(Exception):
    """A benchmark could not measure what it set out to (a refused request, a timeout)."""


def bench_config(raw: Mapping[str, Any]) -> Config:
    """``raw`` as it would be written in YAML, with ``simulator.generate``'s locks made configured
    devices, so that the gateway manages them too."""
    return with_generated_devices(parse_config({"hub_id": "bench", **raw}, base_dir=Path.cwd()))


@contextlib.contextmanager
def private_config(raw: Mapping[str, Any]) -> Iterator[Config]:
    """A config for ``raw`` on its own mosquitto and a fresh database, both gone afterwards."""
    with site.private_config(bench_config(raw)) as config:
        yield config


def daemon_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` as ``lockgate run -c FILE`` needs it: the daemon ignores the ``simulator:``
    section, so ``simulator.generate``'s locks are listed as devices (after ``raw``'s own), and
    ``generate`` is dropped (``lockgate sim`` keeps reading ``raw`` itself)."""
    config = bench_config(raw)
    explicit = list(raw.get("devices", []))
    generated = config.devices[len(explicit) :]
    simulator = {k: v for k, v in dict(raw.get("simulator", {})).items() if k != "generate"}
    return {
        **raw,
        "devices": explicit
        + [
            {"device_id": d.device_id, "driver": d.driver, **dataclasses.asdict(d.options)}
            for d in generated
        ],
        "simulator": simulator,
    }


@asynccontextmanager
async def private_site(raw: Mapping[str, Any], *, settle: bool = True) -> AsyncIterator[Site]:
    """The site ``lockgate demo`` runs, on the real clock, a private broker and database."""
    async with site.private_site(bench_config(raw), SystemClock(), settle=settle) as running:
        yield running


# --------------------------------------------------------------------------------------------
# Measuring


def now() -> float:
    """Seconds on a monotonic clock with sub-microsecond resolution."""
    return time.perf_counter()


@dataclass(frozen=True, slots=True)
class Latency:
    """Summary of latency samples, in milliseconds."""

    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            raise BenchError("no samples")
        ms = sorted(s * 1000 for s in seconds)
        return cls(
            p50=percentile(ms, 50),
            p95=percentile(ms, 95),
            p99=percentile(ms, 99),
            max=ms[-1],
        )


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values: a value that was really measured."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


async def sequential(call: Callable[[int], Awaitable[object]], count: int) -> list[float]:
    """``count`` calls one after the other; the latency of each."""
    samples: list[float] = []
    for i in range(count):
        started = now()
        await call(i)
        samples.append(now() - started)
    return samples


async def concurrent(call: Callable[[int], Awaitable[object]], count: int, in_flight: int) -> float:
    """``count`` calls with ``in_flight`` of them outstanding at any time; the seconds it took."""
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:  # a shared iterator: each number is taken by exactly one worker
            await call(i)

    started = now()
    async with asyncio.TaskGroup() as tg:
        for n in range(min(in_flight, count)):
            tg.create_task(worker(), name=f"bench-worker:{n}")
    return now() - started


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.01
) -> float:
    """Poll ``condition`` until true; the seconds that took. Raises BenchError on timeout."""
    started = now()
    while not await condition():
        if now() - started > timeout:
            raise BenchError(f"not reached within {timeout:g}s")
        await asyncio.sleep(interval)
    return now() - started


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process, in MiB."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    current = math.nan
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        current = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    return current, peak_kib / 1024


class ProcessSampler:
    """Another process's resident set and threads, sampled from ``/proc/<pid>/status``; the
    highest of each (``VmHWM`` is the kernel's own peak)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.interval = interval
        self.rss_kib = 0
        self.hwm_kib = 0
        self.threads = 0

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            for line in self.status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "VmRSS":
                    self.rss_kib = max(self.rss_kib, int(value.split()[0]))
                elif key == "VmHWM":
                    self.hwm_kib = max(self.hwm_kib, int(value.split()[0]))
                elif key == "Threads":
                    self.threads = max(self.threads, int(value))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Result:
    """One benchmark run: its parameters, its figures, and which figure ranks runs."""

    name: str
    params: dict[str, Any]
    figures: dict[str, float]
    units: dict[str, str]
    headline: str  # the figure that decides which of several runs was the better one
    higher_is_better: bool
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (label, value, unit)
    notes: list[str] = field(default_factory=list)  # what was noticed while measuring

    def add(self, key: str, label: str, value: float, unit: str, digits: int = 1) -> None:
        self.figures[key] = value
        self.units[key] = unit
        self.rows.append((label, f"{value:,.{digits}f}", unit))

    def add_latency(self, key: str, label: str, latency: Latency) -> None:
        for stat in ("p50", "p95", "p99", "max"):
            self.add(f"{key}_{stat}_ms", f"{label} {stat}", getattr(latency, stat), "ms", 2)

    def better_than(self, other: Result) -> bool:
        mine, theirs = self.figures[self.headline], other.figures[other.headline]
        return mine > theirs if self.higher_is_better else mine < theirs

    def to_json(self) -> Json:
        return {
            "name": self.name,
            "params": self.params,
            "figures": self.figures,
            "units": self.units,
            "headline": self.headline,
            "higher_is_better": self.higher_is_better,
            "rows": [list(row) for row in self.rows],
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: Json) -> Result:
        return cls(
            name=data["name"],
            params=data["params"],
            figures=data["figures"],
            units=data["units"],
            headline=data["headline"],
            higher_is_better=data["higher_is_better"],
            rows=[(r[0], r[1], r[2]) for r in data["rows"]],
            notes=list(data.get("notes", [])),
        )


def new_result(name: str, params: dict[str, Any], headline: str, higher: bool) -> Result:
    return Result(name, params, {}, {}, headline, higher)


def print_table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """A plain text table: first column left-aligned, the others right-aligned."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    print(f"\n{title}")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    sys.stdout.flush()


def print_result(result: Result) -> None:
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    print_table(f"{result.name} ({params})", result.rows, ("measure", "value", "unit"))
    for note in result.notes:
        print(f"note: {note}")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# The machine


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, Python, mosquitto, load, date."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    mosquitto = "unknown"
    with contextlib.suppress(OSError, RuntimeError, subprocess.SubprocessError):
        out = subprocess.run(  # noqa: PLW1510 (mosquitto -h exits 3 by design)
            [mosquitto_binary(), "-h"], capture_output=True, text=True, timeout=5
        ).stdout
        mosquitto = out.splitlines()[0].strip() if out else "unknown"
    return {
        "code": code_version(),
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "mosquitto": mosquitto,
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def code_version() -> str:
    """The commit the measured code comes from, marked ``+changes`` if the gateway's or the
    drivers' files differ from it; ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "gateway", "drivers"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+changes" if changes else commit


# --------------------------------------------------------------------------------------------
# The command line every benchmark shares


def bench_main(
    name: str, run: Callable[[bool], Coroutine[Any, Any, Result]], argv: Sequence[str] | None = None
) -> int:
    """``--quick`` and ``--json FILE``: run the benchmark once, print and store its figures."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--quick", action="store_true", help="a small run (seconds)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    return report_run(lambda: run(args.quick), args.json)


def report_run(
    run: Callable[[], Coroutine[Any, Any, Result]], json_file: Path | None = None
) -> int:
    """Run one benchmark with the gateway's warnings on stderr; print (and store) its figures."""
    configure_logging("warning", stream=sys.stderr)
    pending = PendingPublishWarnings()
    logging.getLogger("mqtt").addFilter(pending)
    try:
        result = asyncio.run(run())
    finally:
        logging.getLogger("mqtt").removeFilter(pending)
    if pending.count:
        result.notes.append(
            f"aiomqtt logged 'There are N pending publish calls' {pending.count:,} times "
            f"(up to N={pending.highest}); suppressed here"
        )
    print_result(result)
    if json_file:
        json_file.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


async def create_one_code_each(
    api: ApiClient,
    device_ids: Sequence[str],
    in_flight: int,
    timeout: float,
    *,
    latencies: list[float] | None = None,
    created: dict[str, str] | None = None,
) -> tuple[dict[str, str], float]:
    """An ongoing code on every lock, ``in_flight`` creates outstanding: the PINs and the
    seconds until every create was answered. ``latencies`` collects each create's reply time,
    ``created`` each lock's new ``access_code_id``."""
    pins: dict[str, str] = {}

    async def create(i: int) -> None:
        device_id = device_ids[i]
        started = now()
        reply = await api.call(
            "access_codes/create", timeout=timeout, device_id=device_id, name="Bench"
        )
        if latencies is not None:
            latencies.append(now() - started)
        if not reply.get("ok"):
            raise BenchError(f"create on {device_id}: {reply.get('error')}")
        pins[device_id] = reply["access_code"]["code"]
        if created is not None:
            created[device_id] = reply["access_code"]["access_code_id"]

    return pins, await concurrent(create, len(device_ids), in_flight)


class PendingPublishWarnings(logging.Filter):
    """Counts and drops aiomqtt's warning for more than 10 unacknowledged publishes.

    The gateway keeps up to ``MAX_INFLIGHT`` publishes in flight on purpose, so under load this
    warning fires for nearly every publish and would bury everything else on stderr.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.highest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "There are %d pending publish calls.":
            return True
        self.count += 1
        if record.args and isinstance(record.args, tuple) and isinstance(record.args[0], int):
            self.highest = max(self.highest, record.args[0])
        return False
