"""The gateway side of the native lock protocol (contract section 10), for one lock.

The driver only observes and sends: availability and the slot table come from the lock's retained
topics, commands are correlated with their results by id. It never trusts a result alone: a read
returns the table the lock republished, and every change of what was observed calls ``wake`` so
the reconciler can look again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Collection, Mapping
from typing import ClassVar

import aiomqtt

from drivers.base import (
    CommandFailed,
    CommandTimedOut,
    CommandTiming,
    DeviceSettings,
    SlotTable,
    WakeCallback,
)
from drivers.bounds import slot_limit
from drivers.native.config import NativeOptions
from drivers.native.protocol import (
    Op,
    Result,
    SlotReport,
    Topics,
    command_payload,
    parse_availability,
    parse_event,
    parse_result,
    parse_slots,
)
from drivers.reachability import LinkedDriver
from gateway.domain import compact_slots
from gateway.logs import get_logger
from gateway.session import NotConnected, Session

__all__ = ["NativeDriver", "create_driver"]

log = get_logger("drivers.native")


class NativeDriver(LinkedDriver[str, Result]):
    """One lock that speaks the native protocol on base topic ``topics.base``."""

    name = "native"
    signals: ClassVar[Mapping[str, bool]] = {"availability": False}
    forget_on_disconnect = ("availability",)

    def __init__(
        self,
        device_id: str,
        topics: Topics,
        session: Session,
        timing: CommandTiming,
        *,
        slots: int | None = None,
        code_lengths: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(device_id, session, timing)
        self.topics = topics
        self._fallback_capacity = slots
        self._fallback_code_lengths = code_lengths
        self._tables_seen = 0  # T/slots messages parsed: tells a read that the table is fresh
        self._refused_tables = 0  # T/slots messages refused (out of bounds or malformed)

    # -- observed state ---------------------------------------------------------------------

    async def start(self, wake: WakeCallback) -> None:
        self._begin(wake)
        await self._session.subscribe(
            self.topics.availability, self._link.handler("availability", parse_availability)
        )
        await self._session.subscribe(self.topics.slots, self._on_slots)
        await self._session.subscribe(self.topics.result, self._on_result)
        await self._session.subscribe(self.topics.event, self._on_event)

    def _on_slots(self, message: aiomqtt.Message) -> None:
        try:
            report = parse_slots(
                message.payload,
                max_slots=slot_limit(self._fallback_capacity),
                code_lengths=self._fallback_code_lengths,
            )
        except ValueError as exc:
            # Refused as a whole: the table last accepted stays in effect.
            self._refused_tables += 1
            self._refusals.refuse("slots", str(exc))
            return
        self._tables_seen += 1
        self._refusals.accept("slots")
        table = self._table_from(report)
        if table != self._table:
            self._table = table
            log.debug("native.table", device_id=self.device_id, slots=dict(table.slots))
            self._wake()

    def _table_from(self, report: SlotReport) -> SlotTable:
        """The lock's own capacity and lengths first; the config's where the lock is silent."""
        highest = max(report.slots, default=0)
        capacity = report.capacity or max(self._fallback_capacity or 0, highest)
        return SlotTable(
            capacity=capacity,
            code_lengths=report.code_lengths or self._fallback_code_lengths,
            slots=compact_slots(report.slots),
        )

    def _on_event(self, message: aiomqtt.Message) -> None:
        """The door operated (contract section 11). A bad event is dropped with a warning and
        refuses nothing else: the lock's slots and commands go on as before. Its first valid
        event shows the lock reports its operations (``has_entry_events``)."""
        if message.retain:  # left on the broker by someone: an old operation, not news
            log.warning("native.retained_event", device_id=self.device_id)
            return
        try:
            event = parse_event(message.payload)
        except ValueError as exc:
            log.warning("native.bad_event", device_id=self.device_id, problem=str(exc))
            return
        capacity = self._table.capacity if self._table is not None else self._fallback_capacity
        if event.slot is not None and capacity and event.slot > capacity:
            # The door did open by keypad; which PIN did it cannot be told.
            log.warning(
                "native.event_slot_out_of_range",
                device_id=self.device_id,
                slot=event.slot,
                capacity=capacity,
            )
            event = dataclasses.replace(event, slot=None)
        self._heard_entry(event)

    def _on_result(self, message: aiomqtt.Message) -> None:
        try:
            result = parse_result(message.payload)
        except ValueError as exc:
            log.warning("native.bad_result", device_id=self.device_id, problem=str(exc))
            return
        waiting = self._pending.get(result.id)
        if waiting is None:
            log.debug("native.stray_result", device_id=self.device_id, command_id=result.id)
            return
        waiting.put(result)

    # -- commands ---------------------------------------------------------------------------

    async def set_code(self, slot: int, code: str) -> None:
        await self._command("set", slot, code)

    async def clear_slot(self, slot: int) -> None:
        await self._command("clear", slot)

    async def read(self, slots: Collection[int] | None = None) -> SlotTable:
        """The table the lock republished before answering (it must, by the contract).

        One command returns the whole table, so ``slots`` narrows nothing here."""
        seen, refused = self._tables_seen, self._refused_tables
        await self._command("read")
        if self._tables_seen == seen and self._refused_tables != refused:
            raise CommandFailed("internal", f"the lock's table was refused: {self.refused_report}")
        if self._tables_seen == seen or self._table is None:
            raise CommandFailed("internal", "the lock answered a read without publishing T/slots")
        return self._table

    async def _command(self, op: Op, slot: int | None = None, code: str | None = None) -> None:
        if not self._session.is_connected:
            raise CommandFailed("not_connected")
        if not self._link.says("availability"):
            raise CommandFailed("offline")
        command_id = str(uuid.uuid4())
        timeout = self._timing.command_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        log.debug("native.command", device_id=self.device_id, op=op, slot=slot, id=command_id)
        try:
            with self._pending.open(command_id) as answer:
                # The publish is bounded by its own timeout, not by an enclosing
                # asyncio.timeout: Python 3.11's wait_for inside aiomqtt can swallow that
                # timeout's cancellation when it races with the ack, and the command would then
                # wait for its answer forever.
                try:
                    payload = command_payload(command_id, op, slot, code)
                    await self._session.publish(self.topics.command, payload, timeout=timeout)
                except NotConnected as exc:
                    raise CommandFailed("not_connected", str(exc)) from None
                async with asyncio.timeout_at(deadline):
                    result = await answer.next()
        except TimeoutError:
            raise CommandTimedOut(f"{op}: no answer within {timeout:g}s") from None
        if not result.ok:
            raise CommandFailed(result.error or "internal", op)


def create_driver(device: DeviceSettings, session: Session, timing: CommandTiming) -> NativeDriver:
    options = device.options
    if not isinstance(options, NativeOptions):
        raise TypeError(f"{device.device_id}: the native driver needs NativeOptions")
    return NativeDriver(
        device.device_id,
        Topics(options.topic),
        session,
        timing,
        slots=device.slots,
        code_lengths=device.code_lengths,
    )
