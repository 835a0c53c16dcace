"""Stored events -> ``P/events/<type>``, at least once and in order.

Events are written in the same transaction as the change that caused them; this task only ever
publishes what is committed, and starts again from the first unpublished event after a restart
(or, after a broker outage, from the first one the broker did not acknowledge).

Marking events published is bookkeeping for the next start, so the outbox never waits for it:
it remembers in memory how far the broker has acknowledged, reads on from there, and records
the mark at the lock passes' priority, one unit at a time. Awaited, or ahead of the passes, the
mark cost a burst dearly: behind a queue of passes it held back every later event for seconds;
ahead of them it cut every batch of passes short, one extra commit per round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.logs import get_logger
from gateway.mqtt import MqttSession, NotConnected
from gateway.pump import PUBLISH_BATCH, Pump
from gateway.store import Priority, Row, Store, Tx

log = get_logger("gateway.outbox")


class Outbox(Pump):
    def __init__(self, store: Store, session: MqttSession, prefix: str) -> None:
        super().__init__(session)
        self._store = store
        self._prefix = prefix
        self.published = 0
        #: The last event the broker acknowledged (None: not known yet, read the marks).
        self._acked: int | None = None
        self._marked = 0  # the last event whose mark is committed (or was found so)
        self._marking: asyncio.Future[int] | None = None
        self._mark_failed: BaseException | None = None

    def notify(self, tx: Tx) -> None:
        """Store commit listener: new events are waiting."""
        if tx.events:
            self.kick()

    async def catch_up(self) -> None:
        await self.flush()

    def caught_up(self) -> bool:
        return self._acked is None or self._marked >= self._acked

    async def flush(self) -> int:
        """Publish every unpublished event in order; returns how many went out."""
        sent = 0
        while True:
            failed, self._mark_failed = self._mark_failed, None
            if failed is not None:
                raise failed  # the pump pauses, then the next round marks them again
            rows, last = await self._store.read(_unpublished(self._acked))
            if not rows:
                if last is not None:  # found all published: go on from the last one
                    self._acked = self._marked = last
                self._mark()
                return sent
            if not self._session.is_connected:
                raise NotConnected("broker")
            # paho sends in call order on one connection, so the batch keeps its order. The
            # body is stored as it goes on the wire (compact_json): sent as it is.
            await asyncio.gather(
                *(
                    self._session.publish(
                        f"{self._prefix}/events/{row['event_type']}", row["body"], qos=1
                    )
                    for row in rows
                )
            )
            self._acked = rows[-1]["seq"]
            sent += len(rows)
            self.published += len(rows)
            self._mark()

    async def marked(self) -> None:
        """Until every event published so far is marked so in the store (an orderly stop)."""
        while self._marking is not None:
            await asyncio.wait({self._marking})

    def _mark(self) -> None:
        if self._marking is not None or self._acked is None or self._marked >= self._acked:
            return
        self._marking = self._store.submit(_published_up_to(self._acked), priority=Priority.PASS)
        self._marking.add_done_callback(self._mark_done)

    def _mark_done(self, future: asyncio.Future[int]) -> None:
        self._marking = None
        if future.cancelled():
            return
        failed = future.exception()
        if failed is not None:
            # A database that cannot be written (a full disk): a later round marks them, and
            # a restart meanwhile publishes those events once more (at least once).
            self._mark_failed = failed
            self.kick()
            return
        self._marked = max(self._marked, future.result())
        if self.caught_up():
            self.kick()  # a round that finds nothing more tells ``drained``
        else:
            self._mark()


def _unpublished(after: int | None) -> Callable[[Tx], tuple[list[Row], int | None]]:
    """The next events to publish: after ``after``, else (at start) from the first one not
    marked, and then, when there is none, the last event stored (from the same snapshot)."""

    def unit(tx: Tx) -> tuple[list[Row], int | None]:
        if after is not None:
            return tx.fetchall(
                "SELECT seq, event_type, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, PUBLISH_BATCH),
            ), None
        rows = tx.fetchall(
            "SELECT seq, event_type, body FROM events WHERE published = 0 ORDER BY seq LIMIT ?",
            (PUBLISH_BATCH,),
        )
        if rows:
            return rows, None
        last = tx.fetchone("SELECT MAX(seq) AS seq FROM events")
        return rows, int(last["seq"] or 0) if last is not None else 0

    return unit


def _published_up_to(seq: int) -> Callable[[Tx], int]:
    def unit(tx: Tx) -> int:
        tx.execute("UPDATE events SET published = 1 WHERE published = 0 AND seq <= ?", (seq,))
        return seq

    return unit
