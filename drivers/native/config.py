"""Config options of the ``native`` driver.

The option checks every driver shares (``take_name``, ``report_unknown_keys``) are part of the
one schema vocabulary, ``gateway.schema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.schema import report_unknown_keys, take_name

__all__ = [
    "NativeOptions",
    "parse_options",
]


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
