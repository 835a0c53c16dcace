"""A lock that speaks the native protocol (contract section 10), for tests, demos and benches.

Everything that is not protocol (slot table, faults, control topic, one command at a time) lives
in :class:`drivers.sim.SimulatedLock`; this class only turns it into ``T/...`` messages.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiomqtt

from drivers.base import EntryEvent
from drivers.native.config import NativeOptions
from drivers.native.protocol import (
    BadCommand,
    Topics,
    availability_payload,
    event_payload,
    parse_command,
    result_payload,
    slots_payload,
)
from drivers.sim import SimCommand, SimSpec, SimulatedLock
from gateway.logs import get_logger
from gateway.session import Session

__all__ = ["SimulatedNativeLock"]

log = get_logger("drivers.native.simulator")


class SimulatedNativeLock(SimulatedLock):
    driver = "native"

    def __init__(self, spec: SimSpec, session: Session) -> None:
        super().__init__(spec, session)
        options = spec.device.options
        if not isinstance(options, NativeOptions):
            raise TypeError(f"{self.device_id}: native lock without NativeOptions")
        self.topics = Topics(options.topic)

    async def subscribe(self) -> None:
        await self._session.subscribe(self.topics.command, self._on_command)

    def _on_command(self, message: aiomqtt.Message) -> None:
        try:
            command = parse_command(message.payload)
        except BadCommand as exc:
            log.warning("sim.bad_command", device_id=self.device_id, problem=str(exc))
            if exc.id is not None:
                self.submit(SimCommand(op="read", token=exc.id, refused=exc.error))
            return
        self.submit(
            SimCommand(op=command.op, slot=command.slot, code=command.code, token=command.id)
        )

    async def publish_availability(self) -> None:
        await self._session.publish(
            self.topics.availability, availability_payload(self.online), retain=True
        )

    async def publish_table(self) -> None:
        payload = slots_payload(self.capacity, self.code_lengths, self.slots)
        await self._session.publish(self.topics.slots, payload, retain=True)

    async def publish_entry(self, event: EntryEvent) -> None:
        await self._session.publish(self.topics.event, event_payload(event))

    def report_topic(self, report: Mapping[str, object]) -> tuple[str, bool] | None:
        return self.topics.slots, True

    async def answer(self, command: SimCommand, error: str | None) -> None:
        if command.token is not None:
            await self._session.publish(self.topics.result, result_payload(command.token, error))
