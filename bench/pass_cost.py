"""What one lock pass costs when nothing has changed, by how many codes the lock holds.

A lock worker looks at its lock after every change it hears of (a command answered, a code
created, a backup pulled), and each look is one pass over the lock's codes inside the database
writer (``gateway.lock_pass``). On a lock with a backup pool that is pulled from all day, the
handed-out backups add up, and every pass that follows judges them all: while one runs, a pull
of that lock waits for it. Here a real store (a SQLite file in a temporary directory) holds one
native lock with ``N`` codes, all set in their slots as the lock reports them, and the pass is
run again and again with nothing to change. Its CPU time (on the writer's thread) stands beside
the raw baseline of the same run: one ``SELECT`` of those ``N`` rows, and no work on them.
No broker and no lock: the pass does no network I/O.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Latency, Result, bench_main, machine, new_result
from drivers.base import SlotTable
from gateway.clock import ManualClock
from gateway.config import Config, parse_config
from gateway.lock_pass import LockPass, Read, ReadState, Step
from gateway.model import CodeStatus
from gateway.rules.slots import Clear, Write
from gateway.store import Store, Tx
from gateway.store import codes as code_store
from gateway.store import devices as device_store
from gateway.store.devices import sync_from_config
from gateway.store.observed import record_table

DEVICE = "door"
#: Passes timed per lock size (the first few warm the caches, as on a running gateway).
PASSES = 200
WARM_UP = 10


@dataclass
class _Lock:
    """The lock as the pass sees it (``gateway.lock_pass.LockView``): online, and its table."""

    table: SlotTable
    online: bool = True

    def apply(self, command: Write | Clear) -> None:
        slots = dict(self.table.slots)
        slots[command.slot] = command.pin if isinstance(command, Write) else None
        self.table = SlotTable(self.table.capacity, self.table.code_lengths, slots)


async def _lock_with_codes(
    store: Store, config: Config, clock: ManualClock, codes: int
) -> tuple[_Lock, ReadState]:
    """``codes`` ongoing codes, each set in its slot: the passes and commands of a worker, with a
    lock that does what it is told at once."""
    capacity = codes + 10
    lock = _Lock(SlotTable(capacity, (4, 8), dict.fromkeys(range(1, capacity + 1))))
    reads = ReadState()
    pins = [f"{100_000 + number * 7}" for number in range(codes)]

    def insert(tx: Tx) -> None:
        for pin in pins:
            code_store.insert_code(
                tx, device_id=DEVICE, name=None, code=pin, starts_at=None, ends_at=None
            )

    await store.write(insert)
    for _ in range(4 * codes + 10):
        step = await store.write(lambda tx: _pass(tx, config, lock, reads))
        if step.command is None:
            break
        if isinstance(step.command, Read):
            reads.due, reads.scope, reads.table_after = False, None, lock.table
            reads.last = clock.now()
        else:
            lock.apply(step.command)
    rows = await store.fetchall("SELECT status FROM access_codes")
    if len(rows) != codes or any(r["status"] != CodeStatus.SET for r in rows):
        raise RuntimeError(f"{codes} codes did not all become set")
    return lock, reads


def _pass(tx: Tx, config: Config, lock: _Lock, reads: ReadState) -> Step:
    """One look, as the worker's unit runs it: what the lock reports recorded, then the pass."""
    record_table(tx, DEVICE, lock.table)
    device_store.set_online(tx, DEVICE, True)
    device = device_store.get_device(tx, DEVICE)
    assert device is not None
    return LockPass(tx, device, lock, config, reads, lock_answered=True).run()


async def _measure(codes: int) -> tuple[Latency, Latency]:
    """The pass and the raw select, each timed on the writer's thread (CPU time)."""
    with tempfile.TemporaryDirectory() as workdir:
        config = parse_config(
            {
                "hub_id": "bench",
                "database": str(Path(workdir) / "pass.db"),
                "devices": [{"device_id": DEVICE, "name": "Door", "driver": "native"}],
                "timing": {"resync_interval": 0},
            },
            base_dir=Path(workdir),
        )
        clock = ManualClock()
        store = await Store.open(config.database, clock)
        try:
            await store.write(lambda tx: sync_from_config(tx, config.devices, config.backup_pool))
            lock, reads = await _lock_with_codes(store, config, clock, codes)
            passes: list[float] = []
            raws: list[float] = []

            def timed_pass(tx: Tx) -> Step:
                started = time.thread_time()
                step = _pass(tx, config, lock, reads)
                passes.append(time.thread_time() - started)
                return step

            def timed_raw(tx: Tx) -> None:
                started = time.thread_time()
                tx.fetchall("SELECT * FROM access_codes WHERE device_id = ?", (DEVICE,))
                raws.append(time.thread_time() - started)

            for _ in range(PASSES + WARM_UP):  # alternated: both see the machine's same moments
                step = await store.write(timed_pass)
                if step.command is not None:
                    raise RuntimeError(f"a pass with nothing to change chose {step.command}")
                await store.write(timed_raw)
            return Latency.of(passes[WARM_UP:]), Latency.of(raws[WARM_UP:])
        finally:
            await store.close()


async def run(quick: bool) -> Result:
    sizes = (1, 30) if quick else (1, 30, 250)
    result = new_result(
        "pass_cost", {"codes": list(sizes), "passes": PASSES}, f"pass_{sizes[-1]}_p50_ms", False
    )
    for codes in sizes:
        one_pass, raw = await _measure(codes)
        result.add(
            f"pass_{codes}_p50_ms", f"pass, {codes} codes at rest: p50", one_pass.p50, "ms", 2
        )
        result.add(
            f"pass_{codes}_p99_ms", f"pass, {codes} codes at rest: p99", one_pass.p99, "ms", 2
        )
        result.add(f"raw_{codes}_p50_ms", f"raw SELECT of the {codes} rows: p50", raw.p50, "ms", 2)
        result.add(
            f"per_code_{codes}_us",
            f"pass per code, {codes} codes",
            one_pass.p50 / codes * 1000,
            "us",
            1,
        )
        result.add(
            f"ratio_{codes}", f"pass / raw SELECT, {codes} codes", one_pass.p50 / raw.p50, "x", 1
        )
    info = machine()
    result.notes.append(
        f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, code {info['code']}"
    )
    return result


def main() -> int:
    return bench_main("pass_cost", run)


if __name__ == "__main__":
    raise SystemExit(main())
