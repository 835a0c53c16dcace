"""The narrow MQTT session interface: what drivers and simulated locks use of the broker link.

:class:`gateway.mqtt.MqttSession` satisfies :class:`Session` structurally; drivers depend on
this module, never on ``gateway.mqtt`` (which holds the connection loop and the settings), so
the layers stay one way (``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt

__all__ = ["Handler", "NotConnected", "Payload", "Session", "TopicRefused"]

Handler = Callable[[aiomqtt.Message], None]
Payload = bytes | str | dict[str, Any] | list[Any]


class NotConnected(Exception):
    """Raised by :meth:`Session.publish` while there is no broker connection."""


class TopicRefused(NotConnected):
    """Raised by :meth:`Session.publish` for a topic the broker would refuse.

    A subclass of :class:`NotConnected` on purpose: every caller already copes with a message
    that was not sent, and none may crash on this one either.
    """


class Session(Protocol):
    """One broker connection shared by many users, surviving reconnects."""

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every (re)connect, once subscriptions are in place."""

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the connection is lost."""

    async def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Route ``topic_filter`` to ``handler`` now and after every reconnect."""

    @property
    def is_connected(self) -> bool:
        """Whether the broker connection is up now."""

    async def publish(
        self,
        topic: str,
        payload: Payload,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation_data: bytes | None = None,
        timeout: float | None = None,
    ) -> None:
        """Publish; raises :class:`NotConnected` (or :class:`TopicRefused`) if not sent."""
