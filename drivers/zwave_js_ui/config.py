"""Config options of the ``zwave_js_ui`` driver: where Z-Wave JS UI's gateway shows one lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from drivers.zwave_js_ui.protocol import Topics
from gateway.schema import report_unknown_keys, take_name

__all__ = ["TopicStyle", "ZwaveJsUiOptions", "parse_options"]

TopicStyle = Literal["valueid", "named"]
_TOPIC_STYLES: tuple[TopicStyle, ...] = ("valueid", "named")
_MAX_NODE_ID = 232  # the highest node id of classic Z-Wave


@dataclass(frozen=True, slots=True)
class ZwaveJsUiOptions:
    """Where Z-Wave JS UI publishes the node, and which of its two value-topic layouts it uses.

    They mirror Z-Wave JS UI's own gateway settings, which decide the node's topic level
    (:meth:`Topics.for_node <drivers.zwave_js_ui.protocol.Topics.for_node>`): ``node_names``
    its "use node names" (ValueID topics only: off, the level is the bare node id),
    ``node_name`` the node's name when it has one (else ``nodeID_<id>``), ``location`` the
    node's location when "ignore location" is off (a level before the node's).
    """

    node_id: int
    node_name: str | None = None
    base_topic: str = "zwave"
    gateway_name: str = "zwave-js-ui"
    topic_style: TopicStyle = "valueid"
    node_names: bool = True
    location: str | None = None

    def topics(self) -> Topics:
        """Every topic of the node, for the driver and the simulated lock alike."""
        return Topics.for_node(
            self.base_topic,
            self.node_id,
            self.gateway_name,
            node_name=self.node_name,
            style=self.topic_style,
            node_names=self.node_names,
            location=self.location,
        )

    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(option key, address) pairs that no two devices may share."""
        claims = [("node_id", f"Z-Wave node {self.node_id} under base topic '{self.base_topic}'")]
        if self.node_name is not None:
            where = f"{self.location}/{self.node_name}" if self.location else self.node_name
            claims.append(("node_name", f"topic '{self.base_topic}/{where}'"))
        return tuple(claims)

    def own_topics(self) -> tuple[tuple[str, str], ...]:
        """(option key, topic) pairs that must not lie under the gateway's own topics: none
        checked (Z-Wave JS UI's base topic is the stack's, not the lock's)."""
        return ()


def parse_options(
    raw: Mapping[str, object], path: str, device_id: str, problems: list[str]
) -> ZwaveJsUiOptions:
    del device_id  # a Z-Wave node is found by its number, never by the gateway's name for it
    report_unknown_keys(
        raw,
        (
            "node_id",
            "node_name",
            "base_topic",
            "gateway_name",
            "topic_style",
            "node_names",
            "location",
        ),
        path,
        problems,
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
    node_names = raw.get("node_names", True)
    if not isinstance(node_names, bool):
        problems.append(f"{path}.node_names: must be true or false")
        node_names = True
    if node_name is not None and not node_names and topic_style == "valueid":
        # Z-Wave JS UI would show the bare id: a name here can only be a misunderstanding.
        problems.append(
            f"{path}.node_name: unused with node_names false (ValueID topics then carry the"
            " bare node id); leave it out, or turn on node names in Z-Wave JS UI"
        )
    return ZwaveJsUiOptions(
        node_id=node_id,
        node_name=node_name,
        base_topic=take_name(raw, "base_topic", "zwave", path, problems),
        gateway_name=take_name(
            raw, "gateway_name", "zwave-js-ui", path, problems, single_level=True
        ),
        topic_style=topic_style,
        node_names=node_names,
        location=take_name(raw, "location", "", path, problems) or None,
    )
