"""Config options of the ``native`` driver, and the MQTT naming rules every driver shares.

The shared helpers live here, in the driver package that speaks lockgate's own protocol, so that
driver config modules stay leaves: of ``gateway`` they import only ``gateway.topics``, which
imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.topics import config_topic_problem

__all__ = [
    "NativeOptions",
    "parse_options",
    "report_unknown_keys",
    "take_name",
]

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


@dataclass(frozen=True, slots=True)
class NativeOptions:
    """Where a lock that speaks lockgate's own protocol lives: ``T/slots``, ``T/command``, ..."""

    topic: str

    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(option key, address) pairs that no two devices may share."""
        return (("topic", f"topic '{self.topic}'"),)

    def own_topics(self) -> tuple[tuple[str, str], ...]:
        """(option key, topic) pairs that must not lie under the gateway's own topics."""
        return (("topic", self.topic),)


def parse_options(
    raw: Mapping[str, object], path: str, device_id: str, problems: list[str]
) -> NativeOptions:
    report_unknown_keys(raw, ("topic",), path, problems)
    return NativeOptions(topic=take_name(raw, "topic", f"locks/{device_id}", path, problems))
