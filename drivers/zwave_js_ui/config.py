"""Config options of the ``zwave_js_ui`` driver: where Z-Wave JS UI's gateway shows one lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from drivers.native.config import report_unknown_keys, take_name

__all__ = ["TopicStyle", "ZwaveJsUiOptions", "parse_options"]

TopicStyle = Literal["valueid", "named"]
_TOPIC_STYLES: tuple[TopicStyle, ...] = ("valueid", "named")
_MAX_NODE_ID = 232  # the highest node id of classic Z-Wave


@dataclass(frozen=True, slots=True)
class ZwaveJsUiOptions:
    """Where Z-Wave JS UI publishes the node, and which of its two value-topic layouts it uses.

    ``node_name`` must be set when Z-Wave JS UI is told to use node names in topics; without it
    the node's topics are ``{base_topic}/nodeID_{node_id}/...``.
    """

    node_id: int
    node_name: str | None = None
    base_topic: str = "zwave"
    gateway_name: str = "zwave-js-ui"
    topic_style: TopicStyle = "valueid"

    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(option key, address) pairs that no two devices may share."""
        claims = [("node_id", f"Z-Wave node {self.node_id} under base topic '{self.base_topic}'")]
        if self.node_name is not None:
            claims.append(("node_name", f"topic '{self.base_topic}/{self.node_name}'"))
        return tuple(claims)


def parse_options(
    raw: Mapping[str, object], path: str, device_id: str, problems: list[str]
) -> ZwaveJsUiOptions:
    del device_id  # a Z-Wave node is found by its number, never by the gateway's name for it
    report_unknown_keys(
        raw, ("node_id", "node_name", "base_topic", "gateway_name", "topic_style"), path, problems
    )
    node_id = raw.get("node_id")
    if node_id is None:
        problems.append(f"{path}.node_id: required for driver zwave_js_ui")
        node_id = 1
    elif (
        isinstance(node_id, bool)
        or not isinstance(node_id, int)
        or not (1 <= node_id <= _MAX_NODE_ID)
    ):
        problems.append(f"{path}.node_id: must be an integer 1-{_MAX_NODE_ID}")
        node_id = 1
    node_name = take_name(raw, "node_name", "", path, problems, single_level=True) or None
    raw_style = raw.get("topic_style")
    topic_style: TopicStyle = next((s for s in _TOPIC_STYLES if s == raw_style), "valueid")
    if raw_style is not None and raw_style != topic_style:
        problems.append(f"{path}.topic_style: must be one of {', '.join(_TOPIC_STYLES)}")
    return ZwaveJsUiOptions(
        node_id=node_id,
        node_name=node_name,
        base_topic=take_name(raw, "base_topic", "zwave", path, problems),
        gateway_name=take_name(
            raw, "gateway_name", "zwave-js-ui", path, problems, single_level=True
        ),
        topic_style=topic_style,
    )
