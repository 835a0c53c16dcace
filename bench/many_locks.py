"""A thousand locks on one gateway: start-up, then one new code on every lock at once.

The simulator plays ``locks`` native locks (``simulator.generate``) on one MQTT connection and
is up, with every lock's availability and slot table retained at the broker, before the gateway
starts. Then:

1. start-up: from starting the gateway until every device is ``online`` in its database, and
   until it has settled (every lock read once, every device object and event published);
2. codes: one ongoing code per lock through ``access_codes/create`` with 64 requests in flight;
   the time until every reply is in, and until every code is ``set`` (the lock reported it);
   every simulated lock is then checked to really hold its PIN;
3. memory: the process's resident set (gateway, simulator and client share the process).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import (
    SIM_LATENCY,
    BenchError,
    Result,
    bench_main,
    create_one_code_each,
    new_result,
    now,
    private_config,
    rss_mib,
    wait_until,
)
from gateway.client import connect
from gateway.site import running_gateway, running_simulator
from gateway.store import Store

IN_FLIGHT = 64
PHASE_TIMEOUT = 300.0
POLL = 0.02


async def run(quick: bool) -> Result:
    locks = 100 if quick else 1000
    result = new_result(
        "many_locks",
        {"locks": locks, "in_flight": IN_FLIGHT},
        headline="codes_per_s",
        higher=True,
    )
    raw: dict[str, Any] = {
        "simulator": {"latency": SIM_LATENCY, "generate": {"count": locks}},
    }
    with private_config(raw) as config:
        started = now()
        async with running_simulator(config) as simulator:
            result.add("sim_ready_s", "simulator: all locks announced", now() - started, "s", 2)
            started = now()
            async with running_gateway(config) as gateway:
                store = gateway.store
                assert store is not None

                async def all_online() -> bool:
                    return await _count(store, "SELECT COUNT(*) FROM devices WHERE online") == locks

                await wait_until(all_online, PHASE_TIMEOUT, POLL)
                result.add(
                    "online_s", f"gateway: all {locks} devices online", now() - started, "s", 2
                )
                async with asyncio.timeout(PHASE_TIMEOUT):
                    await gateway.settled()
                result.add("settled_s", "gateway: settled (all read once)", now() - started, "s", 2)

                async with connect(config.mqtt, config.prefix) as api:
                    device_ids = [d.device_id for d in config.devices]
                    started = now()
                    pins, replies = await create_one_code_each(
                        api, device_ids, IN_FLIGHT, timeout=60.0
                    )
                    result.add("create_s", f"{locks} creates answered", replies, "s", 2)

                    async def all_set() -> bool:
                        sql = "SELECT COUNT(*) FROM access_codes WHERE status = 'set'"
                        return await _count(store, sql) == locks

                    await wait_until(all_set, PHASE_TIMEOUT, POLL)
                    until_set = now() - started
                    result.add("set_s", f"{locks} codes set on the locks", until_set, "s", 2)
                    result.add("codes_per_s", "  codes per second", locks / until_set, "codes/s", 0)
                    async with asyncio.timeout(PHASE_TIMEOUT):
                        await gateway.settled()
                    result.add("codes_settled_s", "  then settled", now() - started, "s", 2)

                    missing = [
                        d for d in device_ids if pins[d] not in simulator.lock(d).slots.values()
                    ]
                    if missing:
                        raise BenchError(f"{len(missing)} locks lack their code, e.g. {missing[0]}")
                current, peak = rss_mib()
                result.add("rss_mib", "resident memory now", current, "MiB", 0)
                result.add("peak_rss_mib", "resident memory peak (getrusage)", peak, "MiB", 0)
    return result


async def _count(store: Store, sql: str) -> int:
    row = await store.fetchone(sql)
    return int(row[0]) if row else 0


def main() -> int:
    return bench_main("many_locks", run)


if __name__ == "__main__":
    raise SystemExit(main())
