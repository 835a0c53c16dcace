"""A whole site as separate processes: broker, simulator, gateway and client, one burst of codes.

``many_locks`` and ``gateway_process`` keep the simulated locks (and the client) in the
benchmark's own process. Here every part runs as it would on a real site, each a process of its
own: a private ``mosquitto`` on a free loopback port, ``lockgate sim`` (``python -m gateway sim
-c FILE``), ``lockgate run`` (``python -m gateway run -c FILE``) and the API client (this
process). Children are started with this interpreter and this checkout first on ``PYTHONPATH``.

The site: ``--locks N`` simulated native locks answering in ``--latency``: ``N - 1`` generated
ones (``simulator.generate``) and ``pool_lock``, which has 250 slots and a backup pool of 3.

1. raw MQTT round trip, before anything else runs: an echo process answers requests like the
   gateway does (MQTT 5 response topic, correlation data, QoS 1) through the same broker, with
   the same client code; p50 of one at a time, and round trips/s with ``--in-flight`` in flight;
2. the simulator starts and announces every lock; then the gateway, until every device object
   (retained on ``P/devices/<id>``) says ``online``, and until the pool lock's backups are all
   set (``backup_codes_available`` = ``backup_pool_size``); then until no command for 2 s;
3. 300 time-bound codes with a future stay are created on the pool lock (not programmed yet):
   the guests a backup is pulled for;
4. the burst: one ongoing code per lock through ``access_codes/create``, ``--in-flight``
   outstanding; meanwhile, from a process of its own (:mod:`bench.front_desk`),
   ``access_codes/pull_backup_access_code`` sent every 50 ms (open loop: not waiting for earlier
   pulls), each for the next of those guests, and half-way between two pulls a request to the
   raw echo (running again), the pull's floor in the same moments, until every new code is
   ``set`` (its ``access_code.set_on_device`` event arrived). A pull answered
   ``no_backup_access_code_available`` (the pool of 3 was emptied faster than the gateway
   refilled it, or the pool lock's slots are full of handed-out backups) and a repeated pull
   (the guests ran out: the same backup is answered again) are counted apart from those that
   handed out a backup. Every lock's slot table (as last published) is then checked to hold
   its PIN, and each code's event lag taken: from the first ``T/slots`` of its lock showing
   its PIN until its ``access_code.set_on_device`` arrived (how stale the events run);
5. restart: SIGTERM once no command has gone to any lock for 2 s, start the gateway again,
   until every device object is republished ``online`` and no command has followed for 2 s;
   the commands it sent meanwhile, by operation (a ``set`` or ``clear`` is a write);
6. the gateway's peak resident set (``VmHWM``) and most threads, sampled every 100 ms.

Commands are counted from the MQTT traffic (``locks/+/command``). ``--profile FILE`` records the
gateway with py-spy during the burst, or with ``--profile-start`` from its start until every
device is online (``.svg`` flame graph, ``.json`` speedscope, else py-spy's raw collapsed stacks,
which are also summarised: the top functions by own and total samples).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import shutil
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.common import (
    SIM_LATENCY,
    BenchError,
    Latency,
    PendingPublishWarnings,
    ProcessSampler,
    bench_config,
    concurrent,
    create_one_code_each,
    daemon_config,
    machine,
    now,
    print_table,
    sequential,
    wait_until,
)
from bench.front_desk import ECHO_PREFIX, NO_BACKUP, Pulls
from bench.wear import Wear, WearMeter, io_counters
from gateway import site
from gateway.client import ApiClient, connect
from gateway.config import MqttSettings, load_config
from gateway.logs import configure_logging
from gateway.mqtt import build_client, encode

ROOT = Path(__file__).resolve().parent.parent
IN_FLIGHT = 64
POOL_LOCK = "pool_lock"
POOL_SLOTS = 250
POOL_SIZE = 3
GUESTS = 300  # time-bound codes on the pool lock that backups are pulled for
RAW_WARMUP = 50
RAW_SEQUENTIAL = 300
RAW_CONCURRENT = 3000
#: The longest line a child prints: the front desk's samples, thousands at 10,000 locks.
CHILD_LINE_LIMIT = 64 * 1024 * 1024
QUIET = 2.0  # no command to any lock for this long: the gateway has settled
PHASE_TIMEOUT = 1800.0
REQUEST_TIMEOUT = 120.0
POLL = 0.05
STDERR = 2  # a child's stdout: this process's stderr
WRITES = ("set", "clear")
#: What a create's reply looks like (the echo answers with it), about its size.
ECHO_REPLY = encode(
    {
        "ok": True,
        "request_id": None,
        "access_code": {
            "access_code_id": "92953f8c-3298-4aff-8660-4d39882a46d5",
            "device_id": "sim_lock_0000",
            "name": "Bench",
            "code": "13572468",
            "type": "ongoing",
            "starts_at": None,
            "ends_at": None,
            "status": "unset",
            "created_at": "2030-01-01T15:00:04.339Z",
            "errors": [],
            "warnings": [],
            "is_managed": True,
            "is_backup": False,
            "is_backup_access_code_available": False,
            "pulled_backup_access_code_id": None,
            "is_external_modification_allowed": False,
            "slot": None,
        },
    }
)


# --------------------------------------------------------------------------------------------
# Child processes


def child_env() -> dict[str, str]:
    """This environment, with this checkout first on ``PYTHONPATH`` (so that a child imports
    the same ``gateway`` and ``drivers`` as this process, not an installed copy)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


async def spawn(*args: str, stdout: int = STDERR) -> asyncio.subprocess.Process:
    """``python ARGS`` with this interpreter, from this checkout. Its output goes to stderr
    (the gateway and the simulator log there as JSON), leaving stdout to the table."""
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, env=child_env(), cwd=ROOT, stdout=stdout
    )


async def stop(process: asyncio.subprocess.Process, timeout: float = 60.0) -> float:
    """SIGTERM, and the seconds until it exited (SIGKILL after ``timeout``)."""
    started = now()
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError(f"pid {process.pid} ignored SIGTERM for {timeout:g}s") from None
    return now() - started


def alive(**processes: asyncio.subprocess.Process) -> None:
    for name, process in processes.items():
        if process.returncode is not None:
            raise BenchError(f"{name} exited with status {process.returncode}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# The echo: the raw MQTT round trip the gateway's replies are compared with


async def echo(settings: MqttSettings) -> None:
    """Answer every request on ``bench-echo/api/#`` as the gateway answers: to its response
    topic, with its correlation data, QoS 1, each answer in a task of its own."""
    client = build_client(settings, identifier=f"bench-echo-{os.getpid()}")
    answering: set[asyncio.Task[None]] = set()
    async with client:
        await client.subscribe(f"{ECHO_PREFIX}/api/#", qos=1, timeout=10)
        print("ready", flush=True)
        async for message in client.messages:
            topic = getattr(message.properties, "ResponseTopic", None)
            if not topic:
                continue
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
            task = asyncio.create_task(
                client.publish(topic, ECHO_REPLY, qos=1, properties=properties, timeout=10)
            )
            answering.add(task)
            task.add_done_callback(answering.discard)


@dataclass(frozen=True, slots=True)
class Raw:
    latency: Latency  # one at a time
    per_second: float  # with ``in_flight`` outstanding
    commit: Latency | None = None  # one durable SQLite commit where the gateway keeps its file
    commit_bytes: float = 0.0  # bytes one such commit sends to the storage layer


COMMITS = 300
#: Codes programmed while the gateway's writes and fsyncs are counted (SD-card wear).
WEAR_CODES = 200


def measure_commit(path: Path) -> Latency:
    """The floor under every reply that promises durability: one small ``BEGIN IMMEDIATE`` ...
    ``COMMIT`` in WAL mode with ``synchronous=FULL`` (one fsync), on the gateway's filesystem."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (x INTEGER)")
        samples = []
        for n in range(COMMITS):
            started = now()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            conn.execute("COMMIT")
            samples.append(now() - started)
    finally:
        conn.close()
    for leftover in path.parent.glob(f"{path.name}*"):
        leftover.unlink()
    return Latency.of(samples)


@contextlib.asynccontextmanager
async def child(
    *args: str, ready: bytes | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python ARGS`` with its stdin and stdout piped, once it has printed ``ready``; stopped
    at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=child_env(),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=CHILD_LINE_LIMIT,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        if ready is not None:
            process.stdin.write(ready)
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise BenchError(f"{args} did not start (status {process.returncode})")
        yield process
    finally:
        await stop(process)


def start_echo(
    config_file: Path,
) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    return child("-m", "bench.site", "--echo", str(config_file))


async def measure_raw(config_file: Path, settings: MqttSettings, in_flight: int) -> Raw:
    async with start_echo(config_file):
        payload = encode({"device_id": "sim_lock_0000", "name": "Bench"})
        async with connect(settings, ECHO_PREFIX) as client:

            async def call(_: int) -> None:
                await client.call_raw("echo", payload, timeout=REQUEST_TIMEOUT)

            await sequential(call, RAW_WARMUP)
            one_at_a_time = await sequential(call, RAW_SEQUENTIAL)
            seconds = await concurrent(call, RAW_CONCURRENT, in_flight)
    return Raw(Latency.of(one_at_a_time), RAW_CONCURRENT / seconds)


# --------------------------------------------------------------------------------------------
# What the client sees on the broker


@dataclass
class Watch:
    """Everything the benchmark learns from the broker, with the time it learnt it."""

    device_ids: frozenset[str]
    announced: set[str] = field(default_factory=set)
    online: dict[str, bool] = field(default_factory=dict)
    online_count: int = 0
    all_online_at: float | None = None
    pool_full_at: float | None = None
    set_at: dict[str, float] = field(default_factory=dict)  # access_code_id -> first event
    commands: collections.Counter[str] = field(default_factory=collections.Counter)
    last_command_at: float = 0.0
    slots: dict[str, dict[str, str | None]] = field(default_factory=dict)  # each lock's latest
    #: (lock, PIN) -> when a table of that lock first showed that PIN
    pin_seen_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def restart(self) -> None:
        """Forget what the devices last said, and the commands so far."""
        self.online.clear()
        self.online_count = 0
        self.all_online_at = None
        self.commands.clear()
        self.last_command_at = now()

    def quiet_since(self) -> float:
        return now() - self.last_command_at

    def on_availability(self, message: aiomqtt.Message) -> None:
        if _json(message).get("state") == "online":
            self.announced.add(message.topic.value.split("/")[1])

    def on_device(self, message: aiomqtt.Message) -> None:
        device = _json(message)
        device_id = device.get("device_id")
        if device_id not in self.device_ids:
            return
        properties = device.get("properties") or {}
        online = bool(properties.get("online"))
        was = self.online.get(device_id, False)
        self.online[device_id] = online
        self.online_count += int(online) - int(was)
        if self.online_count == len(self.device_ids) and self.all_online_at is None:
            self.all_online_at = now()
        if (
            device_id == POOL_LOCK
            and self.pool_full_at is None
            and properties.get("backup_codes_available", 0) >= properties.get("backup_pool_size", 1)
        ):
            self.pool_full_at = now()

    def on_set(self, message: aiomqtt.Message) -> None:
        code_id = _json(message).get("access_code_id")
        if isinstance(code_id, str):
            self.set_at.setdefault(code_id, now())

    def on_command(self, message: aiomqtt.Message) -> None:
        self.commands[str(_json(message).get("op"))] += 1
        self.last_command_at = now()

    def on_slots(self, message: aiomqtt.Message) -> None:
        table = _json(message).get("slots")
        if isinstance(table, dict):
            lock = message.topic.value.split("/")[1]
            self.slots[lock] = table
            seen = now()
            for pin in table.values():
                if isinstance(pin, str):
                    self.pin_seen_at.setdefault((lock, pin), seen)


def _json(message: aiomqtt.Message) -> dict[str, Any]:
    payload = message.payload
    if not isinstance(payload, bytes) or not payload:
        return {}
    with contextlib.suppress(ValueError):
        value = json.loads(payload)
        if isinstance(value, dict):
            return value
    return {}


async def follow(
    api: ApiClient, topic_filter: str, handle: Callable[[aiomqtt.Message], None]
) -> asyncio.Task[None]:
    """Subscribe, then hand every message on ``topic_filter`` to ``handle`` as it arrives."""
    queue = await api.subscribe(topic_filter)

    async def drain() -> None:
        while True:
            handle(await queue.get())

    return asyncio.create_task(drain(), name=f"bench-follow:{topic_filter}")


# --------------------------------------------------------------------------------------------
# The guests a backup is pulled for (by bench.front_desk)


async def create_guests(api: ApiClient, count: int, in_flight: int) -> list[str]:
    """``count`` time-bound codes on the pool lock for a stay tomorrow: not on the lock yet."""
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    window = {
        "starts_at": start.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "ends_at": (start + datetime.timedelta(days=1))
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
    }
    ids: list[str] = []

    async def create(i: int) -> None:
        reply = await api.call(
            "access_codes/create",
            timeout=REQUEST_TIMEOUT,
            device_id=POOL_LOCK,
            name=f"Guest {i}",
            **window,
        )
        if not reply.get("ok"):
            raise BenchError(f"guest code on {POOL_LOCK}: {reply.get('error')}")
        ids.append(reply["access_code"]["access_code_id"])

    await concurrent(create, count, in_flight)
    return ids


# --------------------------------------------------------------------------------------------
# py-spy


class Profiler:
    """``py-spy record`` on a pid, from ``start`` until ``finish``."""

    def __init__(self, output: Path) -> None:
        self.output = output.resolve()
        self.format = {".svg": "flamegraph", ".json": "speedscope"}.get(output.suffix, "raw")
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, pid: int) -> None:
        path = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
        binary = shutil.which("py-spy", path=path)
        if binary is None:
            raise BenchError("py-spy is not installed (pip install py-spy)")
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "record",
            "--pid",
            str(pid),
            "--output",
            str(self.output),
            "--format",
            self.format,
            "--function",
            "--threads",
            "--rate",
            "100",
            stdout=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # attaching takes a moment
        if self.process.returncode is not None:
            raise BenchError(f"py-spy could not attach (status {self.process.returncode})")

    async def finish(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        await asyncio.wait_for(self.process.wait(), 60)

    def summary(self, top: int = 15) -> list[str]:
        """From py-spy's raw collapsed stacks: samples per thread, the functions with the most
        samples of their own, lockgate's functions with the most samples in all (themselves
        and what they call), and own samples per package."""
        if self.format != "raw" or not self.output.exists():
            return []
        own: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        threads: collections.Counter[str] = collections.Counter()
        packages: collections.Counter[str] = collections.Counter()
        samples = 0
        for line in self.output.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdecimal():
                continue
            count = int(count_text)
            frames = stack.split(";")
            threads[frames[0] if frames[0].startswith("thread (") else "?"] += count
            frames = [f for f in frames if not f.startswith(("thread (", "process "))]
            samples += count
            if frames:
                own[frames[-1]] += count
                packages[_package(frames[-1])] += count
            for frame in set(frames):
                if _package(frame) in ("gateway", "drivers") and not frame.endswith(ENTRY):
                    total[frame] += count
        if not samples:
            return ["py-spy recorded no samples"]
        lines = [f"py-spy: {samples:,} samples (100/s, idle excluded) in {self.output}"]
        lines += [f"  {t}: {n / samples:.0%} of samples" for t, n in threads.most_common()]
        for title, counter in (
            ("own samples", own),
            ("samples in all, lockgate's own functions", total),
            ("own samples, by package", packages),
        ):
            lines.append(f"top {top} by {title}:")
            lines += [f"  {n / samples:6.1%}  {frame}" for frame, n in counter.most_common(top)]
        return lines


#: The frames every sample of the gateway's main thread passes through: no news.
ENTRY = (
    "(gateway/__main__.py:1)",
    "(gateway/cli.py:182)",
    "(gateway/cli.py:45)",
    "(gateway/cli.py:58)",
)


def _package(frame: str) -> str:
    """``gateway`` for ``Router.handle (gateway/api/router.py:124)``, ``selectors`` for a
    module of its own."""
    where = frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]
    return where.split("/")[0].removesuffix(".py") if where else "?"


# --------------------------------------------------------------------------------------------
# The table


@dataclass
class Table:
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        key: str,
        label: str,
        value: float,
        unit: str,
        *,
        digits: int = 1,
        baseline: str = "",
        target: tuple[float, bool, str] | None = None,  # (bound, higher is better, as printed)
    ) -> None:
        """One row; ``target`` says whether ``value`` met its bound and by how much it missed."""
        self.figures[key] = value
        text = f"{value:,.{digits}f} {unit}".rstrip()
        verdict = _verdict(value, unit, digits, target)
        self.rows.append((label, text, baseline, target[2] if target else "", verdict))
        print(
            f"bench.site: {label.strip()}: {text} {verdict}".rstrip(), file=sys.stderr, flush=True
        )


def _verdict(value: float, unit: str, digits: int, target: tuple[float, bool, str] | None) -> str:
    """``met``, or ``MISSED by`` how much (and how far off, as a ratio to the target)."""
    if target is None:
        return ""
    bound, higher, _ = target
    if (value >= bound) if higher else (value <= bound):
        return "met"
    missed = f"MISSED by {abs(value - bound):,.{digits}f} {unit}".rstrip()
    if not bound:
        return missed
    return (
        f"{missed} ({value / bound:.0%} of the target)"
        if higher
        else (f"{missed} ({value / bound:.1f}x the target)")
    )


# --------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True, slots=True)
class Options:
    locks: int
    in_flight: int
    latency: str
    profile: Path | None
    profile_start: bool = False  # py-spy the start (until every device is online), not the burst


async def run(options: Options, table: Table, notes: list[str]) -> None:
    """Every phase; the figures go to ``table`` as they are measured, so that a run stopped
    early (SIGTERM, a phase that fails) still shows what it got."""
    with site.private_config(bench_config({})) as private:
        raw: dict[str, Any] = {
            "hub_id": private.hub_id,
            "mqtt": {"host": private.mqtt.host, "port": private.mqtt.port},
            "database": str(private.database),
            "log_level": "warning",
            "devices": [
                {
                    "device_id": POOL_LOCK,
                    "name": "Pool lock",
                    "driver": "native",
                    "topic": f"locks/{POOL_LOCK}",
                    "slots": POOL_SLOTS,
                    "backup_pool": {"enabled": True, "size": POOL_SIZE},
                }
            ],
            "simulator": {"latency": options.latency, "generate": {"count": options.locks - 1}},
        }
        workdir = private.database.parent
        files = Files(workdir / "sim.yaml", workdir / "lockgate.yaml")
        files.simulator.write_text(yaml.safe_dump(raw))  # `lockgate sim` plays every lock
        files.gateway.write_text(yaml.safe_dump(daemon_config(raw)))  # `run` lists them
        config = bench_config(raw)  # what the gateway manages: the pool lock, then the rest
        # 1. the raw MQTT round trip and the raw durable commit, with nothing else running
        raw_rt = await measure_raw(files.gateway, config.mqtt, options.in_flight)
        before = io_counters()["write_bytes"]
        commit = measure_commit(workdir / "raw-commit.db")
        commit_bytes = (io_counters()["write_bytes"] - before) / COMMITS
        raw_rt = dataclasses.replace(raw_rt, commit=commit, commit_bytes=commit_bytes)
        watch = Watch(frozenset(d.device_id for d in config.devices))
        set_on_device = f"{config.prefix}/events/access_code.set_on_device"
        async with connect(config.mqtt, config.prefix) as api:
            following = [
                await follow(api, "locks/+/availability", watch.on_availability),
                await follow(api, "locks/+/slots", watch.on_slots),
                await follow(api, f"{config.prefix}/devices/+", watch.on_device),
                await follow(api, set_on_device, watch.on_set),
                await follow(api, "locks/+/command", watch.on_command),
            ]
            measured = SiteRun(options, files, api, watch, raw_rt, table=table, notes=notes)
            try:
                await measured.run()
            finally:
                for task in following:
                    task.cancel()
                for process in measured.processes.values():
                    with contextlib.suppress(BenchError, ProcessLookupError):
                        await stop(process)


@dataclass(frozen=True, slots=True)
class Files:
    simulator: Path
    gateway: Path


class SiteRun:
    """Phases 2-6 against the running broker, with the client subscribed."""

    def __init__(
        self,
        options: Options,
        files: Files,
        api: ApiClient,
        watch: Watch,
        raw: Raw,
        *,
        table: Table,
        notes: list[str],
    ) -> None:
        self.options = options
        self.locks = options.locks
        self.files = files
        self.api = api
        self.watch = watch
        self.device_ids = sorted(watch.device_ids)
        self.raw = raw
        self.raw_p50 = f"{raw.latency.p50:.2f} ms raw p50"
        assert raw.commit is not None
        self.raw_commit = f"+ {raw.commit.p50:.2f} ms commit"
        self.raw_rate = f"{raw.per_second:,.0f} raw round trips/s"
        self.table = table
        self.notes = notes
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.pins: dict[str, str] = {}

    async def until(self, condition: Callable[[], bool], timeout: float = PHASE_TIMEOUT) -> float:
        """Poll ``condition``; a child that exits meanwhile ends the run."""

        async def check() -> bool:
            alive(**self.processes)
            return condition()

        return await wait_until(check, timeout, POLL)

    def profiler(self, *, start: bool) -> Profiler | None:
        """py-spy for this phase, if ``--profile`` asked for it."""
        options = self.options
        if options.profile is None or options.profile_start is not start:
            return None
        return Profiler(options.profile)

    async def start_gateway(self) -> tuple[asyncio.subprocess.Process, ProcessSampler, float]:
        started = now()
        gateway = await spawn("-m", "gateway", "run", "-c", str(self.files.gateway))
        self.processes["gateway"] = gateway
        print(f"gateway pid {gateway.pid}", file=sys.stderr, flush=True)
        return gateway, ProcessSampler(gateway.pid), started

    async def run(self) -> None:
        table, watch = self.table, self.watch
        table.add(
            "raw_p50_ms",
            "raw MQTT round trip, one at a time: p50",
            self.raw.latency.p50,
            "ms",
            digits=2,
        )
        table.add(
            "raw_per_s",
            f"raw MQTT round trips/s, {self.options.in_flight} in flight",
            self.raw.per_second,
            "/s",
            digits=0,
        )
        assert self.raw.commit is not None
        table.add(
            "raw_commit_p50_ms",
            "raw SQLite commit (WAL, synchronous=FULL): p50",
            self.raw.commit.p50,
            "ms",
            digits=2,
        )
        table.add("raw_commit_p99_ms", "  raw commit p99", self.raw.commit.p99, "ms", digits=2)
        # 2. the simulator, then the gateway
        started = now()
        sim = await spawn("-m", "gateway", "sim", "-c", str(self.files.simulator))
        self.processes["simulator"] = sim
        await self.until(lambda: len(watch.announced) >= self.locks <= len(watch.slots))
        table.add(
            "sim_ready_s",
            f"simulator: all {self.locks:,} locks announced",
            now() - started,
            "s",
            digits=2,
        )
        gateway, sampler, started = await self.start_gateway()
        watch.last_command_at = started
        sampling = asyncio.create_task(sampler.run(), name="bench-sampler")
        profiler = self.profiler(start=True)
        if profiler:
            await profiler.start(gateway.pid)
        await self.until(lambda: None not in (watch.all_online_at, watch.pool_full_at))
        if profiler:
            await profiler.finish()
            self.notes += profiler.summary()
        assert watch.all_online_at is not None
        assert watch.pool_full_at is not None
        table.add(
            "online_s",
            "start -> every device online",
            watch.all_online_at - started,
            "s",
            digits=2,
            target=(5.0, False, "5 s (at 10,000)"),
        )
        table.add(
            "pool_set_s",
            "start -> the pool lock's backups set",
            watch.pool_full_at - started,
            "s",
            digits=2,
        )
        await self.until(lambda: watch.quiet_since() >= QUIET)
        table.add(
            "quiet_s",
            "start -> last command before quiet (info)",
            watch.last_command_at - started,
            "s",
            digits=2,
        )
        table.add(
            "start_commands",
            "  commands sent meanwhile (info)",
            sum(watch.commands.values()),
            "",
            digits=0,
        )
        # 3. the guests a backup is pulled for; 4. the burst
        guests = await create_guests(self.api, GUESTS, self.options.in_flight)
        await self.burst(gateway.pid, guests)
        missing = [d for d in self.device_ids if self.pins[d] not in watch.slots[d].values()]
        if missing:
            raise BenchError(f"{len(missing)} locks lack their code, e.g. {missing[0]}")
        await self.wear(gateway.pid)
        # 5. restart with every code on its lock
        await self.until(lambda: watch.quiet_since() >= QUIET)
        sampler.sample()
        sampling.cancel()
        await self.restart(gateway)
        # 6. memory and threads of the first gateway process, start to restart
        table.add(
            "peak_rss_mb",
            "gateway peak RSS (VmHWM), start to restart",
            sampler.hwm_kib * 1024 / 1e6,
            "MB",
            digits=0,
            target=(250.0, False, "<= 250 MB (at 10,000)"),
        )
        table.add("peak_rss_mib", "  the same in MiB", sampler.hwm_kib / 1024, "MiB", digits=0)
        table.add("threads", "  most threads seen", sampler.threads, "", digits=0)

    async def burst(self, gateway_pid: int, guests: list[str]) -> None:
        watch, sim_pid = self.watch, self.processes["simulator"].pid
        profiler = self.profiler(start=False)
        if profiler:
            await profiler.start(gateway_pid)
        gateway_cpu, simulator_cpu = cpu_seconds(gateway_pid), cpu_seconds(sim_pid)
        latencies: list[float] = []
        created: dict[str, str] = {}
        front_desk = child(
            "-m",
            "bench.front_desk",
            str(self.files.gateway),
            ready=json.dumps(guests).encode() + b"\n",
        )
        async with start_echo(self.files.gateway), front_desk as desk:
            assert desk.stdin is not None
            assert desk.stdout is not None
            first_create = now()
            self.pins, answered_s = await create_one_code_each(
                self.api,
                self.device_ids,
                self.options.in_flight,
                REQUEST_TIMEOUT,
                latencies=latencies,
                created=created,
            )
            code_ids = list(created.values())
            await self.until(lambda: all(code_id in watch.set_at for code_id in code_ids))
            desk.stdin.write(b"done\n")
            pulls = Pulls.from_json(json.loads(await desk.stdout.readline()))
        burst_s = max(watch.set_at[code_id] for code_id in code_ids) - first_create
        gateway_cpu = cpu_seconds(gateway_pid) - gateway_cpu
        simulator_cpu = cpu_seconds(sim_pid) - simulator_cpu
        if profiler:
            await profiler.finish()
            self.notes += profiler.summary()
        self.report_creates(Latency.of(latencies), self.locks / answered_s, burst_s)
        self.report_event_lag(
            Latency.of(
                [
                    watch.set_at[created[device_id]] - watch.pin_seen_at[device_id, pin]
                    for device_id, pin in self.pins.items()
                    if (device_id, pin) in watch.pin_seen_at
                ]
            )
        )
        self.report_pulls(pulls)
        table = self.table
        table.add("gateway_cpu_s", "gateway CPU in the burst (info)", gateway_cpu, "s", digits=1)
        table.add(
            "gateway_cpu_pct", "  of one core (info)", 100 * gateway_cpu / burst_s, "%", digits=0
        )
        table.add(
            "simulator_cpu_pct",
            "simulator CPU in the burst, of one core (info)",
            100 * simulator_cpu / burst_s,
            "%",
            digits=0,
        )

    async def wear(self, gateway_pid: int) -> None:
        """A second code on up to :data:`WEAR_CODES` locks, as busy as the burst, with the
        gateway's writes and fsyncs counted (apart from the burst: strace slows what it
        watches, and the burst's figures must stay honest)."""
        # Not the pool lock: after a long burst its slots are full of the backups pulled meanwhile
        # (each stays on until its guest's stay ends), and a code there would never be set.
        device_ids = [d for d in self.device_ids if d != POOL_LOCK][:WEAR_CODES]
        meter = WearMeter(gateway_pid, self.files.gateway.parent)
        await meter.start()
        created: dict[str, str] = {}
        await create_one_code_each(
            self.api, device_ids, self.options.in_flight, REQUEST_TIMEOUT, created=created
        )
        await self.until(lambda: all(c in self.watch.set_at for c in created.values()))
        self.report_wear(await meter.finish(), len(created))

    def report_wear(self, wear: Wear, codes: int) -> None:
        """Issue 13's targets, per programmed code, beside what one raw commit costs."""
        table = self.table
        raw = f"raw commit: 1 fsync, {self.raw.commit_bytes / 1024:,.1f} KB"
        table.add(
            "wear_kb_per_code",
            f"bytes written per programmed code ({WEAR_CODES} locks)",
            wear.write_bytes / codes / 1024,
            "KB",
            baseline=raw,
            target=(32.0, False, "<= 32 KB"),
        )
        table.add(
            "wear_wchar_kb_per_code",
            "  written by the process (info)",
            wear.wchar / codes / 1024,
            "KB",
        )
        if wear.fsyncs is None:
            self.notes.append("fsyncs not counted: strace is not available (or may not attach)")
            return
        table.add(
            "wear_fsyncs_per_code",
            f"fsyncs per programmed code ({WEAR_CODES} locks)",
            wear.fsyncs / codes,
            "",
            digits=2,
            baseline=raw,
            target=(3.0, False, "<= 3"),
        )

    def report_event_lag(self, lag: Latency) -> None:
        """How late the events tell what the locks already show: a client that follows
        ``access_code.set_on_device`` learns of a code this long after its lock has it."""
        table = self.table
        table.add(
            "event_lag_p50_ms",
            "  lock shows the code -> its set_on_device: p50",
            lag.p50,
            "ms",
            digits=1,
        )
        table.add("event_lag_p99_ms", "  the same: p99", lag.p99, "ms", digits=1)

    def report_creates(self, creates: Latency, per_s: float, burst_s: float) -> None:
        table, locks = self.table, self.locks
        table.add(
            "create_per_s",
            "creates answered per second",
            per_s,
            "/s",
            digits=0,
            baseline=self.raw_rate,
        )
        table.add(
            "create_p50_ms", "  create p50", creates.p50, "ms", digits=2, baseline=self.raw_p50
        )
        table.add("create_p99_ms", "  create p99", creates.p99, "ms", digits=2)
        table.add(
            "create_vs_raw_pct",
            "  creates/s as % of raw round trips/s",
            100 * per_s / self.raw.per_second,
            "%",
            digits=1,
            target=(40.0, True, ">= 40 %"),
        )
        table.add(
            "set_per_s",
            "codes set on the locks per second",
            locks / burst_s,
            "/s",
            digits=0,
            baseline=self.raw_rate,
        )
        bound = 3.0 * locks / 1000
        scaled = "" if locks in (1_000, 10_000) else ", scaled"
        table.add(
            "set_s",
            "  first create -> all codes set",
            burst_s,
            "s",
            digits=2,
            target=(bound, False, f"{bound:g} s (3 s per 1,000{scaled})"),
        )

    def report_pulls(self, pulls: Pulls) -> None:
        if not pulls.handed_out:
            raise BenchError(f"no backup was handed out ({pulls})")
        table, big = self.table, self.locks >= 10_000
        handed, echo = Latency.of(pulls.handed_out), pulls.echo_latency
        table.add(
            "pull_p50_ms",
            "pull_backup_access_code in the burst: p50",
            handed.p50,
            "ms",
            digits=2,
            baseline=f"{echo.p50:.2f} ms echo p50 {self.raw_commit}",
            target=None if big else (2.0, False, "<= 2 ms (at 1,000)"),
        )
        table.add(
            "pull_p99_ms",
            "  pull p99",
            handed.p99,
            "ms",
            digits=2,
            baseline=f"{echo.p99:.2f} ms echo p99",
            target=(10.0, False, "<= 10 ms (at 10,000)")
            if big
            else (5.0, False, "<= 5 ms (at 1,000)"),
        )
        table.add("pull_max_ms", "  pull max", handed.max, "ms", digits=2)
        table.add("pulls", "  pulls that handed out a backup", len(pulls.handed_out), "", digits=0)
        table.add(
            "pulls_none", f"  pulls answered {NO_BACKUP}", len(pulls.none_available), "", digits=0
        )
        table.add(
            "pulls_repeated",
            "  pulls repeated for a guest (same backup)",
            len(pulls.repeated),
            "",
            digits=0,
        )
        every = Latency.of(pulls.answered)
        table.add(
            "pull_all_p50_ms",
            f"  every pull answered ({len(pulls.answered):,}): p50",
            every.p50,
            "ms",
            digits=2,
        )
        table.add("pull_all_p99_ms", "  every pull answered: p99", every.p99, "ms", digits=2)
        table.add(
            "burst_echo_p50_ms",
            f"raw round trip in the same moments ({len(pulls.echo):,}): p50",
            echo.p50,
            "ms",
            digits=2,
            baseline=self.raw_p50,
        )
        table.add(
            "burst_echo_p99_ms", "  raw round trip in the burst: p99", echo.p99, "ms", digits=2
        )
        if pulls.refused:
            self.notes.append(f"pulls refused otherwise: {dict(pulls.refused)}")

    async def restart(self, gateway: asyncio.subprocess.Process) -> None:
        table, watch = self.table, self.watch
        stop_s = await stop(gateway)
        watch.restart()
        _, sampler, restarted = await self.start_gateway()
        sampling = asyncio.create_task(sampler.run(), name="bench-resampler")
        await self.until(lambda: watch.all_online_at is not None)
        await self.until(
            lambda: watch.quiet_since() >= QUIET and now() - (watch.all_online_at or 0) >= QUIET
        )
        assert watch.all_online_at is not None
        settled = max(watch.all_online_at, watch.last_command_at) - restarted
        sampler.sample()
        sampling.cancel()
        table.add("stop_s", "orderly stop (SIGTERM until exit)", stop_s, "s", digits=2)
        table.add(
            "restart_online_s",
            "restart -> every device online",
            watch.all_online_at - restarted,
            "s",
            digits=2,
        )
        table.add(
            "restart_settled_s",
            "restart -> settled (online, no command for 2 s)",
            settled,
            "s",
            digits=2,
            target=(15.0, False, "15 s (at 10,000)"),
        )
        table.add(
            "restart_writes",
            "  writes to locks during the restart",
            sum(watch.commands[op] for op in WRITES),
            "",
            digits=0,
            target=(0, False, "0"),
        )
        table.add(
            "restart_commands",
            "  commands of any kind (info)",
            sum(watch.commands.values()),
            "",
            digits=0,
        )
        if watch.commands:
            self.notes.append(f"commands during the restart, by op: {dict(watch.commands)}")
        table.add(
            "restart_peak_rss_mb",
            "restarted gateway: peak RSS (VmHWM) (info)",
            sampler.hwm_kib * 1024 / 1e6,
            "MB",
            digits=0,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.site", description=__doc__)
    parser.add_argument("--locks", type=int, default=1000, help="simulated locks (2-10001)")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="requests outstanding")
    parser.add_argument("--latency", default=SIM_LATENCY, help="simulated lock answer time (20ms)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="py-spy the gateway's burst")
    parser.add_argument(
        "--profile-start",
        action="store_true",
        help="with --profile: the gateway's start (until every device is online), not the burst",
    )
    parser.add_argument("--echo", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo:  # the echo child of the raw round trip
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(echo(load_config(args.echo).mqtt))
        return 0
    if not 2 <= args.locks <= 10_001 or args.in_flight < 1:
        parser.error("--locks must be 2-10001 and --in-flight at least 1")
    host = machine()
    configure_logging("warning", stream=sys.stderr)
    pending = PendingPublishWarnings()
    logging.getLogger("mqtt").addFilter(pending)
    options = Options(args.locks, args.in_flight, args.latency, args.profile, args.profile_start)
    started = now()
    table, notes = Table(), list[str]()
    stopped: BaseException | None = None
    try:
        asyncio.run(run_until_signal(options, table, notes))
    except (BenchError, TimeoutError, asyncio.CancelledError, KeyboardInterrupt) as exc:
        stopped = exc
        notes.append(f"INCOMPLETE: stopped early by {type(exc).__name__} {exc}".rstrip())
    print(
        f"lockgate bench.site: {args.locks:,} locks, {args.in_flight} in flight, lock latency "
        f"{args.latency}; code {host['code']} on {host['cpu']}, {host['cores']} cores, Python "
        f"{host['python']}, {host['mosquitto']}; load average {host['load_average']} at the "
        f"start, {[round(x, 2) for x in os.getloadavg()]} at the end; {host['date']}; "
        f"{now() - started:.0f} s in all"
    )
    print_table(
        "site (separate processes: mosquitto, lockgate sim, lockgate run, client)",
        table.rows,
        ("measure", "value", "raw MQTT baseline", "target", "verdict"),
    )
    if pending.count:
        notes.append(f"aiomqtt 'pending publish calls' warnings in the client: {pending.count:,}")
    for note in notes:
        print(note)
    if args.json:
        document = {
            "machine": host,
            "params": {"locks": args.locks, "in_flight": args.in_flight, "latency": args.latency},
            "figures": table.figures,
            "rows": [list(row) for row in table.rows],
            "notes": notes,
            "complete": stopped is None,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if stopped is None else 1


async def run_until_signal(options: Options, table: Table, notes: list[str]) -> None:
    """:func:`run`, cancelled by SIGTERM (children stopped, the figures so far printed)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await run(options, table, notes)


if __name__ == "__main__":
    raise SystemExit(main())
