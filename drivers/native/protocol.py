"""Payloads of the native lock protocol (contract section 10), shared by driver and simulator.

Pure functions and dataclasses, no I/O, so both sides of the conversation are built from one
definition and a protocol change cannot leave them disagreeing. Parsers are lenient about what they
do not know (extra fields are ignored, as the contract asks) and strict about the shape of what they
do: a wrong shape raises ``PayloadError`` (a ``ValueError``) naming the field, never half a value.

Builders return JSON-ready dicts; ``gateway.mqtt.encode`` is the one wire encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from drivers.bounds import (
    MAX_SLOTS,
    check_capacity,
    check_code_lengths,
    check_pin,
    check_slot,
    decimal_key,
    shown,
)
from drivers.payloads import PayloadError, parse_availability
from drivers.payloads import json_object as _object
from gateway.domain import EntryEvent, EntryKind, EntryMethod

__all__ = [
    "ERRORS",
    "OPS",
    "BadCommand",
    "Command",
    "JsonObject",
    "Op",
    "PayloadError",
    "Result",
    "SlotReport",
    "Topics",
    "availability_payload",
    "command_payload",
    "event_payload",
    "parse_availability",
    "parse_command",
    "parse_event",
    "parse_result",
    "parse_slots",
    "result_payload",
    "slots_payload",
]

JsonObject = dict[str, Any]
Op = Literal["set", "clear", "read"]
OPS: Final[tuple[Op, ...]] = ("set", "clear", "read")
#: The error words a lock may answer with.
ERRORS: Final = frozenset(
    {"slot_out_of_range", "invalid_code", "duplicate_code", "busy", "internal"}
)


@dataclass(frozen=True, slots=True)
class Topics:
    """The four topics of a lock whose base topic is ``base``."""

    base: str

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def slots(self) -> str:
        return f"{self.base}/slots"

    @property
    def command(self) -> str:
        return f"{self.base}/command"

    @property
    def result(self) -> str:
        return f"{self.base}/result"

    @property
    def event(self) -> str:
        return f"{self.base}/event"


@dataclass(frozen=True, slots=True)
class SlotReport:
    """A parsed ``T/slots``; ``capacity``/``code_lengths`` are None when the lock left them out."""

    capacity: int | None
    code_lengths: tuple[int, int] | None
    slots: Mapping[int, str | None]


@dataclass(frozen=True, slots=True)
class Result:
    """A parsed ``T/result``: ``error`` is the lock's word when ``ok`` is false."""

    id: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed ``T/command``; the lock side checks slot range and code, not this parser."""

    id: str
    op: Op
    slot: int | None = None
    code: str | None = None


class BadCommand(PayloadError):
    """A command the lock cannot carry out; ``id`` is set when there is someone to answer."""

    def __init__(self, message: str, *, id: str | None = None, error: str = "internal") -> None:
        super().__init__(message)
        self.id = id
        self.error = error


# -- parsing helpers --------------------------------------------------------------------------


def _int(value: object, field: str, *, minimum: int) -> int:
    # bool is an int subclass, and `true` is never a slot number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError(f"{field}: expected an integer")
    if value < minimum:
        raise PayloadError(f"{field}: must be at least {minimum}")
    return value


def _optional_int(raw: Mapping[str, Any], field: str, *, minimum: int) -> int | None:
    value = raw.get(field)
    return None if value is None else _int(value, field, minimum=minimum)


def _code_lengths(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise PayloadError("code_lengths: expected [shortest, longest]")
    shortest = _int(value[0], "code_lengths[0]", minimum=1)
    longest = _int(value[1], "code_lengths[1]", minimum=shortest)
    return check_code_lengths(shortest, longest)


def _slot_key(key: str, capacity: int) -> int:
    # int() would accept " 3", "+3" and "0003"; the contract's keys are plain decimals.
    field = f"slots.{shown(key)}"
    slot = decimal_key(key)
    if slot is None or slot == 0:
        raise PayloadError(f"{field}: slot keys must be positive integers written as strings")
    return check_slot(slot, capacity, field)


# -- lock -> gateway ----------------------------------------------------------------------------


def parse_slots(
    payload: bytes | str,
    *,
    max_slots: int = MAX_SLOTS,
    code_lengths: tuple[int, int] | None = None,
) -> SlotReport:
    """A ``T/slots`` within bounds (drivers/bounds.py), else ``PayloadError`` for all of it.

    ``max_slots``: the most slots the lock may have (the device's configured ``slots``); no
    capacity above it, no slot number above the capacity (or above it, when the lock leaves
    the capacity out). ``code_lengths``: the configured PIN lengths, which every PIN must fit
    when the report leaves its own out.
    """
    raw = _object(payload)
    capacity = _optional_int(raw, "capacity", minimum=1)
    if capacity is not None:
        check_capacity(capacity, max_slots)
    lengths = _code_lengths(raw.get("code_lengths"))
    table = raw.get("slots")
    if not isinstance(table, dict):
        raise PayloadError("slots: expected an object of slot number -> PIN or null")
    pin_lengths = lengths or code_lengths
    slots: dict[int, str | None] = {}
    for key, value in table.items():
        slot = _slot_key(key, capacity or max_slots)
        if value is not None:
            if not isinstance(value, str):
                raise PayloadError(f"slots.{slot}: expected a PIN string or null")
            check_pin(value, f"slots.{slot}", pin_lengths)
        slots[slot] = value
    return SlotReport(capacity=capacity, code_lengths=lengths, slots=slots)


def parse_result(payload: bytes | str) -> Result:
    raw = _object(payload)
    command_id = raw.get("id")
    if not isinstance(command_id, str) or not command_id:
        raise PayloadError("id: expected a non-empty string")
    ok = raw.get("ok")
    if not isinstance(ok, bool):
        raise PayloadError("ok: expected true or false")
    error = raw.get("error")
    if ok:
        return Result(id=command_id, ok=True)
    if error is None:
        error = "internal"  # a refusal without a reason is still a refusal
    if not isinstance(error, str):
        raise PayloadError("error: expected a string")
    return Result(id=command_id, ok=False, error=error)


_KINDS: Final = {kind.value: kind for kind in EntryKind}
_METHODS: Final = {method.value: method for method in EntryMethod}


def parse_event(payload: bytes | str) -> EntryEvent:
    """A ``T/event`` (contract section 11): the door operated.

    ``type`` must be one of the three; a ``method`` missing or not (yet) known is ``unknown``
    (the door did operate); ``slot`` counts only for ``keycode`` and must be a slot number
    (the driver checks it against the lock's capacity)."""
    raw = _object(payload)
    word = raw.get("type")
    kind = _KINDS.get(word) if isinstance(word, str) else None
    if kind is None:
        raise PayloadError(f"type: expected one of {', '.join(_KINDS)}")
    method_word = raw.get("method")
    if method_word is not None and not isinstance(method_word, str):
        raise PayloadError("method: expected a string")
    method = _METHODS.get(method_word or "", EntryMethod.UNKNOWN)
    slot = None
    if method is EntryMethod.KEYCODE:
        slot = _optional_int(raw, "slot", minimum=1)
    return EntryEvent(kind, method, slot)


def event_payload(event: EntryEvent) -> JsonObject:
    payload: JsonObject = {"type": event.kind.value, "method": event.method.value}
    if event.method is EntryMethod.KEYCODE and event.slot is not None:
        payload["slot"] = event.slot
    return payload


def availability_payload(online: bool) -> JsonObject:
    return {"state": "online" if online else "offline"}


def slots_payload(
    capacity: int, code_lengths: tuple[int, int], slots: Mapping[int, str | None]
) -> JsonObject:
    """The whole table, every slot from 1 to ``capacity`` present (null when empty)."""
    return {
        "capacity": capacity,
        "code_lengths": list(code_lengths),
        "slots": {str(n): slots.get(n) for n in range(1, capacity + 1)},
    }


def result_payload(command_id: str, error: str | None = None) -> JsonObject:
    if error is None:
        return {"id": command_id, "ok": True}
    return {"id": command_id, "ok": False, "error": error}


# -- gateway -> lock ----------------------------------------------------------------------------


def command_payload(
    command_id: str, op: Op, slot: int | None = None, code: str | None = None
) -> JsonObject:
    payload: JsonObject = {"id": command_id, "op": op}
    if slot is not None:
        payload["slot"] = slot
    if code is not None:
        payload["code"] = code
    return payload


def parse_command(payload: bytes | str) -> Command:
    """Raises ``BadCommand``; its ``error`` is the word to answer with when ``id`` is known."""
    try:
        raw = _object(payload)
    except ValueError as exc:
        raise BadCommand(str(exc)) from None
    command_id = raw.get("id")
    if not isinstance(command_id, str) or not command_id:
        raise BadCommand("id: expected a non-empty string")
    op = raw.get("op")
    if op not in OPS:
        raise BadCommand(f"op: expected one of {', '.join(OPS)}", id=command_id)
    slot = raw.get("slot")
    if (op != "read" or slot is not None) and (not isinstance(slot, int) or isinstance(slot, bool)):
        raise BadCommand("slot: expected an integer", id=command_id, error="slot_out_of_range")
    code = raw.get("code")
    if op == "set" and not isinstance(code, str):
        raise BadCommand("code: expected a PIN string", id=command_id, error="invalid_code")
    return Command(
        id=command_id,
        op=op,
        slot=slot,
        code=code if op == "set" else None,
    )
