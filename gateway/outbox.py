"""Stored events -> ``P/events/<type>``, at least once and in order.

Events are written in the same transaction as the change that caused them; this task only ever
publishes what is committed, marks it published after the broker's ack, and starts again from
the first unpublished event after a broker outage or a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from gateway.logs import get_logger
from gateway.mqtt import MqttSession, NotConnected
from gateway.pump import PUBLISH_BATCH, Pump
from gateway.store import Priority, Store, Tx

log = get_logger("gateway.outbox")



class Outbox(Pump):
    def __init__(self, store: Store, session: MqttSession, prefix: str) -> None:
        super().__init__(session)
        self._store = store
        self._prefix = prefix
        self.published = 0

    def notify(self, tx: Tx) -> None:
        """Store commit listener: new events are waiting."""
        if tx.events:
            self.kick()

    async def catch_up(self) -> None:
        await self.flush()

    async def flush(self) -> int:
        """Publish every unpublished event in order; returns how many went out."""
        sent = 0
        while True:
            rows = await self._store.fetchall(
                "SELECT seq, event_type, body FROM events WHERE published = 0 ORDER BY seq LIMIT ?",
                (PUBLISH_BATCH,),
            )
            if not rows:
                return sent
            if not self._session.is_connected:
                raise NotConnected("broker")
            # paho sends in call order on one connection, so the batch keeps its order.
            await asyncio.gather(
                *(
                    self._session.publish(
                        f"{self._prefix}/events/{row['event_type']}",
                        json.loads(row["body"]),
                        qos=1,
                    )
                    for row in rows
                )
            )
            await self._store.write(_published_up_to(rows[-1]["seq"]), priority=Priority.PASS)
            sent += len(rows)
            self.published += len(rows)


def _published_up_to(seq: int) -> Callable[[Tx], int]:
    def unit(tx: Tx) -> int:
        return tx.execute(
            "UPDATE events SET published = 1 WHERE published = 0 AND seq <= ?", (seq,)
        )

    return unit
