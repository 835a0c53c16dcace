"""Declarative request parameters: each endpoint says what it takes, and nothing else passes.

Bad input is refused before anything is touched, with a message naming the field. Parsers with
settings are small frozen dataclasses rather than closures, so what an endpoint accepts can be
read back from its declaration (the API fuzzer builds its inputs from them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.api.errors import invalid
from gateway.clock import as_stored, parse_timestamp

#: Ids that are safe inside an MQTT topic and a log line.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Fields every request may carry, handled by the router itself.
ENVELOPE = frozenset({"request_id", "reply_to", "idempotency_key"})

Parser = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class Field:
    parse: Parser
    required: bool = False


def device_id(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if not ID_PATTERN.fullmatch(value):
        raise invalid(name, "must be 1-64 characters of letters, digits, '_' or '-'")
    return value


@dataclass(frozen=True, slots=True)
class UuidOf:
    """Ids that are uuids; ``what`` names the kind of id expected, for the message."""

    what: str

    def __call__(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not UUID_PATTERN.fullmatch(value.lower()):
            raise invalid(name, f"must be {self.what} (a uuid)")
        return value.lower()


access_code_id = UuidOf("an access code id")


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


@dataclass(frozen=True, slots=True)
class Text:
    max_length: int

    def __call__(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise invalid(name, "must be a string")
        if len(value) > self.max_length:
            raise invalid(name, f"must be at most {self.max_length} characters")
        return value


def digits(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(name, "must be a string of digits (a number would lose leading zeros)")
    if not value.isascii() or not value.isdigit():
        raise invalid(name, "must contain digits only")
    return value


@dataclass(frozen=True, slots=True)
class Integer:
    """A JSON integer in ``low..high``; ``true``/``false`` and ``2.0`` are not integers."""

    low: int
    high: int

    def __call__(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(name, "must be an integer")
        if not self.low <= value <= self.high:
            raise invalid(name, f"must be between {self.low} and {self.high}")
        return value


def timestamp(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise invalid(name, "must be an ISO 8601 timestamp string")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise invalid(
            name, "must be an ISO 8601 timestamp with a time zone, e.g. 2030-01-01T12:00:00Z"
        ) from None


#: A window's bounds stay far from the calendar's ends, so that the scheduling arithmetic done
#: on them later (``starts_at - program_ahead``, deadlines) can never overflow.
WINDOW_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def window_timestamp(name: str, value: Any) -> datetime:
    """``timestamp``, limited to the instants a code's window may have, at the precision it is
    stored with: a window 1 µs long would be stored empty, so it is judged as such."""
    when = timestamp(name, value)
    if not WINDOW_EARLIEST <= when < WINDOW_LATEST:
        raise invalid(name, "must be in the years 1970 to 8999")
    return as_stored(when)


@dataclass(frozen=True, slots=True)
class Nullable:
    inner: Parser

    def __call__(self, name: str, value: Any) -> Any:
        return None if value is None else self.inner(name, value)


@dataclass(frozen=True, slots=True)
class OneOf:
    choices: tuple[str, ...]

    def __call__(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise invalid(name, f"must be one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Parser
    max_items: int

    def __call__(self, name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise invalid(name, "must be a list")
        if len(value) > self.max_items:
            raise invalid(name, f"must have at most {self.max_items} items")
        return [self.item(f"{name}[{i}]", v) for i, v in enumerate(value)]


def validate(raw: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """The parsed parameters that were given; unknown and missing ones are refused."""
    for name in raw:
        if name not in fields and name not in ENVELOPE:
            raise invalid(name, "unknown field")
    for name, spec in fields.items():
        if spec.required and name not in raw:
            raise invalid(name, "is required")
    return {name: fields[name].parse(name, value) for name, value in raw.items() if name in fields}
