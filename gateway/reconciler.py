"""One worker per lock: observe what the lock reports, record it, and make it match the store.

Workers are level-triggered: a wake-up (API change, lock report, timer, reconnect) only says
"look again"; each pass compares the whole desired state with the whole observed state. Locks
never wait on each other: each worker owns its lock's command stream alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from drivers.base import Driver, SlotTable
from gateway.clock import Clock
from gateway.config import Config
from gateway.logs import get_logger, log_context
from gateway.store import Store, Tx
from gateway.store import devices as device_store
from gateway.store.observed import record_table

log = get_logger("gateway.reconciler")


class LockWorker:
    def __init__(self, driver: Driver, store: Store, clock: Clock, config: Config) -> None:
        self.driver = driver
        self.device_id = driver.device_id
        self._store = store
        self._clock = clock
        self._config = config
        self._wake = asyncio.Event()
        self._recorded_online: bool | None = None
        self._recorded_table: SlotTable | None = None
        self.passes = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        with log_context(device_id=self.device_id):
            await self.driver.start(self.wake)
            self._wake.set()
            while True:
                await self._wake.wait()
                self._wake.clear()
                try:
                    await self.reconcile_once()
                except Exception:  # one bad pass must not stop this lock for good
                    log.exception("reconciler.pass_failed")
                self.passes += 1

    async def reconcile_once(self) -> None:
        await self._record_observation()

    async def _record_observation(self) -> None:
        online = self.driver.online
        table = self.driver.table
        if online == self._recorded_online and table == self._recorded_table:
            return
        async with self._store.transaction() as tx:
            await self._record(tx, online, table)
        self._recorded_online, self._recorded_table = online, table

    async def _record(self, tx: Tx, online: bool, table: SlotTable | None) -> None:
        await device_store.set_online(tx, self.device_id, online)
        if table is not None and table != self._recorded_table:
            await device_store.set_shape(tx, self.device_id, table.capacity, table.code_lengths)
            await record_table(tx, self.device_id, table)


class Reconciler:
    def __init__(self, workers: Mapping[str, LockWorker]) -> None:
        self.workers = dict(workers)

    def notify(self, tx: Tx) -> None:
        """Store commit listener: wake the workers whose desired state changed."""
        for device_id in tx.devices_to_reconcile:
            worker = self.workers.get(device_id)
            if worker is not None:
                worker.wake()

    def wake_all(self) -> None:
        for worker in self.workers.values():
            worker.wake()

    def start(self, tg: asyncio.TaskGroup) -> None:
        for device_id, worker in self.workers.items():
            tg.create_task(worker.run(), name=f"lock-worker:{device_id}")
