"""A Zigbee lock behind Zigbee2MQTT, quirks included, for tests, demos and benches.

Like the real stack (Zigbee2MQTT 2.x, zigbee-herdsman-converters):

- a ``/set`` is never acknowledged. The lock's ``setPinCodeRsp`` status is not checked, so a
  refusal (a duplicate, a bad PIN, a user past the lock's real capacity) says nothing at all;
  only a write that never reached the lock fails aloud, with herdsman's error line on
  ``B/bridge/logging``, which quotes the ZCL payload, PIN included;
- ``/set`` and ``/get`` are served concurrently, and a write takes the lock longer than a read:
  a ``/get`` sent right after a ``/set`` is answered before the write has landed;
- every frame from the lock republishes the whole cached state (as with ``last_seen`` on): the
  write's response and the read's preceding frame show the cache as it was, before the answer;
- the cache is deep-merged: an answer without ``pin_code`` keeps the old one; with
  ``expose_pin`` an empty slot reads ``"pin_code": ""``; a user past the lock's real capacity
  reads ``not_supported_255``, and that entry stays in every later message;
- a user beyond the device definition's ``pinCodeCount`` is refused by the converter
  (``user must be in range for device``) before anything is sent;
- a PIN change makes the lock send a programming event: ``action_source_name`` ``rf`` for a
  write over the radio, ``keypad`` for one at the lock; the cache stays stale until read;
- a door operation (:meth:`SimulatedZigbee2MqttLock.publish_entry`) is an Operation Event
  Notification, one state message with ``action`` (``unlock`` from the ``keypad`` naming the
  0-based user, ``unlock_failure_invalid_pin_or_id`` for a wrong PIN, ``manual_unlock``,
  ``auto_lock``, ...) over the cache as it was, then the lockState attribute report: a state
  message with the new ``lock_state`` and no ``action``. An operation of unknown method plays
  a lock that sends no operation events: only its ``lock_state`` changes;
- ``B/bridge/devices`` (retained) lists the network's locks with their definitions: a lock
  whose ``entry_events`` are on exposes the ``action`` enum of the lock's operations.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine, Mapping
from typing import Any, Final

import aiomqtt

from drivers.base import EntryEvent, EntryKind, EntryMethod
from drivers.sim import SimCommand, SimSpec, SimulatedLock
from drivers.zigbee2mqtt.config import Zigbee2MqttOptions
from drivers.zigbee2mqtt.protocol import (
    KEYPAD,
    BadRequest,
    JsonObject,
    Topics,
    availability_payload,
    devices_payload,
    logging_error_payload,
    operation_payload,
    parse_get,
    parse_set,
    range_error_payload,
    set_timeout_payload,
    state_payload,
    unsupported_entry_payload,
    user_entry_payload,
)
from gateway.logs import get_logger
from gateway.session import NotConnected, Session

__all__ = ["SimulatedZigbee2MqttLock"]

log = get_logger("drivers.zigbee2mqtt.simulator")

#: Attributes a lock's state message carries besides ``users``.
_ATTRIBUTES: Final[Mapping[str, Any]] = {"battery": 80, "lock_state": "locked", "state": "LOCK"}
#: The converters' lockState and state of a lock locked or unlocked.
_LOCK_STATES: Final[Mapping[EntryKind, Mapping[str, str]]] = {
    EntryKind.LOCKED: {"lock_state": "locked", "state": "LOCK"},
    EntryKind.UNLOCKED: {"lock_state": "unlocked", "state": "UNLOCK"},
}
#: The Operation Event Notification a lock sends for an operation of a known method, as the
#: converters name it: (action, action_source_name); the keypad's PIN names its user.
_OPERATIONS: Final[Mapping[tuple[EntryKind, EntryMethod], tuple[str, str]]] = {
    (EntryKind.UNLOCKED, EntryMethod.KEYCODE): ("unlock", KEYPAD),
    (EntryKind.LOCKED, EntryMethod.KEYCODE): ("lock", KEYPAD),
    (EntryKind.ACCESS_DENIED, EntryMethod.KEYCODE): ("unlock_failure_invalid_pin_or_id", KEYPAD),
    (EntryKind.UNLOCKED, EntryMethod.REMOTE): ("unlock", "rf"),
    (EntryKind.LOCKED, EntryMethod.REMOTE): ("lock", "rf"),
    (EntryKind.ACCESS_DENIED, EntryMethod.REMOTE): ("unlock_failure_invalid_pin_or_id", "rf"),
    (EntryKind.UNLOCKED, EntryMethod.MANUAL): ("manual_unlock", "manual"),
    (EntryKind.LOCKED, EntryMethod.MANUAL): ("manual_lock", "manual"),
    (EntryKind.ACCESS_DENIED, EntryMethod.MANUAL): ("unlock_failure_invalid_pin_or_id", "manual"),
    (EntryKind.UNLOCKED, EntryMethod.AUTOMATIC): ("schedule_unlock", "manual"),
    (EntryKind.LOCKED, EntryMethod.AUTOMATIC): ("auto_lock", "manual"),
}
#: The locks each simulator connection plays, per base topic: ``B/bridge/devices`` lists them
#: all (one retained topic for the whole Zigbee network), whether each reports operations.
_NETWORKS: weakref.WeakKeyDictionary[Session, dict[str, dict[str, bool]]] = (
    weakref.WeakKeyDictionary()
)
#: A write takes the lock this many times its latency; a read takes one.
WRITE_LATENCIES: Final = 3
#: The userstatus a lock answers for a user it does not have.
NO_SUCH_USER: Final = 0xFF
#: Refusals by the lock itself: a ``setPinCodeRsp`` status Zigbee2MQTT does not look at.
_LOCK_REFUSALS: Final = frozenset({"duplicate_code", "invalid_code", "slot_out_of_range"})


class SimulatedZigbee2MqttLock(SimulatedLock):
    driver = "zigbee2mqtt"

    def __init__(self, spec: SimSpec, session: Session) -> None:
        #: Users the lock really has; beyond them it answers ``not_supported_255``. Set first:
        #: the initial codes are checked against it.
        self.lock_users = min(spec.settings.lock_users or spec.capacity, spec.capacity)
        super().__init__(spec, session)
        options = spec.device.options
        if not isinstance(options, Zigbee2MqttOptions):
            raise TypeError(f"{self.device_id}: zigbee2mqtt lock without Zigbee2MqttOptions")
        self.topics = Topics(options.base_topic, options.friendly_name)
        self.friendly_name = options.friendly_name
        self.expose_pin = spec.expose_pin
        #: Users of the Zigbee2MQTT device definition (``pinCodeCount``): the range check.
        self.pin_code_count = spec.settings.pin_code_count or self.capacity
        #: Zigbee2MQTT's cached ``users`` (0-based user -> entry), deep-merged, refreshed only
        #: by reads; tests may seed it as a ``state.json`` from before would.
        self.cache: dict[int, JsonObject] = {}
        self._actions: list[tuple[str, int]] = []  # keypad programming events to report
        self._programmed: dict[int, str] = {}  # user -> the radio write's programming event
        self._executing = 0
        #: The lock's attributes besides ``users`` (its lockState changes as the door operates).
        self.attributes: dict[str, Any] = dict(_ATTRIBUTES)

    def check_slot(self, slot: int | None) -> str | None:
        """The lock refuses users it does not have (silently, see :meth:`answer`)."""
        problem = super().check_slot(slot)
        if problem is None and slot is not None and slot > self.lock_users:
            return "slot_out_of_range"
        return problem

    # -- hearing the gateway ------------------------------------------------------------------

    async def subscribe(self) -> None:
        await self._session.subscribe(self.topics.set, self._on_set)
        await self._session.subscribe(self.topics.get, self._on_get)

    def _on_set(self, message: aiomqtt.Message) -> None:
        try:
            request = parse_set(message.payload)
        except BadRequest as exc:
            log.warning("sim.bad_set", device_id=self.device_id, problem=str(exc))
            slot = None if exc.user is None else exc.user + 1
            self.submit(SimCommand(op="set", slot=slot, refused=exc.error))
            return
        assert request.user is not None
        if self._out_of_definition(request.user, "set"):
            return
        slot = request.user + 1
        if request.pin_code is None:
            self.submit(SimCommand(op="clear", slot=slot))
        else:
            self.submit(SimCommand(op="set", slot=slot, code=request.pin_code))

    def _on_get(self, message: aiomqtt.Message) -> None:
        try:
            request = parse_get(message.payload)
        except BadRequest as exc:
            log.warning("sim.bad_get", device_id=self.device_id, problem=str(exc))
            self.submit(SimCommand(op="read", refused=exc.error))
            return
        if request.user is not None and self._out_of_definition(request.user, "get"):
            return
        slot = None if request.user is None else request.user + 1
        self.submit(SimCommand(op="read", slot=slot))

    def _out_of_definition(self, user: int, verb: str) -> bool:
        """Zigbee2MQTT's converter throws before anything reaches the lock."""
        if user < self.pin_code_count or not self.online:
            return False
        payload = range_error_payload(self.friendly_name, verb)
        self._background(self._session.publish(self.topics.bridge_logging, payload))
        return True

    def _background(self, publish: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(publish)
        task.add_done_callback(_quiet)

    # -- running: Zigbee2MQTT serves requests concurrently ---------------------------------------

    async def run(self) -> None:
        """Each command on its own, after its own latency: a read heard while a write is still
        being stored is answered from the slots as they were."""
        async with asyncio.TaskGroup() as tg:
            while True:
                command = await self._queue.get()
                tg.create_task(self._in_time(command), name=f"sim-z2m:{self.device_id}")

    async def _in_time(self, command: SimCommand) -> None:
        latency = self.faults.latency * (1 if command.op == "read" else WRITE_LATENCIES)
        if latency > 0:
            await asyncio.sleep(latency)
        try:
            await self._execute(command)
        except NotConnected:
            log.info("sim.answer_lost", device_id=self.device_id, op=command.op)

    async def _execute(self, command: SimCommand) -> None:
        self._executing += 1
        try:
            await super()._execute(command)
        finally:
            self._executing -= 1

    def write(self, slot: int, code: str | None) -> None:
        before = self.slots.get(slot)
        super().write(slot, code)
        self._programmed[slot - 1] = _programming_action(before, code)

    # -- speaking -----------------------------------------------------------------------------

    async def publish_availability(self) -> None:
        if self.online:
            # The bridge is up whenever one of its locks is heard; only a test takes it down.
            await self._session.publish(
                self.topics.bridge_state, availability_payload(True), retain=True
            )
        await self._session.publish(
            self.topics.availability, availability_payload(self.online), retain=True
        )
        await self._publish_devices()

    async def _publish_devices(self) -> None:
        """``B/bridge/devices``: every lock of this network, this one as its faults say."""
        network = _NETWORKS.setdefault(self._session, {}).setdefault(self.topics.base, {})
        network[self.friendly_name] = self.faults.entry_events
        devices = [
            device
            for name, operations in sorted(network.items())
            for device in devices_payload(name, operations=operations)
        ]
        await self._session.publish(self.topics.bridge_devices, devices, retain=True)

    async def publish_entry(self, event: EntryEvent) -> None:
        """The lock's Operation Event Notification (over the cache as it was), then its
        lockState report; only the latter for an operation of unknown method."""
        if not self.online or self.faults.silent:
            return
        operation = _OPERATIONS.get((event.kind, event.method))
        if operation is not None:
            action, source = operation
            user = (
                None
                if event.slot is None or event.kind is EntryKind.ACCESS_DENIED
                else (event.slot - 1)
            )
            await self._publish_state_message(**operation_payload(action, source, user))
        state = _LOCK_STATES.get(event.kind)
        if state is not None:
            self.attributes.update(state)
            await self._publish_state_message()

    async def publish_table(self) -> None:
        """The state message with the cached (maybe stale) ``users``, plus any keypad events.

        While a command runs this says nothing: its frames are published by :meth:`answer`.
        """
        if self._executing:
            return
        actions, self._actions = self._actions, []
        if not actions:
            await self._publish_state_message()
        for action, user in actions:
            await self._publish_state_message(
                action=action, action_user=user, action_source_name=KEYPAD
            )

    async def _publish_state_message(self, **action: Any) -> None:
        payload = state_payload(self.cache, **action, **self.attributes)
        await self._session.publish(self.topics.state, payload)

    def report_topic(self, report: Mapping[str, object]) -> tuple[str, bool] | None:
        return self.topics.state, False

    async def answer(self, command: SimCommand, error: str | None) -> None:
        if command.op == "read":
            await self._answer_read(command, error)
        elif error is None or error in _LOCK_REFUSALS:
            await self._answer_write(command)
        else:
            # The lock never answered: herdsman gives up and Zigbee2MQTT logs its text.
            user = (command.slot or 1) - 1
            await self._session.publish(
                self.topics.bridge_logging,
                set_timeout_payload(self.friendly_name, user, command.code),
            )

    async def _answer_write(self, command: SimCommand) -> None:
        """``setPinCodeRsp``, whatever its status: the cache republished as it was; then, if
        the lock stored something, its programming event over the radio."""
        await self._publish_state_message()
        user = (command.slot or 1) - 1
        action = self._programmed.pop(user, None)
        if action is not None:
            await self._publish_state_message(
                action=action, action_user=user, action_source_name="rf"
            )

    async def _answer_read(self, command: SimCommand, error: str | None) -> None:
        if error is not None:
            await self._session.publish(
                self.topics.bridge_logging,
                logging_error_payload(
                    self.friendly_name,
                    "get",
                    f"Error: ZCL command closuresDoorLock.getPinCode failed ({error})",
                ),
            )
            return
        if command.slot is not None and super().check_slot(command.slot) is not None:
            await self._answer_read(command, "slot_out_of_range")
            return
        # Another frame of the lock comes first: the cache, stale, republished whole.
        await self._publish_state_message()
        users = range(self.capacity) if command.slot is None else (command.slot - 1,)
        for user in users:
            self.cache[user] = {**self.cache.get(user, {}), **self.entry(user + 1)}
        await self._publish_state_message()

    def entry(self, slot: int) -> JsonObject:
        """What reading ``slot`` shows now (before Zigbee2MQTT merges it into its cache)."""
        if slot > self.lock_users:
            return unsupported_entry_payload(NO_SUCH_USER)
        return user_entry_payload(self.slots.get(slot), expose_pin=self.expose_pin)

    # -- the keypad ---------------------------------------------------------------------------

    def _keypad(self, value: object) -> bool:
        slot = value.get("slot") if isinstance(value, dict) else None
        changed = super()._keypad(value)
        if changed and isinstance(slot, int):
            self._actions.append((self._programmed.pop(slot - 1), slot - 1))
        return changed


def _programming_action(before: str | None, after: str | None) -> str:
    if after is None:
        return "pin_code_deleted"
    return "pin_code_added" if before is None else "pin_code_changed"


def _quiet(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and isinstance(task.exception(), NotConnected):
        log.info("sim.publish_lost", device_id="z2m")
