"""Whether a lock can be reached, for every driver: each signal its stack gives must say yes
(the lock's availability, a bridge or gateway status, a node status), and the broker link
must be up. And which of its reports were refused (:class:`Refusals`).

A driver declares its signals and hands each one's topic to :meth:`Reachability.handler`;
it is told once per change, to settle commands still waiting (an unreachable lock will not
answer) and to wake the reconciler.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType
from typing import ClassVar, Generic, TypeVar

import aiomqtt

from drivers.base import (
    CommandTimedOut,
    CommandTiming,
    EntryEvent,
    SlotTable,
    WakeCallback,
    no_wake,
)
from drivers.pending import Pending
from gateway.logs import get_logger
from gateway.session import Session

log = get_logger("drivers.reachability")

Parse = Callable[[bytes], bool]

#: Shared empty values: every lock has these, most never hold anything else.
_NO_SIGNALS: frozenset[str] = frozenset()
_NO_DEPENDENTS: Mapping[str, tuple[str, ...]] = MappingProxyType({})
_NO_SLOTS: frozenset[int] = frozenset()
#: Entry events a worker has not taken yet, per lock, beyond which new ones are dropped.
MAX_PENDING_ENTRIES = 100


class _SignalHandler:
    """The MQTT handler of one signal's topic (see :meth:`Reachability.handler`)."""

    __slots__ = ("_link", "_parse", "_signal")

    def __init__(self, link: Reachability, signal: str, parse: Parse) -> None:
        self._link = link
        self._signal = signal
        self._parse = parse

    def __call__(self, message: aiomqtt.Message) -> None:
        self._link._handle(self._signal, self._parse, message)


class Reachability:
    __slots__ = (
        "_dependents",
        "_device_id",
        "_down",
        "_forget",
        "_name",
        "_on_change",
        "_reported",
        "_session",
        "_signals",
        "_stale",
    )

    def __init__(
        self,
        *,
        device_id: str,
        session: Session,
        name: str,
        signals: Mapping[str, bool],
        forget_on_disconnect: Iterable[str],
        on_change: Callable[[bool], None],
        stale_after_down: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """``signals``: each signal's value until its stack reports it; ``forget_on_disconnect``:
        the retained ones, unknown (False) again until the broker resends them.

        ``stale_after_down``: per signal, the retained signals its going down leaves behind (a
        stack killed hard leaves its last statuses on the broker; its will says only that it
        went down). When it says down, each of them is unknown (False) until reported afresh;
        what arrives while it is known down is a leftover, kept aside as stale: only
        :meth:`confirm_stale` (the stack proved it is ready) brings such a value back."""
        self._device_id = device_id
        self._session = session
        self._name = name  # log prefix: native, z2m, zwave
        self._signals = dict(signals)
        self._forget = tuple(forget_on_disconnect)
        self._on_change = on_change
        self._reported = False
        self._dependents = (
            {k: tuple(v) for k, v in stale_after_down.items()}
            if stale_after_down
            else _NO_DEPENDENTS
        )
        # Signals reported down since the broker link came up (replaced, never changed).
        self._down = _NO_SIGNALS
        self._stale: dict[str, bool] = {}  # dependent -> its value left from before the down

    @property
    def online(self) -> bool:
        return all(self._signals.values()) and self._session.is_connected

    def says(self, signal: str) -> bool:
        return self._signals[signal]

    @property
    def stale(self) -> bool:
        """Whether a signal waits for a fresh report after its stack went down."""
        return bool(self._stale)

    def invalidate(self, signal: str) -> None:
        """The stack showed ``signal`` is not what it last said: unknown until reported again."""
        self._stale.pop(signal, None)
        self._signals[signal] = False
        self.check()

    def confirm_stale(self) -> None:
        """The stack proved it is ready: the values left from before it went down are its
        current ones (it was cut off from the broker, not restarted, and republishes nothing)."""
        if any(signal in self._down for signal in self._dependents):
            return  # down again meanwhile
        self._signals.update(self._stale)
        self._stale.clear()
        self.check()

    def start(self) -> None:
        self._session.on_disconnect(self._broker_lost)

    def handler(self, signal: str, parse: Parse) -> Callable[[aiomqtt.Message], None]:
        """The MQTT handler for one signal's topic; a payload it cannot parse changes nothing."""
        return _SignalHandler(self, signal, parse)

    def _handle(self, signal: str, parse: Parse, message: aiomqtt.Message) -> None:
        payload = message.payload
        try:
            value = parse(bytes(payload) if isinstance(payload, bytes | bytearray) else b"")
        except ValueError as exc:
            log.warning(f"{self._name}.bad_{signal}", device_id=self._device_id, problem=str(exc))
            return
        self._take(signal, value)

    def _take(self, signal: str, value: bool) -> None:
        dependents = self._dependents.get(signal)
        if dependents is not None:
            if value:
                self._down = self._down - {signal}
            else:
                self._down = self._down | {signal}
                for dependent in dependents:
                    if dependent not in self._stale:
                        self._stale[dependent] = self._signals[dependent]
                    self._signals[dependent] = False
        elif any(signal in self._dependents[down] for down in self._down):
            # A retained leftover replayed while its stack is down: not news of the stack.
            log.debug(f"{self._name}.stale_{signal}", device_id=self._device_id, value=value)
            self._stale[signal] = value
            return
        else:
            self._stale.pop(signal, None)
        self._signals[signal] = value
        self.check()

    def _broker_lost(self) -> None:
        for signal in self._forget:
            self._signals[signal] = False
        self._down = _NO_SIGNALS  # known again from the statuses the broker resends
        self.check()

    def check(self) -> None:
        """Tell the driver if reachability changed (also after the session reconnected)."""
        online = self.online
        if online == self._reported:
            return
        self._reported = online
        log.info(f"{self._name}.availability", device_id=self._device_id, online=online)
        self._on_change(online)


class Refusals:
    """The lock's reports a driver refused, per source (a topic, one slot's value topic), each
    until that source reports validly again; the driver's ``refused_report`` is the latest one
    still standing.

    Logged once per lock, not per message: a warning when the first refusal comes, ``info``
    when the last is lifted, ``debug`` in between, so a lock that keeps lying cannot flood the
    log. Reasons never hold a PIN (see drivers/bounds.py)."""

    __slots__ = ("_device_id", "_name", "_on_change", "_refused")

    def __init__(self, *, device_id: str, name: str, on_change: Callable[[], None]) -> None:
        self._device_id = device_id
        self._name = name
        self._on_change = on_change
        self._refused: dict[Hashable, str] = {}  # in order of refusal: the last is the latest

    @property
    def reason(self) -> str | None:
        return next(reversed(self._refused.values()), None)

    def refuse(self, source: Hashable, reason: str) -> None:
        before = self.reason
        self._refused.pop(source, None)
        self._refused[source] = reason
        if before is None:
            log.warning(f"{self._name}.report_refused", device_id=self._device_id, problem=reason)
        else:
            log.debug(f"{self._name}.report_refused", device_id=self._device_id, problem=reason)
        if reason != before:
            self._on_change()

    def accept(self, source: Hashable) -> None:
        """``source`` reported validly: its refusal, if any, is lifted."""
        if source not in self._refused:
            return
        before = self.reason
        del self._refused[source]
        if not self._refused:
            log.info(f"{self._name}.report_accepted", device_id=self._device_id)
        if self.reason != before:
            self._on_change()


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class LinkedDriver(abc.ABC, Generic[K, T]):
    """What every driver shares: its lock's identity, the session, the reconciler's wake
    callback, the last observed table, the lock's reachability, its refused reports, and its
    requests waiting for answers (``_pending``: answers of type ``T`` by key ``K``), all
    settled at once when the lock goes offline."""

    #: Log prefix and the stack's signals (see :class:`Reachability`).
    name: ClassVar[str]
    signals: ClassVar[Mapping[str, bool]]
    forget_on_disconnect: ClassVar[tuple[str, ...]]
    stale_after_down: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, device_id: str, session: Session, timing: CommandTiming) -> None:
        self.device_id = device_id
        self._session = session
        self._timing = timing
        self._wake: WakeCallback = no_wake
        self._table: SlotTable | None = None
        self._link = Reachability(
            device_id=device_id,
            session=session,
            name=self.name,
            signals=self.signals,
            forget_on_disconnect=self.forget_on_disconnect,
            on_change=self._reachability_changed,
            stale_after_down=self.stale_after_down,
        )
        self._refusals = Refusals(device_id=device_id, name=self.name, on_change=self._poke)
        self._pending: Pending[K, T] = Pending()
        self._entries: list[EntryEvent] = []
        self._hears_entries = False

    @property
    def online(self) -> bool:
        return self._link.online

    @property
    def has_entry_events(self) -> bool:
        return self._hears_entries

    def take_entry_events(self) -> list[EntryEvent]:
        """Entry events heard since the last call, oldest first."""
        taken, self._entries = self._entries, []
        return taken

    def _heard_entry(self, event: EntryEvent, *, proves: bool = True) -> None:
        """The parser of a driver heard the door operate: keep it for the worker, wake it.
        Bounded: a lock flooding events cannot grow the gateway's memory without end.

        The rule behind ``has_entry_events``, for every driver: a driver whose stack says at
        start that the lock reports its operations sets ``_hears_entries`` then; otherwise the
        first event heard sets it (``proves``: False for an event that cannot name a slot's
        code, such as a bare lock state), and the worker stores it for good."""
        if proves:
            self._hears_entries = True
        log.info(
            f"{self.name}.door_operated",
            device_id=self.device_id,
            kind=event.kind.value,
            method=event.method.value,
            slot=event.slot,
        )
        if len(self._entries) < MAX_PENDING_ENTRIES:
            self._entries.append(event)
        else:
            log.warning(f"{self.name}.entry_events_dropped", device_id=self.device_id)
        self._poke()

    def _reports_entries(self) -> None:
        """The stack says this lock reports door operations (before any was heard): the
        worker records ``has_native_entry_events``."""
        if not self._hears_entries:
            self._hears_entries = True
            log.info(f"{self.name}.entry_events", device_id=self.device_id)
            self._poke()

    @property
    def table(self) -> SlotTable | None:
        return self._table

    @property
    def refused_report(self) -> str | None:
        return self._refusals.reason

    @property
    def not_found(self) -> str | None:
        return None  # a driver that can tell a wrong address from an absent lock says so

    def _poke(self) -> None:
        self._wake()  # looked up on each call: ``start`` replaces the callback

    def _begin(self, wake: WakeCallback) -> None:
        """The first step of ``start``: take the wake callback, follow the broker link."""
        self._wake = wake
        self._link.start()

    def take_read_requests(self) -> frozenset[int]:
        """Slots the driver saw change behind the gateway's back since last asked, for the
        worker to read back (a driver that sees every change in its reports has none)."""
        return _NO_SLOTS

    def _reachability_changed(self, online: bool) -> None:
        """An unreachable lock will not answer: settle what waits on it now rather than after
        its timeout (the outcome is unknown, hence a timeout, not a refusal); wake the
        reconciler."""
        if not online:
            self._pending.settle_all(CommandTimedOut("the lock went offline"))
            self._went_offline()
        self._wake()

    def _went_offline(self) -> None:
        """What else of the driver waits on the lock (not an answer to a request)."""
