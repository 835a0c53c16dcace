"""The one schema vocabulary: the YAML config, the driver options, the API parameters and the
simulator's control messages are all checked with the converters and the collector here.

A converter takes a raw value and returns it checked, or raises ``Invalid`` with the text that
follows ``key.path: ``. ``Section`` reads one mapping key by key and collects every problem with
its key path instead of raising, so a bad file is reported whole. Of lockgate this imports only
``gateway.domain`` and ``gateway.topics``, which import nothing, so drivers may use it too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Generic, TypeVar

from gateway.domain import MAX_PIN_LENGTH
from gateway.topics import config_topic_problem

__all__ = [
    "UUID_PATTERN",
    "Integer",
    "Invalid",
    "ListOf",
    "Matching",
    "Nullable",
    "OneOf",
    "Section",
    "Text",
    "UuidOf",
    "as_code_lengths",
    "as_duration",
    "as_flag",
    "as_integer",
    "as_nonempty_text",
    "as_seconds",
    "as_string",
    "as_topic",
    "checked",
    "describe",
    "parse_duration",
    "report_unknown_keys",
    "take_name",
]

# --------------------------------------------------------------------------------------------
# Value converters: each takes a raw YAML value and returns it checked, or raises Invalid with
# the text that follows "key.path: ".


class Invalid(ValueError):
    """A value that must not be given; its message completes a ``key.path: message`` line.

    ``at`` is the path below the key being read (``[2]`` for a list's third item), so the line
    names the part that is wrong.
    """

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.at = at


_T = TypeVar("_T")
_D = TypeVar("_D")

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?", re.ASCII)
_SECONDS_PER_UNIT: Final[Mapping[str | None, float]] = MappingProxyType(
    {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}  # "ms" is divided, see below
)
_DURATION_HINT = "use e.g. 500ms, 10s, 5m, 1h, 2d or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``10s``, ``5m``, ``1h``, ``2d`` or a plain number of seconds.

    Raises ValueError, with a message fit to follow ``key.path: ``, for anything else and for
    negative or infinite durations.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"must be a duration ({_DURATION_HINT})")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise Invalid(f"invalid duration {value!r} ({_DURATION_HINT})")
        number, unit = float(match[1]), match[2]
        # Divide for ms rather than multiply by 0.001, so "100ms" is exactly 0.1.
        seconds = number / 1000 if unit == "ms" else number * _SECONDS_PER_UNIT[unit]
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if not math.isfinite(seconds):
        raise Invalid("must be a finite duration")
    if seconds < 0:
        raise Invalid("must not be negative")
    return seconds


def as_duration(*, positive: bool = False) -> Callable[[object], float]:
    def convert(value: object) -> float:
        seconds = parse_duration(value)
        if positive and seconds == 0:
            raise Invalid("must be longer than 0")
        return seconds

    return convert


def as_integer(low: int, high: int | None = None) -> Callable[[object], int]:
    wanted = f"an integer {low}-{high}" if high is not None else f"an integer >= {low}"

    def convert(value: object) -> int:
        # bool is an int to Python, but `port: true` is a mistake, not port 1.
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            raise Invalid(f"must be {wanted}")
        return value

    return convert


def as_flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def as_string(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if not value.strip():
        raise Invalid("must not be empty")
    return value


def as_seconds(value: object) -> float:
    """A plain number of seconds, finite and not negative: ``parse_duration`` without units."""
    if isinstance(value, str):
        raise Invalid("must be a number of seconds")
    return parse_duration(value)


def as_nonempty_text(value: object) -> str:
    """Any string but the empty one; unlike ``as_string``, blanks count as text."""
    if not isinstance(value, str) or not value:
        raise Invalid("must be a non-empty string")
    return value


def checked(convert: Callable[[object], _T], value: object) -> _T | None:
    """``convert(value)``, or None when it is Invalid: for messages that skip a bad value (with
    a warning) instead of refusing the whole message."""
    try:
        return convert(value)
    except Invalid:
        return None


def as_topic(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string")
    why = config_topic_problem(value)
    if why is not None:
        raise Invalid(why)
    return value


def as_code_lengths(value: object) -> tuple[int, int]:
    rule = "must be [shortest, longest] with 1 <= shortest <= longest <= 16, or one length"
    pair = [value, value] if isinstance(value, int) else value
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise Invalid(rule)
    shortest, longest = pair
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in pair) or not (
        1 <= shortest <= longest <= MAX_PIN_LENGTH
    ):
        raise Invalid(rule)
    return (shortest, longest)


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "a number" if isinstance(value, int | float) else type(value).__name__


# --------------------------------------------------------------------------------------------
# The field reader


class Section:
    """Reads one YAML mapping key by key, recording problems instead of raising.

    Every read marks its key as known; ``finish`` then reports whatever the file has beyond them.
    A bad value yields the default, so parsing goes on and the rest of the file is checked too.
    """

    def __init__(self, raw: object, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.present = raw is not None  # the file gives this section, and it is a mapping
        self._read: set[object] = set()
        if raw is not None and not isinstance(raw, Mapping):
            self.report(None, f"must be a mapping, not {describe(raw)}")
            self.present = False
        self._raw: Mapping[object, object] = raw if isinstance(raw, Mapping) else {}

    def where(self, key: object) -> str:
        if key is None:
            return self.path or "top level"
        return f"{self.path}.{key}" if self.path else str(key)

    def report(self, key: str | None, message: str) -> None:
        self.problems.append(f"{self.where(key)}: {message}")

    def given(self, key: str) -> bool:
        return self._raw.get(key) is not None

    def raw(self, key: str) -> object:
        self._read.add(key)
        return self._raw.get(key)

    def get(self, key: str, convert: Callable[[object], _T], default: _D) -> _T | _D:
        value = self.raw(key)
        if value is None:
            return default
        try:
            result = convert(value)
        except Invalid as exc:
            self.report(f"{key}{exc.at}", exc.message)
            return default
        return result

    def section(self, key: str) -> Section:
        return Section(self.raw(key), self.where(key), self.problems)

    def rest(self) -> dict[object, object]:
        """The keys not read yet, for a nested schema (a driver's options, a table) to claim."""
        rest = {key: value for key, value in self._raw.items() if key not in self._read}
        self._read.update(rest)
        return rest

    def rest_named(self) -> dict[str, object]:
        """As ``rest``, for schemas whose keys are names: any other key is unknown."""
        named: dict[str, object] = {}
        for key, value in self.rest().items():
            if isinstance(key, str):
                named[key] = value
            else:
                self.report(str(key), "unknown key")
        return named

    def finish(self) -> None:
        for key in self._raw:
            if key not in self._read:
                self.problems.append(f"{self.where(key)}: unknown key")


# --------------------------------------------------------------------------------------------
# Converters with settings: small frozen dataclasses rather than closures, so what a field takes
# can be read back from its declaration (the API fuzzer builds its inputs from them). Their
# messages are the API's (contract section 4).

UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Integer:
    """A JSON integer in ``low..high``; ``true``/``false`` and ``2.0`` are not integers."""

    low: int
    high: int

    def __call__(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("must be an integer")
        if not self.low <= value <= self.high:
            raise Invalid(f"must be between {self.low} and {self.high}")
        return value


@dataclass(frozen=True, slots=True)
class Text:
    max_length: int

    def __call__(self, value: object) -> str:
        if not isinstance(value, str):
            raise Invalid("must be a string")
        if len(value) > self.max_length:
            raise Invalid(f"must be at most {self.max_length} characters")
        return value


@dataclass(frozen=True, slots=True)
class Matching:
    """A string matching ``pattern`` in full; ``rule`` says in words what that is."""

    pattern: re.Pattern[str]
    rule: str

    def __call__(self, value: object) -> str:
        if not isinstance(value, str):
            raise Invalid("must be a string")
        if not self.pattern.fullmatch(value):
            raise Invalid(self.rule)
        return value


@dataclass(frozen=True, slots=True)
class UuidOf:
    """Ids that are uuids; ``what`` names the kind of id expected, for the message."""

    what: str

    def __call__(self, value: object) -> str:
        if not isinstance(value, str) or not UUID_PATTERN.fullmatch(value.lower()):
            raise Invalid(f"must be {self.what} (a uuid)")
        return value.lower()


@dataclass(frozen=True, slots=True)
class Nullable(Generic[_T]):
    inner: Callable[[object], _T]

    def __call__(self, value: object) -> _T | None:
        return None if value is None else self.inner(value)


@dataclass(frozen=True, slots=True)
class OneOf:
    choices: tuple[str, ...]

    def __call__(self, value: object) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise Invalid(f"must be one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True, slots=True)
class ListOf(Generic[_T]):
    item: Callable[[object], _T]
    max_items: int

    def __call__(self, value: object) -> list[_T]:
        if not isinstance(value, list):
            raise Invalid("must be a list")
        if len(value) > self.max_items:
            raise Invalid(f"must have at most {self.max_items} items")
        items: list[_T] = []
        for i, v in enumerate(value):
            try:
                items.append(self.item(v))
            except Invalid as exc:
                raise Invalid(exc.message, f"[{i}]{exc.at}") from None
        return items


# --------------------------------------------------------------------------------------------
# Driver options: names that become part of a topic, and the keys a schema does not know


def take_name(
    raw: Mapping[str, object],
    key: str,
    default: str,
    path: str,
    problems: list[str],
    *,
    single_level: bool = False,
) -> str:
    """Read a string option that becomes part of a topic; a missing or null key gives ``default``.

    On a problem the default is returned as well, so parsing can go on and report the rest.
    """
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        problems.append(f"{path}.{key}: must be a string")
        return default
    why = config_topic_problem(value, single_level=single_level)
    if why is not None:
        problems.append(f"{path}.{key}: {why}")
        return default
    return value


def report_unknown_keys(
    raw: Mapping[str, object], known: Iterable[str], path: str, problems: list[str]
) -> None:
    """A misspelt key would otherwise be silently ignored and its default used."""
    known_keys = set(known)
    problems.extend(f"{path}.{key}: unknown key" for key in raw if key not in known_keys)
