"""Config options of the ``native`` driver, and the MQTT naming rules every driver shares.

The shared helpers live here, in the driver package that speaks lockgate's own protocol, so that
driver config modules stay leaves: they never import ``gateway`` (which imports them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "NativeOptions",
    "parse_options",
    "report_unknown_keys",
    "take_name",
    "topic_problem",
]

_MAX_TOPIC_BYTES = 65535  # the MQTT length limit of a topic name


def topic_problem(value: str, *, single_level: bool = False) -> str | None:
    """Why ``value`` cannot be (part of) a topic the gateway publishes or subscribes to.

    Stricter than MQTT: empty levels, a leading ``$`` (broker-reserved, skipped by ``#``) and
    leading or trailing ``/`` are legal but always a mistake in a config file.
    """
    if not value:
        return "must not be empty"
    if "\0" in value:
        return "must not contain a NUL character"
    if "+" in value or "#" in value:
        return "must not contain the MQTT wildcards + or #"
    if single_level and "/" in value:
        return "must not contain /"
    if value.startswith("/") or value.endswith("/"):
        return "must not start or end with /"
    if "//" in value:
        return "must not contain empty topic levels (//)"
    if value.startswith("$"):
        return "must not start with $ (reserved for the broker)"
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_TOPIC_BYTES:
        return "is longer than an MQTT topic may be"
    return None


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
    why = topic_problem(value, single_level=single_level)
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


@dataclass(frozen=True, slots=True)
class NativeOptions:
    """Where a lock that speaks lockgate's own protocol lives: ``T/slots``, ``T/command``, ..."""

    topic: str

    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(option key, address) pairs that no two devices may share."""
        return (("topic", f"topic '{self.topic}'"),)


def parse_options(
    raw: Mapping[str, object], path: str, device_id: str, problems: list[str]
) -> NativeOptions:
    report_unknown_keys(raw, ("topic",), path, problems)
    return NativeOptions(topic=take_name(raw, "topic", f"locks/{device_id}", path, problems))
