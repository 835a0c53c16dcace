"""Declarative request parameters: each endpoint says what it takes, and nothing else passes.

Bad input is refused before anything is touched, with a message naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.api.errors import invalid
from gateway.clock import parse_timestamp

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


def uuid_of(what: str) -> Parser:
    """A parser for ids that are uuids, naming what kind of id was expected."""

    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str) or not UUID_PATTERN.fullmatch(value.lower()):
            raise invalid(name, f"must be {what} (a uuid)")
        return value.lower()

    return parse


access_code_id = uuid_of("an access code id")


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def text(max_length: int) -> Parser:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise invalid(name, "must be a string")
        if len(value) > max_length:
            raise invalid(name, f"must be at most {max_length} characters")
        return value

    return parse


def digits(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(name, "must be a string of digits (a number would lose leading zeros)")
    if not value.isascii() or not value.isdigit():
        raise invalid(name, "must contain digits only")
    return value


def integer(low: int, high: int) -> Parser:
    def parse(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(name, "must be an integer")
        if not low <= value <= high:
            raise invalid(name, f"must be between {low} and {high}")
        return value

    return parse


def timestamp(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise invalid(name, "must be an ISO 8601 timestamp string")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise invalid(
            name, "must be an ISO 8601 timestamp with a time zone, e.g. 2030-01-01T12:00:00Z"
        ) from None


def nullable(parse: Parser) -> Parser:
    def parse_or_none(name: str, value: Any) -> Any:
        return None if value is None else parse(name, value)

    return parse_or_none


def one_of(*choices: str) -> Parser:
    def parse(name: str, value: Any) -> str:
        if value not in choices:
            raise invalid(name, f"must be one of {', '.join(choices)}")
        return str(value)

    return parse


def list_of(item: Parser, max_items: int) -> Parser:
    def parse(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise invalid(name, "must be a list")
        if len(value) > max_items:
            raise invalid(name, f"must have at most {max_items} items")
        return [item(f"{name}[{i}]", v) for i, v in enumerate(value)]

    return parse


def validate(raw: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """The parsed parameters that were given; unknown and missing ones are refused."""
    for name in raw:
        if name not in fields and name not in ENVELOPE:
            raise invalid(name, "unknown field")
    for name, spec in fields.items():
        if spec.required and name not in raw:
            raise invalid(name, "is required")
    return {name: fields[name].parse(name, value) for name, value in raw.items() if name in fields}
