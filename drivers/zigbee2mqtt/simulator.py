"""A Zigbee lock behind Zigbee2MQTT, quirks included, for tests, demos and benches.

Like the real stack: a ``/set`` is never acknowledged (a failure is only an error line on
``B/bridge/logging``); a ``/get`` is answered by the state message on ``B/N`` (not retained),
which carries Zigbee2MQTT's whole cache of ``users`` — entries refresh only when read, so the
others can be stale; a keypad change shows as an ``action`` with ``action_user`` and leaves the
cache stale too; PINs appear only with ``expose_pin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiomqtt

from drivers.sim import SimCommand, SimSpec, SimulatedLock, register_simulated_lock
from drivers.zigbee2mqtt.config import Zigbee2MqttOptions
from drivers.zigbee2mqtt.protocol import (
    BadRequest,
    JsonObject,
    Topics,
    availability_payload,
    logging_error_payload,
    parse_get,
    parse_set,
    state_payload,
    user_entry_payload,
)
from gateway.logs import get_logger
from gateway.mqtt import MqttSession

__all__ = ["SimulatedZigbee2MqttLock"]

log = get_logger("drivers.zigbee2mqtt.simulator")

#: Attributes a lock's state message carries besides ``users``.
_ATTRIBUTES: dict[str, Any] = {"battery": 80, "lock_state": "locked", "state": "LOCK"}


@register_simulated_lock
class SimulatedZigbee2MqttLock(SimulatedLock):
    driver = "zigbee2mqtt"

    def __init__(self, spec: SimSpec, session: MqttSession) -> None:
        super().__init__(spec, session)
        options = spec.device.options
        if not isinstance(options, Zigbee2MqttOptions):
            raise TypeError(f"{self.device_id}: zigbee2mqtt lock without Zigbee2MqttOptions")
        self.topics = Topics(options.base_topic, options.friendly_name)
        self.friendly_name = options.friendly_name
        self.expose_pin = spec.expose_pin
        #: Zigbee2MQTT's cached ``users`` (0-based user -> entry), refreshed only by reads.
        self.cache: dict[int, JsonObject] = {}
        self._actions: list[tuple[str, int]] = []  # keypad programming events to report
        self._executing = False

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
        slot = None if request.user is None else request.user + 1
        self.submit(SimCommand(op="read", slot=slot))

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

    async def publish_table(self) -> None:
        """The state message with the cached (maybe stale) ``users``, plus any keypad events.

        While a command runs this says nothing: Zigbee2MQTT publishes no state for a ``/set``,
        and a read's state message is its answer (see :meth:`answer`).
        """
        if self._executing:
            return
        actions, self._actions = self._actions, []
        if not actions:
            await self._publish_state_message()
        for action, user in actions:
            await self._publish_state_message(action=action, action_user=user)

    async def _publish_state_message(self, **action: Any) -> None:
        payload = state_payload(self.cache, **action, **_ATTRIBUTES)
        await self._session.publish(self.topics.state, payload)

    def report_topic(self, report: Mapping[str, object]) -> tuple[str, bool] | None:
        return self.topics.state, False

    async def answer(self, command: SimCommand, error: str | None) -> None:
        if error is not None:
            verb = "get" if command.op == "read" else "set"
            await self._session.publish(
                self.topics.bridge_logging,
                logging_error_payload(
                    self.friendly_name, verb, f"{error} (timed out after 10000ms)"
                ),
            )
            return
        if command.op != "read":
            return  # no acknowledgement of a /set, ever
        if command.slot is not None and self.check_slot(command.slot) is not None:
            await self.answer(command, "slot_out_of_range")
            return
        users = range(self.capacity) if command.slot is None else (command.slot - 1,)
        for user in users:
            self.cache[user] = self.entry(user + 1)
        await self._publish_state_message()

    def entry(self, slot: int) -> JsonObject:
        """What reading ``slot`` shows now."""
        return user_entry_payload(self.slots.get(slot), expose_pin=self.expose_pin)

    async def _execute(self, command: SimCommand) -> None:
        self._executing = True
        try:
            await super()._execute(command)
        finally:
            self._executing = False

    # -- the keypad ---------------------------------------------------------------------------

    def _keypad(self, value: object) -> bool:
        slot = value.get("slot") if isinstance(value, dict) else None
        before = self.slots.get(slot) if isinstance(slot, int) else None
        changed = super()._keypad(value)
        if changed and isinstance(slot, int):
            after = self.slots.get(slot)
            if before is None and after is not None:
                action = "pin_code_added"
            elif after is None:
                action = "pin_code_deleted"
            else:
                action = "pin_code_changed"
            self._actions.append((action, slot - 1))
        return changed
