"""One entry event per door operation, where a lock's stack reports an operation twice.

Zigbee and Z-Wave locks say that the door operated in two ways: an operation report (Zigbee's
Operation Event Notification, Z-Wave's Access Control notification) that tells how and with
whose PIN, and a change of the lock's state (Zigbee's ``lockState`` attribute, Z-Wave's Door
Lock ``currentMode``) that tells only locked or unlocked, before or after the first, or alone
on a lock that sends no operation reports. :class:`EntryPairing` turns the two into one
:class:`EntryEvent`: the operation report whenever there is one, else the state change, as an
operation of unknown method once no operation report of that kind came within ``window`` of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from drivers.base import EntryEvent, EntryKind, EntryMethod

__all__ = ["PAIR_WINDOW", "EntryPairing"]

#: Seconds between an operation report and the state change of the same operation within
#: which the two are one operation. Locks report their new state once the bolt has moved, a
#: second or two after the operation; a state change alone is told this late.
PAIR_WINDOW: Final = 5.0


class EntryPairing:
    """Pairs a lock's operation reports with its state changes; ``emit`` hears each operation
    once. The first state seen is where the lock stands, not an operation."""

    def __init__(self, emit: Callable[[EntryEvent], None], window: float | None = None) -> None:
        self._emit = emit
        self.window = PAIR_WINDOW if window is None else window
        self._state: EntryKind | None = None  # LOCKED or UNLOCKED, as last reported
        self._heard: dict[EntryKind, float] = {}  # kind -> when its last operation report came
        self._held: dict[EntryKind, asyncio.TimerHandle] = {}  # state changes awaiting a report

    def operation(self, event: EntryEvent) -> None:
        """An operation report: told at once; a state change it explains is no news, one of
        the other kind happened before it and is told first."""
        if event.kind is not EntryKind.ACCESS_DENIED:
            self._heard[event.kind] = asyncio.get_running_loop().time()
            held = self._held.pop(event.kind, None)
            if held is not None:
                held.cancel()
        self._release_held()
        self._emit(event)

    def state(self, kind: EntryKind | None) -> None:
        """The lock's state as its stack reports it now (None: neither locked nor unlocked,
        e.g. jammed or not fully locked, which says nothing about who operated it)."""
        if kind is None or kind is EntryKind.ACCESS_DENIED:
            return
        before, self._state = self._state, kind
        if before is kind:
            # The same state republished: an operation report of this kind heard before moved
            # nothing (the door was already so) and explains no later change.
            self._heard.pop(kind, None)
            return
        if before is None:
            return  # where the lock stands
        loop = asyncio.get_running_loop()
        heard = self._heard.pop(kind, None)
        if heard is not None and loop.time() - heard <= self.window:
            return  # the operation report came first: it explains this change, and no other
        self._release_held()  # the other way first: the door moved since
        self._held[kind] = loop.call_later(self.window, self._unexplained, kind)

    def _release_held(self) -> None:
        """State changes still waiting are told now, in order, before what came after them."""
        for kind in list(self._held):
            self._held.pop(kind).cancel()
            self._emit(EntryEvent(kind, EntryMethod.UNKNOWN))

    def _unexplained(self, kind: EntryKind) -> None:
        """No operation report came for a state change: it is an operation all the same."""
        self._held.pop(kind, None)
        self._emit(EntryEvent(kind, EntryMethod.UNKNOWN))

    def close(self) -> None:
        """Drop the state changes still waiting (the driver is going away)."""
        for handle in self._held.values():
            handle.cancel()
        self._held.clear()
