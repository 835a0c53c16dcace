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
from typing import ClassVar

import aiomqtt

from drivers.base import SlotTable, WakeCallback, no_wake
from gateway.config import Timing
from gateway.logs import get_logger
from gateway.mqtt import MqttSession

log = get_logger("drivers.reachability")

Parse = Callable[[bytes], bool]


class Reachability:
    def __init__(
        self,
        *,
        device_id: str,
        session: MqttSession,
        name: str,
        signals: Mapping[str, bool],
        forget_on_disconnect: Iterable[str],
        on_change: Callable[[bool], None],
    ) -> None:
        """``signals``: each signal's value until its stack reports it; ``forget_on_disconnect``:
        the retained ones, unknown (False) again until the broker resends them."""
        self._device_id = device_id
        self._session = session
        self._name = name  # log prefix: native, z2m, zwave
        self._signals = dict(signals)
        self._forget = tuple(forget_on_disconnect)
        self._on_change = on_change
        self._reported = False

    @property
    def online(self) -> bool:
        return all(self._signals.values()) and self._session.is_connected

    def says(self, signal: str) -> bool:
        return self._signals[signal]

    def start(self) -> None:
        self._session.on_disconnect(self._broker_lost)

    def handler(self, signal: str, parse: Parse) -> Callable[[aiomqtt.Message], None]:
        """The MQTT handler for one signal's topic; a payload it cannot parse changes nothing."""

        def handle(message: aiomqtt.Message) -> None:
            payload = message.payload
            try:
                value = parse(bytes(payload) if isinstance(payload, bytes | bytearray) else b"")
            except ValueError as exc:
                log.warning(
                    f"{self._name}.bad_{signal}", device_id=self._device_id, problem=str(exc)
                )
                return
            self._signals[signal] = value
            self.check()

        return handle

    def _broker_lost(self) -> None:
        for signal in self._forget:
            self._signals[signal] = False
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


class LinkedDriver(abc.ABC):
    """What every driver shares: its lock's identity, the session, the reconciler's wake
    callback, the last observed table, the lock's reachability and its refused reports."""

    #: Log prefix and the stack's signals (see :class:`Reachability`).
    name: ClassVar[str]
    signals: ClassVar[Mapping[str, bool]]
    forget_on_disconnect: ClassVar[tuple[str, ...]]

    def __init__(self, device_id: str, session: MqttSession, timing: Timing) -> None:
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
        )
        self._refusals = Refusals(device_id=device_id, name=self.name, on_change=self._poke)

    @property
    def online(self) -> bool:
        return self._link.online

    @property
    def table(self) -> SlotTable | None:
        return self._table

    @property
    def refused_report(self) -> str | None:
        return self._refusals.reason

    def _poke(self) -> None:
        self._wake()  # looked up on each call: ``start`` replaces the callback

    def _begin(self, wake: WakeCallback) -> None:
        """The first step of ``start``: take the wake callback, follow the broker link."""
        self._wake = wake
        self._link.start()

    @abc.abstractmethod
    def _reachability_changed(self, online: bool) -> None:
        """Settle what waits on the lock when it goes away; wake the reconciler."""
