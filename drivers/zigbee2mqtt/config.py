"""Config options of the ``zigbee2mqtt`` driver: how to find one lock under Zigbee2MQTT's topics.

A Zigbee lock cannot report its slot count over Zigbee2MQTT, so such a device also needs
``slots`` at device level; the gateway's config checks that (it is not a driver option).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.schema import report_unknown_keys, take_name

__all__ = ["Zigbee2MqttOptions", "parse_options"]

# Zigbee2MQTT itself refuses these: B/N/<digits> is an endpoint, B/N/set|get|availability are
# the device's own sub-topics, and B/bridge/... is the bridge's.
_RESERVED_LAST_LEVEL = re.compile(r"/(?:\d+|set|get|availability)$")


@dataclass(frozen=True, slots=True)
class Zigbee2MqttOptions:
    """The lock is ``{base_topic}/{friendly_name}`` on the broker."""

    friendly_name: str
    base_topic: str = "zigbee2mqtt"

    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(option key, address) pairs that no two devices may share."""
        return (("friendly_name", f"topic '{self.base_topic}/{self.friendly_name}'"),)

    def own_topics(self) -> tuple[tuple[str, str], ...]:
        """(option key, topic) pairs that must not lie under the gateway's own topics: none
        checked (Zigbee2MQTT's base topic is the stack's, not the lock's)."""
        return ()


def parse_options(
    raw: Mapping[str, object], path: str, device_id: str, problems: list[str]
) -> Zigbee2MqttOptions:
    report_unknown_keys(raw, ("friendly_name", "base_topic"), path, problems)
    base_topic = take_name(raw, "base_topic", "zigbee2mqtt", path, problems)
    friendly_name = take_name(raw, "friendly_name", device_id, path, problems)
    if friendly_name.split("/", 1)[0] == "bridge":
        problems.append(f"{path}.friendly_name: must not start with 'bridge' (Zigbee2MQTT's own)")
    elif _RESERVED_LAST_LEVEL.search(friendly_name):
        problems.append(
            f"{path}.friendly_name: must not end in /<number>, /set, /get or /availability"
        )
    return Zigbee2MqttOptions(friendly_name=friendly_name, base_topic=base_topic)
