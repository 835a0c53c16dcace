"""The MQTT session shared by the gateway and the simulator.

One broker connection at a time, reconnecting forever with jittered exponential backoff. A fresh
``aiomqtt.Client`` is built for every attempt because reusing one after an unexpected disconnect
leaves a stale "connected" future behind (practice.md). Handlers are plain functions so that one
slow consumer can never stall the dispatch loop: anything that must await spawns its own task.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttSettings
from gateway.logs import get_logger
from gateway.session import Handler, NotConnected, Payload, TopicRefused
from gateway.topics import topic_problem

__all__ = [
    "Handler",
    "MqttSession",
    "NotConnected",
    "Payload",
    "Retained",
    "TopicRefused",
    "backoff_delay",
    "build_client",
    "encode",
    "shown_topic",
]

log = get_logger("gateway.mqtt")

#: paho's default of 20 in-flight QoS 1 messages caps throughput at ~280/s (practice.md).
MAX_INFLIGHT = 1000
#: The largest packet the broker may send us: requests over 64 KiB are refused, and up to 1 MiB
#: still answered (``api.router``); the rest is headroom for the topic and properties.
MAX_PACKET_BYTES = 1024 * 1024 + 64 * 1024
#: Subscribing to many topics is done in batches so one SUBSCRIBE stays a sane size.
SUBSCRIBE_BATCH = 200


def shown_topic(topic: str, limit: int = 100) -> str:
    """A topic made fit for a log line: escaped (it may hold anything) and cut short."""
    return ascii(topic[:limit])[1:-1] + ("..." if len(topic) > limit else "")


@dataclass(frozen=True, slots=True)
class Retained:
    """A retained message: the birth message sent on every connect, or the will."""

    topic: str
    payload: bytes


def encode(payload: Payload) -> bytes:
    """Compact JSON for objects, UTF-8 for text: the one wire encoding used everywhere."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def backoff_delay(attempt: int, *, base: float, ceiling: float) -> float:
    """Exponential backoff with jitter (half to all of the bound), so hubs do not reconnect in
    lockstep after a broker restart."""
    bound = min(ceiling, base * (2 ** min(attempt, 20)))
    return random.uniform(bound / 2, bound)


def _tls_params(settings: MqttSettings) -> aiomqtt.TLSParameters | None:
    if not settings.tls.enabled:
        return None
    tls = settings.tls
    return aiomqtt.TLSParameters(
        ca_certs=str(tls.ca_file) if tls.ca_file else None,
        certfile=str(tls.cert_file) if tls.cert_file else None,
        keyfile=str(tls.key_file) if tls.key_file else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )


def build_client(
    settings: MqttSettings,
    *,
    identifier: str,
    will: aiomqtt.Will | None = None,
    session_expiry: int | None = None,
    timeout: float = 10.0,
) -> aiomqtt.Client:
    """An MQTT 5 client with the settings every connection of ours needs (TCP_NODELAY, a raised
    in-flight window, TLS and credentials from the config)."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # The broker drops (never delivers) anything larger: no client or lock can make us hold a
    # giant message in memory before the size checks of the API and the drivers see it.
    properties.MaximumPacketSize = MAX_PACKET_BYTES
    if session_expiry is not None:
        properties.SessionExpiryInterval = session_expiry
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
        keepalive=settings.keepalive,
        timeout=timeout,
        clean_start=session_expiry is None,
        properties=properties,
        max_inflight_messages=MAX_INFLIGHT,
        tls_params=_tls_params(settings),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    # aiomqtt warns (and recounts) on every call past 10 pending acks: we mean to have many.
    client.pending_calls_threshold = MAX_INFLIGHT
    return client


class MqttSession:
    """A long-lived MQTT presence: subscriptions and birth message survive every reconnect."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        identifier: str,
        birth: Retained | None = None,
        will: Retained | None = None,
        session_expiry: int | None = None,
        backoff_base: float = 0.2,
        backoff_ceiling: float = 30.0,
        op_timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self._identifier = identifier
        self._birth = birth
        self._will = will
        self._session_expiry = session_expiry
        self._backoff_base = backoff_base
        self._backoff_ceiling = backoff_ceiling
        self._op_timeout = op_timeout
        self._exact: dict[str, list[Handler]] = {}
        self._wildcard: dict[str, list[Handler]] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._on_connect: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []
        self.connections = 0

    # -- registration -----------------------------------------------------------------------

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every (re)connect, once subscriptions are in place."""
        self._on_connect.append(callback)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._on_disconnect.append(callback)

    async def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Route ``topic_filter`` to ``handler`` now and after every reconnect."""
        table = self._wildcard if ("+" in topic_filter or "#" in topic_filter) else self._exact
        first = topic_filter not in table
        table.setdefault(topic_filter, []).append(handler)
        client = self._client
        if first and client is not None and self._connected.is_set():
            try:
                await client.subscribe(topic_filter, qos=1, timeout=self._op_timeout)
            except aiomqtt.MqttError:
                # The reconnect that follows subscribes everything again.
                log.warning("mqtt.subscribe_failed", topic=topic_filter)

    # -- state ------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    # -- publishing -------------------------------------------------------------------------

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
        """Publish and, for QoS 1, wait for the broker's ack (bounded by ``timeout``).

        A topic the broker would refuse is never sent (it would cost the whole connection):
        it is logged and raises :class:`TopicRefused`.
        """
        problem = topic_problem(topic)
        if problem is not None:
            log.warning("mqtt.publish_refused", topic=shown_topic(topic), reason=problem)
            raise TopicRefused(f"topic {shown_topic(topic)} {problem}")
        client = self._client
        if client is None or not self._connected.is_set():
            raise NotConnected(topic)
        properties = None
        if correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation_data
        task = asyncio.current_task()
        cancelling = task.cancelling() if task else 0
        try:
            await client.publish(
                topic,
                encode(payload),
                qos=qos,
                retain=retain,
                properties=properties,
                timeout=self._op_timeout if timeout is None else timeout,
            )
        except aiomqtt.MqttError as exc:
            raise NotConnected(f"{topic}: {exc}") from exc
        if task is not None and task.cancelling() > cancelling:
            # Python 3.11's wait_for (inside aiomqtt) can swallow a cancellation that lands
            # together with the ack; honour it here so no task hangs at shutdown.
            raise asyncio.CancelledError

    # -- the connection loop ----------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        will = None
        if self._will is not None:
            will = aiomqtt.Will(self._will.topic, self._will.payload, qos=1, retain=True)
        return build_client(
            self._settings,
            identifier=self._identifier,
            will=will,
            session_expiry=self._session_expiry,
            timeout=self._op_timeout,
        )

    async def run(self) -> None:
        """Stay connected until cancelled; never returns on its own."""
        attempt = 0
        while True:
            client = self._make_client()
            try:
                async with client:
                    attempt = 0
                    await self._session(client)
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                log.warning(
                    "mqtt.disconnected",
                    broker=f"{self._settings.host}:{self._settings.port}",
                    reason=str(exc) or type(exc).__name__,
                )
            finally:
                was_connected = self._connected.is_set()
                self._client = None
                self._connected.clear()
                if was_connected:
                    for callback in self._on_disconnect:
                        callback()
            delay = backoff_delay(attempt, base=self._backoff_base, ceiling=self._backoff_ceiling)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        filters = [*self._exact, *self._wildcard]
        for batch in _batches(filters, SUBSCRIBE_BATCH):
            await client.subscribe([(f, 1) for f in batch], timeout=self._op_timeout)
        if self._birth is not None:
            await client.publish(
                self._birth.topic,
                self._birth.payload,
                qos=1,
                retain=True,
                timeout=self._op_timeout,
            )
        self.connections += 1
        self._connected.set()
        log.info("mqtt.connected", broker=f"{self._settings.host}:{self._settings.port}")
        for callback in self._on_connect:
            callback()
        async for message in client.messages:
            self._dispatch(message)

    def _dispatch(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        handlers = list(self._exact.get(topic, ()))
        for topic_filter, more in self._wildcard.items():
            if message.topic.matches(topic_filter):
                handlers.extend(more)
        for handler in handlers:
            try:
                handler(message)
            except Exception:  # a bad message must never end the session
                log.exception("mqtt.handler_failed", topic=topic)


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
