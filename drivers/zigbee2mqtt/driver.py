"""The gateway side of a Zigbee lock behind Zigbee2MQTT, for one lock.

Zigbee2MQTT acknowledges nothing: a write is proven only by reading the user back, and the read's
answer arrives merged into the device's state message, which also carries Zigbee2MQTT's cache of
every user read before (stale as soon as anything changes behind its back). So the driver trusts a
``users`` entry only when it answers a read the driver asked for; a programming ``action``
(``pin_code_added`` / ``_deleted`` / ``_changed``, from the keypad or anyone) makes it read that
user again. Commands go out one at a time. Gateway slots are 1-based, Zigbee2MQTT users 0-based:
``user = slot - 1`` is translated here and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import aiomqtt

from drivers.base import (
    CommandFailed,
    CommandTimedOut,
    Driver,
    SlotTable,
    SlotValue,
    Unreadable,
    WakeCallback,
)
from drivers.reachability import LinkedDriver
from drivers.zigbee2mqtt.config import Zigbee2MqttOptions
from drivers.zigbee2mqtt.protocol import (
    JsonObject,
    Topics,
    UserEntry,
    clear_payload,
    parse_availability,
    parse_logging_error,
    parse_state,
    read_payload,
    set_payload,
)
from gateway.config import DeviceConfig, Timing
from gateway.logs import get_logger
from gateway.mqtt import MqttSession, NotConnected

__all__ = ["Zigbee2MqttDriver", "create_driver"]

log = get_logger("drivers.zigbee2mqtt")


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A state message's entry for a user being read. ``fresh``: it differs from the entry the
    previous state message carried, so Zigbee2MQTT's cache changed: it is an answer, not a
    republished cache."""

    entry: UserEntry
    fresh: bool


@dataclass(slots=True)
class _Waiter:
    """One read in flight: the candidate answers in arrival order, and what went wrong."""

    answers: asyncio.Queue[_Candidate | CommandTimedOut] = field(default_factory=asyncio.Queue)
    bridge_error: str | None = None


class Zigbee2MqttDriver(LinkedDriver):
    """One lock ``topics.state`` behind Zigbee2MQTT, with ``capacity`` users (from the config)."""

    name = "z2m"
    # B/N/availability is forgotten when the broker link drops (it is resent, retained);
    # a bridge that never said anything blocks nothing.
    signals: ClassVar[Mapping[str, bool]] = {"availability": False, "bridge_state": True}
    forget_on_disconnect = ("availability",)

    def __init__(
        self,
        device_id: str,
        topics: Topics,
        session: MqttSession,
        timing: Timing,
        *,
        capacity: int,
        code_lengths: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(device_id, session, timing)
        self.topics = topics
        self.capacity = capacity
        self._code_lengths = code_lengths
        self._slots: dict[int, SlotValue] = {}
        self._pending: dict[int, _Waiter] = {}  # user -> read in flight
        self._cache: dict[int, UserEntry] = {}  # Zigbee2MQTT's users, as last published
        self._one_at_a_time = asyncio.Lock()
        self._rereads: set[asyncio.Task[None]] = set()

    # -- observed state ---------------------------------------------------------------------

    async def start(self, wake: WakeCallback) -> None:
        self._begin(wake)
        await self._session.subscribe(
            self.topics.availability, self._link.handler("availability", parse_availability)
        )
        await self._session.subscribe(
            self.topics.bridge_state, self._link.handler("bridge_state", parse_availability)
        )
        await self._session.subscribe(self.topics.bridge_logging, self._on_logging)
        await self._session.subscribe(self.topics.state, self._on_state)

    def _reachability_changed(self, online: bool) -> None:
        if not online:
            # Nothing will answer now: settle waiting reads at once, as unknown outcomes.
            for waiter in self._pending.values():
                waiter.answers.put_nowait(CommandTimedOut("the lock went offline"))
        self._wake()

    def _on_logging(self, message: aiomqtt.Message) -> None:
        problem = parse_logging_error(message.payload, self.topics.friendly_name)
        if problem is None:
            return
        log.warning("z2m.bridge_error", device_id=self.device_id, problem=problem)
        for waiter in self._pending.values():
            if waiter.bridge_error is None:
                waiter.bridge_error = problem

    def _on_state(self, message: aiomqtt.Message) -> None:
        try:
            report = parse_state(
                message.payload, capacity=self.capacity, code_lengths=self._code_lengths
            )
        except ValueError as exc:
            # Refused as a whole: it answers no read, and what the lock showed stays.
            self._refusals.refuse("state", str(exc))
            return
        self._refusals.accept("state")
        changed_user = report.programming_user
        if changed_user is not None:
            self._reread_later(changed_user)
        if report.action is not None:
            # An event message: its ``users`` is the cache as it was, answering nobody's read.
            return
        for user, waiter in self._pending.items():
            entry = report.users.get(user)
            if entry is not None:
                fresh = self._cache.get(user) != entry
                waiter.answers.put_nowait(_Candidate(entry, fresh=fresh))
        self._cache.update(report.users)

    def _observe(self, slot: int, value: SlotValue) -> None:
        """Record what the lock showed for ``slot``; wake only on a change."""
        if self._table is not None and self._slots.get(slot, Unreadable.UNKNOWN) == value:
            return
        self._slots[slot] = value
        self._table = SlotTable(
            capacity=self.capacity, code_lengths=self._code_lengths, slots=dict(self._slots)
        )
        log.debug("z2m.slot", device_id=self.device_id, slot=slot)
        self._wake()

    def _forget(self, slot: int) -> None:
        """The slot's content is unknown now (an unanswered write or a failed re-read)."""
        if slot in self._slots:
            del self._slots[slot]
            self._table = SlotTable(
                capacity=self.capacity, code_lengths=self._code_lengths, slots=dict(self._slots)
            )
            self._wake()

    # -- keypad and other changes behind our back ------------------------------------------

    def _reread_later(self, user: int) -> None:
        slot = user + 1
        if not 1 <= slot <= self.capacity:
            log.warning("z2m.action_user_out_of_range", device_id=self.device_id, user=user)
            return
        task = asyncio.get_running_loop().create_task(
            self._reread(slot), name=f"z2m-reread:{self.device_id}:{slot}"
        )
        self._rereads.add(task)
        task.add_done_callback(self._rereads.discard)

    async def _reread(self, slot: int) -> None:
        log.info("z2m.slot_changed_at_lock", device_id=self.device_id, slot=slot)
        try:
            await self._read_slot(slot)
        except CommandFailed as exc:
            log.warning("z2m.reread_failed", device_id=self.device_id, slot=slot, reason=exc.reason)
            self._forget(slot)

    # -- commands ---------------------------------------------------------------------------

    async def set_code(self, slot: int, code: str) -> None:
        self._check_slot(slot)

        # Without expose_pin the lock only says "enabled": the best proof there is.
        def applied(entry: UserEntry) -> bool:
            return entry.status == "enabled" and entry.pin_code in (None, code)

        entry = await self._command(slot, set_payload(slot - 1, code), applied)
        if not applied(entry):
            raise CommandFailed("not_applied", f"slot {slot} reads back otherwise")

    async def clear_slot(self, slot: int) -> None:
        self._check_slot(slot)

        def cleared(entry: UserEntry) -> bool:
            return entry.status == "available"

        entry = await self._command(slot, clear_payload(slot - 1), cleared)
        if not cleared(entry):
            raise CommandFailed("not_applied", f"slot {slot} is still occupied")

    async def read(self, slots: Collection[int] | None = None) -> SlotTable:
        """Every slot (or just ``slots``), one by one, as slow as the lock: each read costs the
        lock battery and radio time, so the gateway asks only for the slots it needs."""
        for slot in sorted(slots) if slots is not None else range(1, self.capacity + 1):
            self._check_slot(slot)
            await self._read_slot(slot)
        assert self._table is not None
        return self._table

    async def _read_slot(self, slot: int) -> SlotValue:
        return (await self._command(slot, None, None)).value()

    def _check_slot(self, slot: int) -> None:
        if not 1 <= slot <= self.capacity:
            raise CommandFailed("slot_out_of_range", f"slot {slot} of {self.capacity}")

    async def _command(
        self,
        slot: int,
        write: JsonObject | None,
        expected: Callable[[UserEntry], bool] | None,
    ) -> UserEntry:
        """Publish ``write`` (if any) on ``/set``, then read ``slot`` back; the entry read.

        One command at a time per lock. A read answer is the first state message carrying the
        user after the ``/get``. After a write, one that does not show ``expected`` might still
        be Zigbee2MQTT republishing its old cache just before the answer, so it is taken only if
        it is fresh (the cache changed), or the bridge logged an error, or nothing better comes
        before the timeout.
        """
        async with self._one_at_a_time:
            if not self._session.is_connected:
                raise CommandFailed("not_connected")
            if not self.online:
                raise CommandFailed("offline")
            user = slot - 1
            waiter = _Waiter()
            self._pending[user] = waiter
            try:
                entry = await self._exchange(slot, write, expected, waiter)
            except CommandTimedOut:
                if write is not None:
                    self._forget(slot)  # the write may or may not have landed
                raise
            finally:
                del self._pending[user]
        self._observe(slot, entry.value())
        return entry

    async def _exchange(
        self,
        slot: int,
        write: JsonObject | None,
        expected: Callable[[UserEntry], bool] | None,
        waiter: _Waiter,
    ) -> UserEntry:
        loop = asyncio.get_running_loop()
        timeout = self._timing.command_timeout
        deadline = loop.time() + timeout
        # Each publish is bounded by its own timeout (see the native driver for why).
        try:
            if write is not None:
                await self._session.publish(self.topics.set, write, timeout=timeout)
            await self._session.publish(self.topics.get, read_payload(slot - 1), timeout=timeout)
        except NotConnected as exc:
            raise CommandFailed("not_connected", str(exc)) from None
        doubtful: UserEntry | None = None
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    answer = await waiter.answers.get()
                    if isinstance(answer, CommandTimedOut):
                        raise answer
                    done = expected is None or expected(answer.entry)
                    if done or answer.fresh or waiter.bridge_error is not None:
                        return answer.entry
                    doubtful = answer.entry
        except TimeoutError:
            if doubtful is not None:
                return doubtful  # it was the answer after all: the write did not take
            detail = f"slot {slot}: no answer within {timeout:g}s"
            if waiter.bridge_error is not None:
                detail += f" ({waiter.bridge_error})"
            raise CommandTimedOut(detail) from None


def create_driver(device: DeviceConfig, session: MqttSession, timing: Timing) -> Driver:
    options = device.options
    if not isinstance(options, Zigbee2MqttOptions):
        raise TypeError(f"{device.device_id}: the zigbee2mqtt driver needs Zigbee2MqttOptions")
    if device.slots is None:
        raise TypeError(f"{device.device_id}: the zigbee2mqtt driver needs slots")
    return Zigbee2MqttDriver(
        device.device_id,
        Topics(options.base_topic, options.friendly_name),
        session,
        timing,
        capacity=device.slots,
        code_lengths=device.code_lengths,
    )
