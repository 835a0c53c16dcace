"""Declarative request parameters: each endpoint says what it takes, and nothing else passes.

Bad input is refused before anything is touched, with a message naming the field. The checks are
the one schema vocabulary's (``gateway.schema``); parsers with settings are small frozen
dataclasses, so what an endpoint accepts can be read back from its declaration (the API fuzzer
builds its inputs from them).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from gateway.api.errors import invalid
from gateway.clock import as_stored, parse_timestamp
from gateway.schema import (
    UUID_PATTERN,
    Integer,
    Invalid,
    ListOf,
    Matching,
    Nullable,
    OneOf,
    Text,
    UuidOf,
    as_flag,
)

__all__ = [
    "ABSENT",
    "ENVELOPE",
    "ID_PATTERN",
    "UUID_PATTERN",
    "Absent",
    "Field",
    "Integer",
    "ListOf",
    "Nullable",
    "OneOf",
    "Parser",
    "Text",
    "UuidOf",
    "access_code_id",
    "boolean",
    "device_id",
    "digits",
    "fields_of",
    "param",
    "timestamp",
    "validate",
    "window_timestamp",
]

#: Ids that are safe inside an MQTT topic and a log line.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Fields every request may carry, handled by the router itself.
ENVELOPE = frozenset({"request_id", "reply_to", "idempotency_key"})

#: Takes the raw JSON value; returns it checked or raises ``gateway.schema.Invalid``.
Parser = Callable[[object], Any]


@dataclass(frozen=True, slots=True)
class Field:
    parse: Parser
    required: bool = False


class Absent(enum.Enum):
    """A parameter the request did not give, where that differs from any value (even ``null``,
    which may mean "clear it")."""

    ABSENT = "absent"


ABSENT: Final = Absent.ABSENT


def param(parse: Parser, *, required: bool = False, default: object = ABSENT) -> Any:
    """A field of a typed parameter object (a keyword-only frozen dataclass): how its value is
    checked, and what the handler sees when the request leaves it out."""
    spec = {"field": Field(parse, required)}
    if required:
        return dataclasses.field(metadata=spec)
    return dataclasses.field(default=default, metadata=spec)


def fields_of(params: type) -> dict[str, Field]:
    """The declaration ``validate`` checks a request against, read from a parameter object."""
    return {f.name: f.metadata["field"] for f in dataclasses.fields(params)}


device_id = Matching(ID_PATTERN, "must be 1-64 characters of letters, digits, '_' or '-'")
access_code_id = UuidOf("an access code id")
boolean = as_flag


def digits(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string of digits (a number would lose leading zeros)")
    if not value.isascii() or not value.isdigit():
        raise Invalid("must contain digits only")
    return value


def timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise Invalid("must be an ISO 8601 timestamp string")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise Invalid(
            "must be an ISO 8601 timestamp with a time zone, e.g. 2030-01-01T12:00:00Z"
        ) from None


#: A window's bounds stay far from the calendar's ends, so that the scheduling arithmetic done
#: on them later (``starts_at - program_ahead``, deadlines) can never overflow.
WINDOW_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def window_timestamp(value: object) -> datetime:
    """``timestamp``, limited to the instants a code's window may have, at the precision it is
    stored with: a window 1 µs long would be stored empty, so it is judged as such."""
    when = timestamp(value)
    if not WINDOW_EARLIEST <= when < WINDOW_LATEST:
        raise Invalid("must be in the years 1970 to 8999")
    return as_stored(when)


def validate(raw: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """The parsed parameters that were given; unknown and missing ones are refused."""
    for name in raw:
        if name not in fields and name not in ENVELOPE:
            raise invalid(name, "unknown field")
    for name, spec in fields.items():
        if spec.required and name not in raw:
            raise invalid(name, "is required")
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        if name in fields:
            try:
                parsed[name] = fields[name].parse(value)
            except Invalid as exc:
                raise invalid(f"{name}{exc.at}", exc.message) from None
    return parsed
