"""Pulling a backup code: answered from the store, without a round trip to the lock.

One simulated lock carries a backup pool of ``POOL_SIZE``. ``codes`` time-bound codes are
created (and programmed) first. Then, for each of them in turn: wait until the gateway has
settled (the pool is full again), call ``access_codes/pull_backup_access_code`` and time the
reply, then time how long the gateway takes to program a new backup into the freed pool place
("refill": from the pull's reply until the gateway is settled with the pool full).

A pull's latency should look like any other committed write (a few ms), not like a lock
command; the refill includes at least one simulated lock command (``SIM_LATENCY``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import (
    SIM_LATENCY,
    BenchError,
    Latency,
    Result,
    bench_main,
    new_result,
    now,
    private_site,
)
from gateway.clock import isoformat
from gateway.site import Site

POOL_SIZE = 3
LOCK = "pool_lock"


async def run(quick: bool) -> Result:
    codes = 10 if quick else 50
    # Every code, its pulled backup (active as long as the code) and the pool need a slot.
    slots = 2 * codes + POOL_SIZE + 10
    result = new_result(
        "pull_latency",
        {"codes": codes, "pool_size": POOL_SIZE, "slots": slots},
        headline="pull_p50_ms",
        higher=False,
    )
    raw: dict[str, Any] = {
        "devices": [
            {
                "device_id": LOCK,
                "driver": "native",
                "slots": slots,
                "backup_pool": {"enabled": True, "size": POOL_SIZE},
            }
        ],
        "simulator": {"latency": SIM_LATENCY},
    }
    async with private_site(raw) as site:
        await _expect_pool_full(site)
        start = datetime.now(UTC)
        ids = []
        for i in range(codes):
            reply = await site.call(
                "access_codes/create",
                device_id=LOCK,
                name=f"Guest {i}",
                starts_at=isoformat(start),
                ends_at=isoformat(start + timedelta(days=2)),
            )
            ids.append(reply["access_code"]["access_code_id"])
        await site.settled()

        pulls: list[float] = []
        refills: list[float] = []
        for access_code_id in ids:
            await site.settled()
            await _expect_pool_full(site)
            started = now()
            reply = await site.call(
                "access_codes/pull_backup_access_code", access_code_id=access_code_id
            )
            pulled = now()
            if reply["backup_access_code"]["status"] != "set":
                raise BenchError("a pulled backup code was not yet set on the lock")
            await site.settled()
            refills.append(now() - pulled)
            pulls.append(pulled - started)
        await _expect_pool_full(site)

    result.add_latency("pull", "pull_backup_access_code", Latency.of(pulls))
    refill = Latency.of(refills)
    for stat in ("p50", "p95", "max"):
        result.add(f"refill_{stat}_ms", f"pool full again {stat}", getattr(refill, stat), "ms", 1)
    first, last = refills[: max(1, codes // 10)], refills[-max(1, codes // 10) :]
    result.add(
        "refill_first_ms", "  refill, first tenth (mean)", sum(first) / len(first) * 1000, "ms"
    )
    result.add("refill_last_ms", "  refill, last tenth (mean)", sum(last) / len(last) * 1000, "ms")
    return result


async def _expect_pool_full(site: Site) -> None:
    device = (await site.call("devices/get", device_id=LOCK))["device"]
    available = device["properties"]["backup_codes_available"]
    if available != POOL_SIZE:
        raise BenchError(f"the pool holds {available} codes, not {POOL_SIZE}, after settling")


def main() -> int:
    return bench_main("pull_latency", run)


if __name__ == "__main__":
    raise SystemExit(main())
