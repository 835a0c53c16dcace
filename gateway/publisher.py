"""Retained device objects on ``P/devices/<device_id>``, republished after every change.

Changes are coalesced: many commits touching one device become one publish of its latest
state. Everything is republished on each (re)connect, because a restarted broker may have
lost its retained messages.
"""

from __future__ import annotations

import asyncio

from gateway.logs import get_logger
from gateway.mqtt import MqttSession, NotConnected
from gateway.store import Store, Tx
from gateway.store.devices import get_device, list_devices, removed_device_ids

log = get_logger("gateway.publisher")


class DevicePublisher:
    def __init__(self, store: Store, session: MqttSession, prefix: str) -> None:
        self._store = store
        self._session = session
        self._prefix = prefix
        self._dirty: set[str] = set()
        self._all = True
        self._wake = asyncio.Event()
        self._wake.set()
        #: Set while every device object is published as it stands (tests await it).
        self.drained = asyncio.Event()

    def notify(self, tx: Tx) -> None:
        if tx.devices_touched:
            self._dirty |= tx.devices_touched
            self.drained.clear()
            self._wake.set()

    def republish_all(self) -> None:
        self._all = True
        self.drained.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._session.wait_connected()
            everything, self._all = self._all, False
            dirty, self._dirty = self._dirty, set()
            try:
                await self._publish(everything, dirty)
                if not self._wake.is_set():
                    self.drained.set()
            except (NotConnected, TimeoutError) as exc:
                log.info("publisher.waiting_for_broker", reason=str(exc))
                self._all = self._all or everything
                self._dirty |= dirty
                self._wake.set()

    async def _publish(self, everything: bool, dirty: set[str]) -> None:
        removed: list[str] = []
        async with self._store.reading() as tx:
            if everything:
                devices = await list_devices(tx)
                removed = await removed_device_ids(tx)
            else:
                devices = [d for i in sorted(dirty) if (d := await get_device(tx, i))]
        await asyncio.gather(
            *(
                self._session.publish(
                    f"{self._prefix}/devices/{d.device_id}", d.to_json(), qos=1, retain=True
                )
                for d in devices
            ),
            # An empty retained message deletes the one a removed device left behind.
            *(
                self._session.publish(f"{self._prefix}/devices/{i}", b"", qos=1, retain=True)
                for i in removed
            ),
        )
