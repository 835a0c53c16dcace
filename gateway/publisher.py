"""Retained device objects on ``P/devices/<device_id>``, republished after every change.

Changes are coalesced: many commits touching one device become one publish of its latest
state. Everything is republished on each (re)connect, because a restarted broker may have
lost its retained messages.
"""

from __future__ import annotations

import asyncio

from gateway.logs import get_logger
from gateway.model import Device
from gateway.mqtt import MqttSession
from gateway.pump import PUBLISH_BATCH, Pump
from gateway.store import Store, Tx
from gateway.store.devices import get_devices, list_devices, removed_device_ids

log = get_logger("gateway.publisher")


class DevicePublisher(Pump):
    def __init__(self, store: Store, session: MqttSession, prefix: str) -> None:
        super().__init__(session)
        self._store = store
        self._prefix = prefix
        self._dirty: set[str] = set()
        self._all = True

    def notify(self, tx: Tx) -> None:
        """Store commit listener: these devices' public objects changed."""
        if tx.devices_touched:
            self._dirty |= tx.devices_touched
            self.kick()

    def republish_all(self) -> None:
        self._all = True
        self.kick()

    async def catch_up(self) -> None:
        everything, self._all = self._all, False
        dirty, self._dirty = self._dirty, set()
        try:
            await self._publish(everything, dirty)
        except BaseException:
            # Not out yet: keep them for the next round.
            self._all = self._all or everything
            self._dirty |= dirty
            raise

    async def _publish(self, everything: bool, dirty: set[str]) -> None:
        def load(tx: Tx) -> tuple[list[Device], list[str]]:
            if everything:
                return list_devices(tx), removed_device_ids(tx)
            return get_devices(tx, list(dirty)), []

        devices, removed = await self._store.read(load)
        topic = f"{self._prefix}/devices/"
        # An empty retained message deletes the one a removed device left behind.
        messages: list[tuple[str, Device | None]] = [(topic + d.device_id, d) for d in devices]
        messages += [(topic + i, None) for i in removed]
        # In rounds: ten thousand devices at start are not ten thousand publishes in memory.
        for start in range(0, len(messages), PUBLISH_BATCH):
            await asyncio.gather(
                *(
                    self._session.publish(
                        name, device.to_json() if device else b"", qos=1, retain=True
                    )
                    for name, device in messages[start : start + PUBLISH_BATCH]
                )
            )
