"""Request/response correlation, for every driver: what arrives for each request still waiting,
keyed by what the answer names (a native command id, a Z-Wave JS UI API request id, the
Zigbee2MQTT user being read), and one way to end them all when the lock goes away.

A request opens its key for as long as it waits (:meth:`Pending.open`, a context manager: the
key is gone again however the wait ends); answers are delivered to it in order; a failure ends
it (the waiter's next :meth:`Waiting.next` raises it). :meth:`Pending.settle_all` fails every
open request at once: :class:`drivers.reachability.LinkedDriver` calls it when the lock goes
offline, since an unreachable lock will not answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from drivers.base import CommandFailed

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Failure:
    error: CommandFailed


class Waiting(Generic[T]):
    """What has arrived for one open request, in order: answers, or a failure."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T | _Failure] = asyncio.Queue()

    def put(self, answer: T) -> None:
        self._queue.put_nowait(answer)

    def fail(self, error: CommandFailed) -> None:
        """``next`` raises ``error`` once the answers before it are taken."""
        self._queue.put_nowait(_Failure(error))

    def empty(self) -> bool:
        """Nothing arrived yet (or all of it was taken)."""
        return self._queue.empty()

    async def next(self) -> T:
        """The next answer; raises the failure delivered instead."""
        item = await self._queue.get()
        if isinstance(item, _Failure):
            raise item.error
        return item


class Pending(Generic[K, T]):
    """The requests of one driver still waiting for their answers, by key."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[K, Waiting[T]] = {}

    @contextmanager
    def open(self, key: K) -> Iterator[Waiting[T]]:
        """Wait for answers about ``key`` while the block runs; forgotten after it."""
        if key in self._open:
            raise RuntimeError(f"already waiting for {key!r}")
        waiting: Waiting[T] = Waiting()
        self._open[key] = waiting
        try:
            yield waiting
        finally:
            del self._open[key]

    def get(self, key: K) -> Waiting[T] | None:
        """The request waiting for ``key``, if one is."""
        return self._open.get(key)

    def settle_all(self, error: CommandFailed) -> None:
        """End every request waiting now with ``error`` (the lock will not answer them)."""
        for waiting in self._open.values():
            waiting.fail(error)
