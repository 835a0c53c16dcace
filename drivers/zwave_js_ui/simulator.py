"""A lock behind Z-Wave JS UI's MQTT gateway, for tests, demos and benches.

It publishes what the real gateway publishes (see the captures in the fixtures): retained
gateway and node status, retained ``{"time", "value"}`` value topics per slot (``userIdStatus``
before ``userCode``), nothing at all in answer to a write on a value topic but the slot's value
topics republished once the lock has "read it back" (after the simulator latency), and API
replies on ``.../api/<api>`` echoing the request as ``origin``.

Faults keep their meaning in this protocol: ``fail_next`` (and any refusal) leaves the slot as it
was and republishes its unchanged values, as zwave-js does after reading back a write the lock
refused; ``silent`` publishes nothing; ``online: false`` makes the node Dead.

Z-Wave JS UI itself can be crashed and restarted (the ``stack`` control key, as seen on the real
one): ``crash`` publishes only its will (the gateway status false; the retained driver and node
statuses stay as they were); ``start`` says the gateway is up, but until ``ready`` its Z-Wave
driver is not: API calls are answered "Z-Wave client not connected" and value writes are
dropped without a word; ``ready`` publishes the driver status, the node status and every value.
``unread`` (a list of slots) plays zwave-js after an interview without ``queryAllUserCodes``:
those slots' value topics carry no ``value`` until the slot is read or written.

Door operations (:meth:`SimulatedZwaveJsUiLock.publish_entry`) are what zwave-js makes of the
lock's Notification CC Access Control reports, published once and not retained: a PIN typed
at the keypad is ``Keypad_unlock_operation`` ``{"userId": <slot>}``, a wrong one
``Manually_enter_user_access_code_exceeds_code_limit`` (no parameters: no ``value``), then
``Manual_*``, ``RF_*``, ``Auto_lock_locked_operation``; each lock or unlock then changes the
Door Lock CC's retained ``currentMode`` (255 secured, 0 unsecured). An operation of unknown
method, or an automatic unlock (Access Control has no such event), changes only the mode. With
its ``entry_events`` on, the node shows the retained Access Control ``Lock_state`` value, as
zwave-js creates it for a lock with Notification CC Access Control.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import aiomqtt

from drivers.base import EntryEvent, EntryKind, EntryMethod
from drivers.sim import SimCommand, SimSpec, SimulatedLock
from drivers.zwave_js_ui.config import ZwaveJsUiOptions
from drivers.zwave_js_ui.protocol import (
    ACCESS_CONTROL,
    MISSING,
    NOTIFICATION_EVENTS,
    api_reply_payload,
    gateway_status_payload,
    node_status_payload,
    notification_payload,
    parse_api_request,
    parse_set_request,
    value_payload,
)
from gateway.logs import get_logger
from gateway.session import NotConnected, Session

__all__ = ["SimulatedZwaveJsUiLock"]

log = get_logger("drivers.zwave_js_ui.simulator")

MASK = "*" * 10  # what a lock that hides its codes reports for an occupied slot
APIS = ("sendCommand", "pollValue", "getInfo")
#: Z-Wave JS UI's answer to every API call while its Z-Wave driver is not ready.
NOT_CONNECTED = "Z-Wave client not connected"
#: What the real stack's ``getInfo`` answers with, in part (no radio trip).
INFO = {"appVersion": "11.22.2", "zwaveVersion": "15.29.0", "status": "driver ready"}

#: The Access Control event zwave-js publishes for each operation it has one for.
_EVENTS: dict[tuple[EntryKind, EntryMethod], tuple[str, str]] = {}
for _event, _what in NOTIFICATION_EVENTS.items():
    if _event[0] == ACCESS_CONTROL:
        _EVENTS.setdefault(_what, _event)
#: Door Lock CC ``currentMode``: secured, unsecured.
_MODES = {EntryKind.LOCKED: 0xFF, EntryKind.UNLOCKED: 0x00}

Stack = Literal["up", "down", "starting"]
STACK_KEY = "stack"
UNREAD_KEY = "unread"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class _Request:
    """An API request waiting in the lock's queue: what to answer, and on which topic."""

    api: str
    method: str  # sendCommand's method, or the polled property for pollValue
    args: list[Any]
    origin: Mapping[str, Any]


class SimulatedZwaveJsUiLock(SimulatedLock):
    driver = "zwave_js_ui"

    def __init__(self, spec: SimSpec, session: Session) -> None:
        super().__init__(spec, session)
        options = spec.device.options
        if not isinstance(options, ZwaveJsUiOptions):
            raise TypeError(f"{self.device_id}: zwave_js_ui lock without ZwaveJsUiOptions")
        self.topics = options.topics()
        self._requests: dict[str, _Request] = {}
        self.stack: Stack = "up"  # Z-Wave JS UI in front of the lock
        self.unread: set[int] = set()  # slots zwave-js has not read: published without value
        self._tasks: set[asyncio.Task[None]] = set()
        self.mode = _MODES[EntryKind.LOCKED]  # the Door Lock CC's currentMode

    # -- hearing ----------------------------------------------------------------------

    async def subscribe(self) -> None:
        for slot in range(1, self.capacity + 1):
            await self._session.subscribe(
                self.topics.user_code(slot) + "/set", partial(self._on_set_code, slot)
            )
            await self._session.subscribe(
                self.topics.user_id_status(slot) + "/set", partial(self._on_set_status, slot)
            )
        for api in APIS:
            await self._session.subscribe(self.topics.api_request(api), partial(self._on_api, api))

    def _on_set_code(self, slot: int, message: aiomqtt.Message) -> None:
        if self.stack != "up":
            return  # dropped without a word: nobody there, or its driver not ready
        try:
            value = parse_set_request(message.payload)
        except ValueError as exc:
            log.warning("sim.bad_set", device_id=self.device_id, problem=str(exc))
            return
        if not isinstance(value, str):
            # zwave-js takes a bare number as a number and refuses it without a word.
            log.info("sim.set_refused_silently", device_id=self.device_id, slot=slot)
            return
        self.submit(SimCommand(op="set", slot=slot, code=value))

    def _on_set_status(self, slot: int, message: aiomqtt.Message) -> None:
        if self.stack != "up":
            return
        try:
            value = parse_set_request(message.payload)
        except ValueError as exc:
            log.warning("sim.bad_set", device_id=self.device_id, problem=str(exc))
            return
        if _int(value) == 0:
            self.submit(SimCommand(op="clear", slot=slot))
        else:
            log.info("sim.status_write_ignored", device_id=self.device_id, slot=slot)

    def _on_api(self, api: str, message: aiomqtt.Message) -> None:
        try:
            args, origin = parse_api_request(message.payload)
        except ValueError as exc:
            log.warning("sim.bad_api_request", device_id=self.device_id, problem=str(exc))
            return
        if self.stack == "down":
            return
        if self.stack == "starting" or api == "getInfo":
            # Answered at once by Z-Wave JS UI itself, without a radio trip.
            ready = self.stack == "up"
            reply = api_reply_payload(
                ready, INFO if ready else None, args, origin, "" if ready else NOT_CONNECTED
            )
            self._soon(self._session.publish(self.topics.api_reply(api), reply))
            return
        target = args[0] if args and isinstance(args[0], dict) else {}
        if _int(target.get("nodeId")) != self.topics.node_id:
            return  # another node's request: another lock answers it
        if not self.online or self.faults.silent:
            return  # dropped unheard (submit would drop it too, and the request would linger)
        token = str(uuid.uuid4())
        if api == "pollValue":
            prop, slot = target.get("property"), _int(target.get("propertyKey"))
            self._requests[token] = _Request(api, str(prop), args, origin)
            refused = None if prop in ("userCode", "userIdStatus") else "unsupported property"
            self.submit(SimCommand(op="read", slot=slot, token=token, refused=refused))
            return
        method = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        params = args[2] if len(args) > 2 and isinstance(args[2], list) else []
        self._requests[token] = _Request(api, method, args, origin)
        first = _int(params[0]) if params else None
        if method == "get":
            self.submit(SimCommand(op="read", slot=first, token=token))
        elif method == "getUsersCount":
            self.submit(SimCommand(op="read", token=token))
        elif method == "set" and len(params) == 3 and isinstance(params[2], str):
            self.submit(SimCommand(op="set", slot=first, code=params[2], token=token))
        elif method == "clear":
            self.submit(SimCommand(op="clear", slot=first, token=token))
        else:
            self.submit(SimCommand(op="read", token=token, refused=f"unsupported: {method}"))

    # -- the lock at work ---------------------------------------------------------------

    async def _execute(self, command: SimCommand) -> None:
        """The base class's order of faults, answered the Z-Wave JS UI way."""
        faults = self.faults
        if not self.online or faults.silent:
            self._forget(command)
            return
        if faults.consume("silent_next"):
            self._forget(command)
            await self._publish_state()
            return
        if command.op == "read":
            await self._read(command)
            return
        slot = command.slot
        failing = faults.consume("fail_next")
        if failing or command.refused is not None or slot is None:
            await self._refused(command, faults.error if failing else command.refused)
            return
        if command.op == "set":
            problem = self.check_set(slot, command.code)
        else:
            problem = self.check_slot(slot)
        if problem is not None:
            await self._refused(command, problem)
            return
        if command.op == "set" and faults.consume("ignore_writes_next"):
            # The lock acknowledged but kept the old code: the read-back shows the truth.
            await self.publish_slot(slot)
            await self.answer(command, None)
            await self._publish_state()
            return
        self.write(slot, command.code if command.op == "set" else None)
        log.debug("sim.written", device_id=self.device_id, slot=slot, code=command.code)
        if faults.consume("apply_silently_next"):
            self._forget(command)  # applied, but the read-back never reached the gateway
            await self._publish_state()
            return
        await self.publish_slot(slot)
        await self.answer(command, None)

    async def _refused(self, command: SimCommand, error: str | None) -> None:
        """zwave-js reads back a refused write: the slot's unchanged values, newly stamped."""
        slot = command.slot
        if command.op != "read" and slot is not None and self.check_slot(slot) is None:
            await self.publish_slot(slot)
        await self.answer(command, error or "internal")
        await self._publish_state()

    async def _read(self, command: SimCommand) -> None:
        request = self._requests.get(command.token or "")
        if self.faults.consume("fail_next"):
            await self.answer(command, self.faults.error)
            await self._publish_state()
            return
        if command.refused is not None or request is None:
            await self.answer(command, command.refused or "internal")
            return
        if request.method == "getUsersCount":
            await self._reply(command, True, self.capacity)
            return
        slot = command.slot
        if slot is None or self.check_slot(slot) is not None:
            await self.answer(command, "slot_out_of_range")
            return
        await self.publish_slot(slot)
        status, code = self._slot_values(slot)
        if request.api == "pollValue":
            result: object = code if request.method == "userCode" else status
        else:
            result = {"userIdStatus": status, "userCode": code}
        await self._reply(command, True, result)

    def _forget(self, command: SimCommand) -> None:
        if command.token is not None:
            self._requests.pop(command.token, None)

    # -- speaking ---------------------------------------------------------------------

    def _slot_values(self, slot: int) -> tuple[int, str]:
        code = self.slots.get(slot)
        if code is None:
            return 0, ""
        return 1, code if self.spec.expose_pin else MASK

    def _soon(self, coro: Coroutine[Any, Any, None]) -> None:
        """Publish from a message handler; a lost connection loses the message, as it would."""

        async def quietly() -> None:
            with contextlib.suppress(NotConnected):
                await coro

        task = asyncio.get_running_loop().create_task(quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish_slot(self, slot: int) -> None:
        """The slot's two value topics, as zwave-js reports a User Code read (or a write's
        read-back): the slot counts as read from now on."""
        self.unread.discard(slot)
        await self._publish_values(slot)

    async def _publish_values(self, slot: int) -> None:
        """The slot's two value topics as they stand, status first; no ``value`` if unread."""
        if self.stack != "up":
            return  # nobody there to report it
        status, code = (MISSING, MISSING) if slot in self.unread else self._slot_values(slot)
        now = _now_ms()
        await self._session.publish(
            self.topics.user_id_status(slot), value_payload(status, now), retain=True
        )
        await self._session.publish(
            self.topics.user_code(slot), value_payload(code, now), retain=True
        )

    def report_topic(self, report: Mapping[str, object]) -> tuple[str, bool] | None:
        """A value topic: ``report``'s ``slot`` (default 1, any number: the lie may be there
        too) and ``property`` (``userCode``, the default, or ``userIdStatus``)."""
        slot = report.get("slot", 1)
        prop = report.get("property", "userCode")
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 1:
            return None
        if prop == "userCode":
            return self.topics.user_code(slot), True
        if prop == "userIdStatus":
            return self.topics.user_id_status(slot), True
        return None

    async def publish_availability(self) -> None:
        now = _now_ms()
        if self.stack != "up":
            return  # its will (or its start) said what there is to say
        if self.online:  # the gateway itself is up as long as the simulator runs
            await self._session.publish(
                self.topics.gateway_status, gateway_status_payload(True, now), retain=True
            )
        await self._publish_driver_ready(now)

    async def _publish_driver_ready(self, now: int) -> None:
        """What Z-Wave JS UI publishes once its Z-Wave driver is ready: its status, the node's,
        and the node's door lock values (its mode, and its Access Control state)."""
        if self.online:
            await self._session.publish(self.topics.driver_status, "true", retain=True)
        await self._session.publish(
            self.topics.node_status,
            node_status_payload(self.topics.node_id, self.online, now),
            retain=True,
        )
        if self.online:
            await self._publish_mode(now)
            if self.faults.entry_events:
                await self._session.publish(
                    self.topics.notification(ACCESS_CONTROL, "Lock_state"),
                    value_payload(0, now),
                    retain=True,
                )

    async def _publish_mode(self, now: int) -> None:
        await self._session.publish(
            self.topics.door_lock_mode, value_payload(self.mode, now), retain=True
        )

    async def publish_entry(self, event: EntryEvent) -> None:
        """The Access Control notification of the operation (not retained), then the Door Lock
        mode it leaves."""
        if not self.online or self.stack != "up" or self.faults.silent:
            return
        now = _now_ms()
        found = _EVENTS.get((event.kind, event.method))
        if found is not None:
            parameters: object = MISSING
            if event.method is EntryMethod.KEYCODE and event.slot is not None:
                parameters = {"userId": event.slot}
            await self._session.publish(
                self.topics.notification(*found), notification_payload(now, parameters)
            )
        mode = _MODES.get(event.kind)
        if mode is not None:
            self.mode = mode
            await self._publish_mode(now)

    async def publish_table(self) -> None:
        for slot in range(1, self.capacity + 1):
            await self._publish_values(slot)

    async def answer(self, command: SimCommand, error: str | None) -> None:
        if command.token is None:
            return  # a write on a value topic is never answered
        await self._reply(command, error is None, None, message=error or "")

    async def _reply(
        self, command: SimCommand, success: bool, result: object, message: str = ""
    ) -> None:
        request = self._requests.pop(command.token or "", None)
        if request is None:
            return
        payload = api_reply_payload(success, result, request.args, request.origin, message)
        await self._session.publish(self.topics.api_reply(request.api), payload)

    async def control(self, changes: Mapping[str, object]) -> None:
        """The base class's control (a PIN typed at the keypad is told by
        :meth:`publish_entry`), plus ``stack`` (crash, start, ready: Z-Wave JS UI itself)."""
        stack, unread = changes.get(STACK_KEY), changes.get(UNREAD_KEY)
        own = (STACK_KEY, UNREAD_KEY)
        await super().control({k: v for k, v in changes.items() if k not in own})
        if stack is not None:
            await self._stack(stack)
        if unread is not None:
            await self._unread(unread)

    async def _stack(self, step: object) -> None:
        """Z-Wave JS UI killed hard, started again, and its Z-Wave driver ready (as the real
        11.22.2 does: its will is only the gateway status; the driver is ready ~1.7 s after
        the gateway says it is up, and only then are statuses and values published)."""
        now = _now_ms()
        if step == "crash":
            self.stack = "down"
            await self._session.publish(self.topics.gateway_status, {"value": False}, retain=True)
        elif step == "start":
            self.stack = "starting"
            await self._session.publish(
                self.topics.gateway_status, gateway_status_payload(True, now), retain=True
            )
        elif step == "ready":
            self.stack = "up"
            await self._publish_driver_ready(now)
            if self.online:
                await self.publish_table()
        else:
            log.warning("sim.control_bad_value", device_id=self.device_id, key=STACK_KEY)

    async def _unread(self, slots: object) -> None:
        """zwave-js interviewed the lock without reading these slots: their values go."""
        if not isinstance(slots, list) or not all(
            _int(n) is not None and self.check_slot(n) is None for n in slots
        ):
            log.warning("sim.control_bad_value", device_id=self.device_id, key=UNREAD_KEY)
            return
        self.unread = set(slots)
        await self.publish_table()
