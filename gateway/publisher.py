"""Retained device objects on ``P/devices/<device_id>``, republished after every change.

Changes are coalesced: many commits touching one device become one publish of its latest
state, and a device whose object reads as it was last published is not published again (every
event about a code touches its device; most leave the object as it was). Everything is
republished on each (re)connect, because a restarted broker may have lost its retained messages.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib

from gateway.logs import get_logger
from gateway.mqtt import MqttSession, encode
from gateway.pump import PUBLISH_BATCH, Pump
from gateway.store import Store, Tx
from gateway.store.devices import configured_device_ids, get_devices, removed_device_ids

log = get_logger("gateway.publisher")


class DevicePublisher(Pump):
    def __init__(self, store: Store, session: MqttSession, prefix: str) -> None:
        super().__init__(session)
        self._store = store
        self._prefix = prefix
        self._dirty: set[str] = set()
        self._all = True
        #: A digest of each device's object as last published (since the last connect).
        self._published: dict[str, bytes] = {}

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
        def ids(tx: Tx) -> tuple[list[str], list[str]]:
            if everything:
                return configured_device_ids(tx), removed_device_ids(tx)
            return sorted(dirty), []

        device_ids, removed = await self._store.read(ids)
        if everything:
            self._published.clear()
        topic = f"{self._prefix}/devices/"
        # In rounds, each read when its turn comes: ten thousand devices at start are not ten
        # thousand publishes in memory, and an object that changed meanwhile (a lock found
        # online while the round goes on) goes out as it is now, once.
        for start in range(0, len(device_ids), PUBLISH_BATCH):
            batch = device_ids[start : start + PUBLISH_BATCH]
            devices = await self._store.read(functools.partial(get_devices, device_ids=batch))
            changed: list[tuple[str, bytes, bytes | None]] = []
            for device in devices:
                payload = encode(device.to_json())
                digest = hashlib.blake2b(payload, digest_size=16).digest()
                if self._published.get(device.device_id) != digest:
                    changed.append((device.device_id, payload, digest))
            await self._send(topic, changed)
        # An empty retained message deletes the one a removed device left behind.
        for start in range(0, len(removed), PUBLISH_BATCH):
            gone = removed[start : start + PUBLISH_BATCH]
            await self._send(topic, [(device_id, b"", None) for device_id in gone])

    async def _send(self, topic: str, messages: list[tuple[str, bytes, bytes | None]]) -> None:
        await asyncio.gather(
            *(
                self._session.publish(topic + device_id, payload, qos=1, retain=True)
                for device_id, payload, _ in messages
            )
        )
        for device_id, _, digest in messages:
            if digest is None:
                self._published.pop(device_id, None)
            else:
                self._published[device_id] = digest
