"""API round trips over MQTT: a read (``devices/get``), a committed write (``access_codes/create``).

Each request is a real MQTT 5 request/response through the private broker: client -> broker ->
gateway (validate, SQLite with ``synchronous=FULL`` for the write) -> broker -> client.

Sequential: one request at a time, ``requests`` of each; p50/p95/p99/max in milliseconds.
Creates sent back to back share the gateway with the programming of the codes just created;
``requests / 10`` more are each sent only once the gateway is idle, which isolates the API's own
cost (parse, validate, one ``BEGIN IMMEDIATE`` ... ``COMMIT``, reply).
Throughput: ``requests / 2`` (at least 256) more of each with 64 in flight (the gateway serves
64 at once).

Creates are spread round-robin over simulated locks (at most ``CODES_PER_LOCK`` each), so the
gateway also programs every new code on its lock in the background, as it would in the field:
write latency includes waiting for the lock workers' own short transactions. How long that
background work takes after the last reply is reported too ("programming backlog").
"""

from __future__ import annotations

import math
from itertools import count

from bench.common import (
    SIM_LATENCY,
    Latency,
    Result,
    bench_main,
    concurrent,
    new_result,
    now,
    private_site,
    sequential,
)
from gateway.site import Site

IN_FLIGHT = 64
CODES_PER_LOCK = 10
WARMUP = 20


async def run(quick: bool) -> Result:
    requests = 100 if quick else 1000
    burst = max(requests // 2, 4 * IN_FLIGHT)
    idle = requests // 10
    creates = WARMUP + requests + idle + burst
    locks = math.ceil(creates / CODES_PER_LOCK)
    result = new_result(
        "api_latency",
        {"requests": requests, "burst": burst, "in_flight": IN_FLIGHT, "locks": locks},
        headline="create_seq_p50_ms",
        higher=False,
    )
    raw = {
        "simulator": {
            "latency": SIM_LATENCY,
            "default_slots": CODES_PER_LOCK * 2,
            "generate": {"count": locks},
        }
    }
    async with private_site(raw) as site:
        device_ids = [d.device_id for d in site.config.devices]
        targets = count()

        async def read(i: int) -> None:
            await site.call("devices/get", device_id=device_ids[i % len(device_ids)])

        async def create(_: int) -> None:
            device_id = device_ids[next(targets) % len(device_ids)]
            await site.call("access_codes/create", device_id=device_id, name="Bench")

        await sequential(read, WARMUP)
        await sequential(create, WARMUP)
        await site.settled()

        result.add_latency(
            "read_seq", "devices/get sequential", Latency.of(await sequential(read, requests))
        )
        await site.settled()
        result.add_latency(
            "create_seq",
            "access_codes/create sequential",
            Latency.of(await sequential(create, requests)),
        )
        await _backlog(site, result, "create_seq")

        async def create_when_idle(i: int) -> None:
            await site.settled()
            started = now()
            await create(i)
            idle_samples.append(now() - started)

        idle_samples: list[float] = []
        await sequential(create_when_idle, idle)
        result.add_latency(
            "create_idle", "access_codes/create, gateway idle", Latency.of(idle_samples)
        )
        await site.settled()

        seconds = await concurrent(read, burst, IN_FLIGHT)
        result.add("read_rps", f"devices/get, {IN_FLIGHT} in flight", burst / seconds, "req/s", 0)
        await site.settled()
        seconds = await concurrent(create, burst, IN_FLIGHT)
        result.add(
            "create_rps", f"access_codes/create, {IN_FLIGHT} in flight", burst / seconds, "req/s", 0
        )
        backlog = await _backlog(site, result, "create_burst")
        result.add(
            "create_burst_end_to_end",
            "burst created and set on locks",
            burst / (seconds + backlog),
            "codes/s",
            0,
        )
        await _check_all_set(site, creates)
    return result


async def _backlog(site: Site, result: Result, key: str) -> float:
    """How long the gateway still works (programming locks, publishing) after the last reply."""
    started = now()
    await site.settled()
    seconds = now() - started
    result.add(f"{key}_backlog_s", "  then programming backlog", seconds, "s", 2)
    return seconds


async def _check_all_set(site: Site, expected: int) -> None:
    store = site.gateway.store
    assert store is not None
    row = await store.fetchone(
        "SELECT COUNT(*) AS n, SUM(status = 'set') AS done FROM access_codes WHERE NOT is_backup"
    )
    assert row is not None
    if row["n"] != expected or row["done"] != expected:
        raise RuntimeError(f"expected {expected} codes set, found {row['done']} of {row['n']}")


def main() -> int:
    return bench_main("api_latency", run)


if __name__ == "__main__":
    raise SystemExit(main())
