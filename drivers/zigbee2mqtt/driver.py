"""The gateway side of a Zigbee lock behind Zigbee2MQTT, for one lock.

Zigbee2MQTT acknowledges nothing: a write is proven only by reading the user back, and the read's
answer arrives merged into the device's state message. That message is Zigbee2MQTT's deep-merged
cache of every user ever read, republished whole on every frame from the lock, so the same entry
comes again and again, often before the answer to a ``/get``. The driver keeps its own copy of
that cache: an entry that differs from it is news and answers at once; an unchanged one is
believed only once the lock has gone quiet (see :meth:`Zigbee2MqttDriver._exchange`).

A write is read back only once the lock is done with it, because Zigbee2MQTT serves ``/set`` and
``/get`` concurrently: the lock's own programming event for that user (source ``rf``: it is not
read again), a Zigbee2MQTT error about it, or :data:`SETTLE_SHARE` of the command timeout.
Refusals by the lock are silent (Zigbee2MQTT does not check ``setPinCodeRsp``): they show only
in the read-back. Error lines on ``B/bridge/logging`` count only when they are about a
``pin_code`` request of this user; their text quotes PINs, so it is redacted before use.

Commands go out one at a time. Gateway slots are 1-based, Zigbee2MQTT users 0-based:
``user = slot - 1`` is translated here and nowhere else.

Door operations come as ``action`` messages (the lock's Operation Event Notification: who,
how) and as changes of ``lock_state`` (its lockState attribute report); the two are paired into
one entry event (drivers/entry_pairing.py). ``action`` is never cached by Zigbee2MQTT: each
operation is one message, and the state messages after it do not carry it again. The lock is
said to report operations (``has_entry_events``) once its definition in ``B/bridge/devices``
exposes the lock's ``action`` enum, or once it has reported one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final

import aiomqtt

from drivers.base import (
    CommandFailed,
    CommandTimedOut,
    CommandTiming,
    DeviceSettings,
    Driver,
    SlotTable,
    SlotValue,
    Unreadable,
    WakeCallback,
)
from drivers.entry_pairing import EntryPairing
from drivers.pending import Waiting
from drivers.reachability import LinkedDriver
from drivers.zigbee2mqtt.config import Zigbee2MqttOptions
from drivers.zigbee2mqtt.protocol import (
    PROGRAMMING_ACTIONS,
    JsonObject,
    StateReport,
    Topics,
    UserEntry,
    clear_payload,
    entry_event,
    lock_state_kind,
    parse_availability,
    parse_devices,
    parse_logging_error,
    parse_state,
    read_payload,
    set_payload,
)
from gateway.domain import compact_slots
from gateway.logs import get_logger
from gateway.session import NotConnected, Session

__all__ = ["QUIET_SHARE", "SETTLE_SHARE", "Zigbee2MqttDriver", "create_driver"]

log = get_logger("drivers.zigbee2mqtt")

#: Share of ``command_timeout`` a write is given to land before it is read back, unless the lock
#: says sooner that it is done (a frame from it: its response republishes the state, or its
#: programming event) or Zigbee2MQTT that it failed (herdsman gives up after its own timeout).
SETTLE_SHARE: Final = 0.75
#: Share of ``command_timeout`` the lock must stay quiet before an unchanged entry (maybe just
#: the cache republished) is believed to be the answer to a read.
QUIET_SHARE: Final = 0.1

# Refusal sources (see drivers.reachability.Refusals): the state message's entries, and the two
# settings Zigbee2MQTT must have right, each raised as a device error until it is.
_STATE: Final = "state"
_SLOTS: Final = "slots"
_EXPOSE_PIN: Final = "expose_pin"


@dataclass(frozen=True, slots=True)
class _Candidate:
    entry: UserEntry
    fresh: bool  # differs from the cache: the lock's news, not a republish


@dataclass(slots=True)
class _Waiter:
    """The one command in flight, for ``user``: what arrives for it while it waits."""

    user: int
    baseline: UserEntry | None  # the cached entry when the command began
    answers: Waiting[_Candidate]  # candidates for the read's answer, or what ends the command
    reading: bool = False  # the /get went out: state messages may carry the answer
    written: asyncio.Event = field(default_factory=asyncio.Event)  # the write is done with
    write_failed: str | None = None  # Zigbee2MQTT's error about the write (redacted)


class Zigbee2MqttDriver(LinkedDriver[int, _Candidate]):
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
        session: Session,
        timing: CommandTiming,
        *,
        capacity: int,
        code_lengths: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(device_id, session, timing)
        self.topics = topics
        self.capacity = capacity
        self._code_lengths = code_lengths
        self._slots: dict[int, SlotValue] = {}
        self._waiter: _Waiter | None = None
        self._cache: dict[int, UserEntry] = {}  # Zigbee2MQTT's users, as last published
        self._own_writes: dict[int, float] = {}  # user -> until when its echo event is ours
        self._usable: int | None = None  # slots past this one Zigbee2MQTT refuses (range check)
        self._pins_hidden = False  # Zigbee2MQTT answers without PINs (expose_pin off)
        self._availability_seen = False  # since start; see not_found
        self._bridge_seen = False
        self._state_seen = False
        self._one_at_a_time = asyncio.Lock()
        self._wanted_reads: set[int] = set()  # slots changed at the lock, not yet asked for
        self._rereading: set[int] = set()  # those the worker was asked to read, not yet read
        self._operations = EntryPairing(self._heard_entry)
        # How ``B/bridge/devices`` spells this lock's name (JSON, as Zigbee2MQTT writes it).
        self._listed_as = json.dumps(topics.friendly_name, ensure_ascii=False).encode()

    # -- observed state ---------------------------------------------------------------------

    @property
    def not_found(self) -> str | None:
        """Zigbee2MQTT's ``availability`` is off by default, and without it the lock is never
        online: until ``B/N/availability`` has been heard on a connected broker, say what to
        check rather than leave the device offline without a word."""
        if self._availability_seen or not self._session.is_connected:
            return None
        t = self.topics
        if self._state_seen:
            return (
                f"Zigbee2MQTT publishes the lock at {t.state} but nothing at {t.availability}:"
                " turn on Zigbee2MQTT's availability feature"
            )
        if self._bridge_seen:
            return (
                f"Zigbee2MQTT is on the broker but the lock has not appeared at"
                f" {t.availability}: check friendly_name against the lock's name in"
                " Zigbee2MQTT, and turn on Zigbee2MQTT's availability feature"
            )
        return (
            f"neither the lock ({t.availability}) nor Zigbee2MQTT ({t.bridge_state}) has"
            " appeared on the broker: check that Zigbee2MQTT runs on this broker, and"
            " base_topic against its base_topic"
        )

    def _seen(self, *, availability: bool = False, bridge: bool = False) -> None:
        """A topic of the lock (its availability, else its state) or of the bridge arrived:
        maybe not lost any more."""
        before = self.not_found
        if availability:
            self._availability_seen = True
        elif bridge:
            self._bridge_seen = True
        else:
            self._state_seen = True
        if self.not_found != before:
            self._wake()

    async def start(self, wake: WakeCallback) -> None:
        self._begin(wake)
        availability = self._link.handler("availability", parse_availability)
        bridge_state = self._link.handler("bridge_state", parse_availability)

        def on_availability(message: aiomqtt.Message) -> None:
            self._seen(availability=True)
            availability(message)

        def on_bridge_state(message: aiomqtt.Message) -> None:
            self._seen(bridge=True)
            bridge_state(message)

        # Whether the lock can be found is judged on a connected broker only.
        self._session.on_connect(self._poke)
        self._session.on_disconnect(self._poke)
        await self._session.subscribe(self.topics.availability, on_availability)
        await self._session.subscribe(self.topics.bridge_state, on_bridge_state)
        await self._session.subscribe(self.topics.bridge_logging, self._on_logging)
        await self._session.subscribe(self.topics.bridge_devices, self._on_devices)
        await self._session.subscribe(self.topics.state, self._on_state)

    def _went_offline(self) -> None:
        if self._waiter is not None:
            self._waiter.written.set()  # settled as unknown: no use waiting for the write

    def _on_logging(self, message: aiomqtt.Message) -> None:
        error = parse_logging_error(message.payload, self.topics.friendly_name)
        if error is None:
            return
        log.warning("z2m.bridge_error", device_id=self.device_id, problem=error.message)
        waiter = self._waiter
        if waiter is None or not error.about_pin_codes:
            return  # "Failed to configure", "Publish 'set' 'state'": not about our command
        if error.user is not None and error.user != waiter.user:
            return  # somebody else's request for another user
        if error.out_of_range:
            self._beyond_definition(waiter.user + 1)
            waiter.answers.fail(
                CommandFailed("slot_out_of_range", f"slot {waiter.user + 1}: {error.message}")
            )
            waiter.written.set()
        elif error.verb == "set" and not waiter.reading:
            waiter.write_failed = error.message
            waiter.written.set()
        elif error.verb == "set":
            waiter.write_failed = waiter.write_failed or error.message
            waiter.answers.fail(CommandFailed("write_failed", error.message))
        elif error.verb == "get" and waiter.reading:
            # The read went nowhere: no answer will come.
            waiter.answers.fail(CommandTimedOut(f"slot {waiter.user + 1}: {error.message}"))

    def _on_devices(self, message: aiomqtt.Message) -> None:
        """Zigbee2MQTT's device list: does this lock's definition report door operations?
        The list holds the whole network and comes again on every change of it: read only
        until the answer is yes, and only when it names this lock."""
        payload = message.payload
        if not isinstance(payload, bytes) or self._hears_entries or self._listed_as not in payload:
            return
        try:
            reports = parse_devices(payload, self.topics.friendly_name)
        except ValueError as exc:
            log.warning("z2m.bad_devices", device_id=self.device_id, problem=str(exc))
            return
        if reports:
            self._reports_entries()

    def _operated(self, report: StateReport) -> None:
        """A door operation in a state message: its ``action``, else a change of its
        ``lock_state``. An action message carries the cache as it was, ``lock_state``
        included: only a message without one says the lock's state."""
        if report.action is None:
            self._operations.state(lock_state_kind(report))
            return
        event = entry_event(report)
        if event is not None:
            self._reports_entries()
            self._operations.operation(event)

    def _beyond_definition(self, slot: int) -> None:
        """Zigbee2MQTT refused ``slot`` as beyond the users of the lock's device definition:
        ``slots`` is set too high. Slots from there on are never asked for again, and the device
        carries the error until the configuration is fixed."""
        usable = slot - 1
        if self._usable is not None and self._usable <= usable:
            return
        self._usable = usable
        log.error(
            "z2m.slots_beyond_lock",
            device_id=self.device_id,
            configured_slots=self.capacity,
            usable=usable,
            problem=f"Zigbee2MQTT refuses slot {slot}: set the device's slots to {usable}",
        )
        self._refusals.refuse(
            _SLOTS,
            f"slots: Zigbee2MQTT refuses slot {slot} as beyond the lock's users;"
            f" set the device's slots to {usable}",
        )

    def _on_state(self, message: aiomqtt.Message) -> None:
        self._seen()
        try:
            report = parse_state(
                message.payload, capacity=self.capacity, code_lengths=self._code_lengths
            )
        except ValueError as exc:
            # Refused as a whole: it answers no read, and what the lock showed stays.
            self._refusals.refuse(_STATE, str(exc))
            return
        if report.refused:
            # The bad entries are left out; Zigbee2MQTT republishes them until they change.
            self._refusals.refuse(_STATE, report.refused[0])
        else:
            self._refusals.accept(_STATE)
        self._programming_event(report)
        self._operated(report)
        waiter = self._waiter
        if waiter is not None and not waiter.reading:
            waiter.written.set()  # a frame from the lock while it had the write: its response
        candidate = None
        if waiter is not None and waiter.reading and report.action is None:
            # An event message carries the cache as it was: it answers nobody's read.
            candidate = self._candidate(waiter, report)
        self._cache.update(report.users)
        if candidate is not None and waiter is not None:
            waiter.answers.put(candidate)

    def _candidate(self, waiter: _Waiter, report: StateReport) -> _Candidate | None:
        entry = report.users.get(waiter.user)
        if entry is None:
            return None
        before = self._cache.get(waiter.user)
        # News only against a cache the driver has seen: its first sight of Zigbee2MQTT's cache
        # may be years old (it is kept across restarts).
        fresh = before is not None and (
            entry != before or (waiter.baseline is not None and entry != waiter.baseline)
        )
        return _Candidate(entry, fresh)

    def _programming_event(self, report: StateReport) -> None:
        """A PIN changed at the lock or by someone else: read that user again. The lock's echo
        of the gateway's own write (over the radio, for a user just written) is no news; it
        only says the write is done."""
        user = report.action_user
        if report.action not in PROGRAMMING_ACTIONS or user is None:
            return
        loop = asyncio.get_running_loop()
        ours = not report.from_keypad and self._own_writes.get(user, float("-inf")) >= loop.time()
        if ours:
            # Kept until it expires: a radio may repeat the event.
            if self._waiter is not None and self._waiter.user == user:
                self._waiter.written.set()
            log.debug("z2m.write_echo", device_id=self.device_id, slot=user + 1)
            return
        self._changed_at_lock(user)

    def _observe(self, slot: int, value: SlotValue) -> None:
        """Record what the lock showed for ``slot``; wake only on a change."""
        if self._table is not None and self._slots.get(slot, Unreadable.UNKNOWN) == value:
            return
        self._slots[slot] = value
        self._publish_table()
        log.debug("z2m.slot", device_id=self.device_id, slot=slot)

    def _forget(self, slot: int) -> None:
        """The slot's content is unknown now (an unanswered write or a failed re-read)."""
        if slot in self._slots:
            del self._slots[slot]
            self._publish_table()

    def _publish_table(self) -> None:
        self._table = SlotTable(
            capacity=self.capacity,
            code_lengths=self._code_lengths,
            slots=compact_slots(self._slots),
        )
        self._wake()

    def _judge_pins(self, entry: UserEntry, before: UserEntry | None) -> None:
        """An answer shows whether Zigbee2MQTT exposes PINs. Without ``expose_pin`` a PIN the
        deep merge kept from earlier is a lie, so every PIN is distrusted from then on, and the
        device carries the error until an answer shows a PIN that cannot be a leftover: an
        empty slot's ``""``, or a PIN other than the one cached before."""
        if entry.hides_pin:
            hidden = True
        elif (entry.status == "available" and entry.pin_code == "") or (
            entry.pin_code and (before is None or before.pin_code != entry.pin_code)
        ):
            hidden = False
        else:
            return  # a PIN the merge may have kept, or not a getPinCode answer at all
        if hidden == self._pins_hidden:
            return
        self._pins_hidden = hidden
        if hidden:
            log.error(
                "z2m.pins_hidden",
                device_id=self.device_id,
                problem="Zigbee2MQTT answers without PINs: turn on the lock's expose_pin"
                " device option, or PINs cannot be checked",
            )
            self._refusals.refuse(
                _EXPOSE_PIN,
                "expose_pin: Zigbee2MQTT does not show this lock's PINs; turn on its"
                " expose_pin device option so that they can be checked",
            )
            # PINs shown so far may be what the merge kept: unreadable from now on.
            for slot, value in list(self._slots.items()):
                if isinstance(value, str):
                    self._slots[slot] = Unreadable.OCCUPIED
            self._publish_table()
        else:
            self._refusals.accept(_EXPOSE_PIN)

    # -- keypad and other changes behind our back ------------------------------------------

    def _changed_at_lock(self, user: int) -> None:
        """Ask the worker to read the slot again (it alone sends commands, paced), and wake it."""
        slot = user + 1
        if not 1 <= slot <= self._last_slot:
            log.warning("z2m.action_user_out_of_range", device_id=self.device_id, user=user)
            return
        log.info("z2m.slot_changed_at_lock", device_id=self.device_id, slot=slot)
        self._wanted_reads.add(slot)
        self._wake()

    def take_read_requests(self) -> frozenset[int]:
        """The slots changed at the lock since last asked: the worker reads them back."""
        taken = frozenset(self._wanted_reads)
        self._wanted_reads.clear()
        self._rereading |= taken
        return taken

    def _reread_failed(self, reason: str) -> None:
        """A read failed before it showed the slots changed at the lock: their content is
        unknown now (what the table shows is from before the change)."""
        for slot in sorted(self._rereading):
            log.warning("z2m.reread_failed", device_id=self.device_id, slot=slot, reason=reason)
            self._forget(slot)
        self._rereading.clear()

    # -- commands ---------------------------------------------------------------------------

    @property
    def _last_slot(self) -> int:
        """The highest slot that may be asked for: ``slots``, or fewer once Zigbee2MQTT has
        refused a slot as beyond the lock's device definition."""
        return self.capacity if self._usable is None else self._usable

    async def set_code(self, slot: int, code: str) -> None:
        self._check_slot(slot)

        def applied(entry: UserEntry) -> bool:
            if entry.status != "enabled":
                return False
            # Without expose_pin the lock only says "enabled": the best proof there is.
            return entry.pin_code == code or self._pins_hidden or entry.hides_pin

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
        lock battery and radio time, so the gateway asks only for the slots it needs. Slots
        Zigbee2MQTT refuses as beyond the lock's definition are not asked for: they stay
        unknown, and the device carries the configuration error."""
        wanted = sorted(slots) if slots is not None else range(1, self.capacity + 1)
        for slot in wanted:
            if not 1 <= slot <= self.capacity:
                raise CommandFailed("slot_out_of_range", f"slot {slot} of {self.capacity}")
            if slot > self._last_slot:
                continue
            try:
                await self._read_slot(slot)
            except CommandFailed as exc:
                if exc.reason != "slot_out_of_range" or slot <= self._last_slot:
                    self._reread_failed(exc.reason)
                    raise
                # Zigbee2MQTT just refused it as beyond the definition: the rest is too.
        if self._table is None:
            self._publish_table()  # every slot asked for is beyond the definition
        assert self._table is not None
        return self._table

    async def _read_slot(self, slot: int) -> None:
        await self._command(slot, None, None)
        self._rereading.discard(slot)

    def _check_slot(self, slot: int) -> None:
        if not 1 <= slot <= self._last_slot:
            raise CommandFailed("slot_out_of_range", f"slot {slot} of {self._last_slot}")

    async def _command(
        self,
        slot: int,
        write: JsonObject | None,
        expected: Callable[[UserEntry], bool] | None,
    ) -> UserEntry:
        """Publish ``write`` (if any) on ``/set``, let it land, then read ``slot`` back; the
        entry read. One command at a time per lock."""
        async with self._one_at_a_time:
            if not self._session.is_connected:
                raise CommandFailed("not_connected")
            if not self.online:
                raise CommandFailed("offline")
            user = slot - 1
            with self._pending.open(user) as answers:
                waiter = _Waiter(user=user, baseline=self._cache.get(user), answers=answers)
                self._waiter = waiter
                try:
                    entry = await self._exchange(slot, write, expected, waiter)
                except CommandTimedOut:
                    if write is not None:
                        self._forget(slot)  # the write may or may not have landed
                    raise
                finally:
                    self._waiter = None
        self._judge_pins(entry, waiter.baseline)
        self._observe(slot, entry.value(pins_hidden=self._pins_hidden))
        return entry

    async def _publish(self, topic: str, payload: JsonObject) -> None:
        # Each publish is bounded by its own timeout (see the native driver for why).
        try:
            await self._session.publish(topic, payload, timeout=self._timing.command_timeout)
        except NotConnected as exc:
            raise CommandFailed("not_connected", str(exc)) from None

    async def _exchange(
        self,
        slot: int,
        write: JsonObject | None,
        expected: Callable[[UserEntry], bool] | None,
        waiter: _Waiter,
    ) -> UserEntry:
        """The answer to one command, judged against Zigbee2MQTT's habits.

        A fresh entry (it differs from the cache) is the answer at once. An unchanged one may
        be the cache republished before the real answer, so it is taken once no other message
        came for :data:`QUIET_SHARE` of the timeout (the write has landed by then, so this is a
        silent refusal; were it not, ``not_applied`` only costs a verified retry), or at once
        when Zigbee2MQTT reported the write failed.
        """
        loop = asyncio.get_running_loop()
        timeout = self._timing.command_timeout
        if write is not None:
            self._own_writes[waiter.user] = loop.time() + 2 * timeout
            await self._publish(self.topics.set, write)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout * SETTLE_SHARE):
                    await waiter.written.wait()
        waiter.reading = True
        # A failure already in the queue (offline, out of range) ends the command below.
        if waiter.answers.empty():
            await self._publish(self.topics.get, read_payload(waiter.user))
        return await self._answer(slot, waiter, wrote=write is not None)

    async def _answer(self, slot: int, waiter: _Waiter, *, wrote: bool) -> UserEntry:
        """Wait for the answer to the read that follows every command (see ``_exchange``)."""
        loop = asyncio.get_running_loop()
        timeout = self._timing.command_timeout
        deadline = loop.time() + timeout
        doubtful: UserEntry | None = None
        while True:
            wait_until = deadline
            if doubtful is not None:
                wait_until = min(deadline, loop.time() + timeout * QUIET_SHARE)
            try:
                async with asyncio.timeout_at(wait_until):
                    answer = await waiter.answers.next()
            except TimeoutError:
                if doubtful is not None:
                    return doubtful  # nothing newer came: it was the answer after all
                detail = f"slot {slot}: no answer within {timeout:g}s"
                if waiter.write_failed is not None:
                    detail += f" ({waiter.write_failed})"
                raise CommandTimedOut(detail) from None
            except CommandFailed as failure:
                if failure.reason != "write_failed":
                    raise
                if doubtful is not None:
                    return doubtful  # the write failed: the unchanged entry stands
                continue
            if answer.fresh:
                return answer.entry
            doubtful = answer.entry
            if wrote and waiter.write_failed is not None:
                return doubtful


def create_driver(device: DeviceSettings, session: Session, timing: CommandTiming) -> Driver:
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
