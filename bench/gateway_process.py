"""The gateway in a process of its own, as systemd runs it: its peak memory and thread count.

``many_locks`` keeps the gateway, the simulator and the client in one process, so its resident
set is theirs together. This benchmark runs the gateway as ``python -m gateway run -c FILE`` (what
the unit's ``ExecStart=`` runs) in a child process, with the simulated locks and the API client
in this one, and samples the child's ``/proc/<pid>/status`` every 100 ms: resident set
(``VmRSS``, and the kernel's own peak ``VmHWM``) and ``Threads`` (what systemd's ``TasksMax=``
counts). The load is ``many_locks``' own: every lock announced, the gateway started until every
device is online in its database, then one ongoing code per lock with 64 requests in flight,
until every code is ``set`` and every event is published. These figures size ``MemoryMax=`` and
``TasksMax=`` in systemd/lockgate.service (see docs/operations.md).

``--locks N`` (default 10,000, the most ``simulator.generate`` makes); ``--quick`` is 100.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    SIM_LATENCY,
    BenchError,
    ProcessSampler,
    Result,
    bench_config,
    create_one_code_each,
    daemon_config,
    new_result,
    now,
    report_run,
    wait_until,
)
from drivers.sim import Simulator
from gateway import site
from gateway.client import connect
from gateway.config import Config
from gateway.site import running_simulator

IN_FLIGHT = 64
PHASE_TIMEOUT = 1800.0
POLL = 0.2


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _count(database: Path, sql: str) -> int:
    """A read of the gateway's database from this process (WAL: readers never block it)."""
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
        row = db.execute(sql).fetchone()
    return int(row[0]) if row else 0


async def run(locks: int) -> Result:
    result = new_result(
        "gateway_process",
        {"locks": locks, "in_flight": IN_FLIGHT},
        headline="peak_rss_mib",
        higher=False,
    )
    result.notes.append(f"cores: {os.cpu_count()}")
    with site.private_config(bench_config({})) as private:
        database = private.database
        raw: dict[str, Any] = {
            "hub_id": private.hub_id,
            "mqtt": {"host": private.mqtt.host, "port": private.mqtt.port},
            "database": str(database),
            "log_level": "warning",
            "simulator": {"latency": SIM_LATENCY, "generate": {"count": locks}},
        }
        config = bench_config(raw)
        # `lockgate run` does not read the simulator's section: it gets the locks as devices.
        config_file = database.parent / "lockgate.yaml"
        config_file.write_text(yaml.safe_dump(daemon_config(raw)))
        async with running_simulator(config) as simulator:
            started = now()
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "run", "-c", str(config_file)
            )
            sampler = ProcessSampler(child.pid)
            sampling = asyncio.create_task(sampler.run(), name="bench-sampler")
            try:
                load = _load(
                    config,
                    database=database,
                    locks=locks,
                    result=result,
                    started=started,
                    simulator=simulator,
                )
                loading = asyncio.create_task(load, name="bench-load")
                exited = asyncio.create_task(child.wait(), name="bench-child")
                await asyncio.wait({loading, exited}, return_when=asyncio.FIRST_COMPLETED)
                exited.cancel()
                if not loading.done():
                    loading.cancel()
                    raise BenchError(f"the gateway exited with status {child.returncode}")
                loading.result()
                sampler.sample()
                current = _rss_kib(child.pid)
                result.add(
                    "peak_rss_mib",
                    "gateway: peak resident set (VmHWM)",
                    sampler.hwm_kib / 1024,
                    "MiB",
                    0,
                )
                result.add("rss_mib", "gateway: resident set at the end", current / 1024, "MiB", 0)
                result.add("threads", "gateway: most threads seen", sampler.threads, "", 0)
            finally:
                sampling.cancel()
                stopping = now()
                if child.returncode is None:
                    child.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(child.wait(), 60)
            result.add(
                "stop_s", "gateway: orderly stop (SIGTERM until exit)", now() - stopping, "s", 2
            )
            if code != 0:
                raise BenchError(f"the gateway exited with status {code}")
    return result


async def _load(
    config: Config,
    *,
    database: Path,
    locks: int,
    result: Result,
    started: float,
    simulator: Simulator,
) -> None:
    def all_online() -> bool:
        try:
            return _count(database, "SELECT COUNT(*) FROM devices WHERE online") == locks
        except sqlite3.OperationalError:  # not created (or migrated) yet
            return False

    async def poll_online() -> bool:
        return all_online()

    await wait_until(poll_online, PHASE_TIMEOUT, POLL)
    result.add("online_s", f"gateway: all {locks:,} devices online", now() - started, "s", 1)

    async with connect(config.mqtt, config.prefix) as api:
        device_ids = [d.device_id for d in config.devices]
        begun = now()
        pins, replies = await create_one_code_each(api, device_ids, IN_FLIGHT, timeout=120.0)
        result.add("create_s", f"{locks:,} creates answered", replies, "s", 1)

        async def all_set() -> bool:
            sql = "SELECT COUNT(*) FROM access_codes WHERE status = 'set'"
            return _count(database, sql) == locks

        await wait_until(all_set, PHASE_TIMEOUT, POLL)
        until_set = now() - begun
        result.add("set_s", f"{locks:,} codes set on the locks", until_set, "s", 1)
        result.add("codes_per_s", "  codes per second", locks / until_set, "codes/s", 0)

        async def all_published() -> bool:
            return _count(database, "SELECT COUNT(*) FROM events WHERE published = 0") == 0

        await wait_until(all_published, PHASE_TIMEOUT, POLL)
        result.add("published_s", "  then every event published", now() - begun, "s", 1)
        missing = [d for d in device_ids if pins[d] not in simulator.lock(d).slots.values()]
        if missing:
            raise BenchError(f"{len(missing)} locks lack their code, e.g. {missing[0]}")
    result.add("total_s", "whole run (gateway start to settled)", now() - started, "s", 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_process")
    parser.add_argument("--locks", type=int, default=10_000, help="simulated locks (1-10000)")
    parser.add_argument("--quick", action="store_true", help="100 locks (seconds)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    return report_run(lambda: run(100 if args.quick else args.locks), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
