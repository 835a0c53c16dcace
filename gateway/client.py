"""A client for the gateway's MQTT API, used by ``lockgate call``/``events``, the demo and tests.

It uses MQTT 5 request/response: a private response topic plus correlation data per request,
so many requests can be in flight at once on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttSettings
from gateway.model import Json
from gateway.mqtt import build_client, encode
from gateway.topics import matches


class ApiClient:
    def __init__(self, client: aiomqtt.Client, prefix: str, response_topic: str) -> None:
        self._client = client
        self.prefix = prefix
        self._response_topic = response_topic
        self._pending: dict[bytes, asyncio.Future[Json]] = {}
        self._subscriptions: dict[str, asyncio.Queue[aiomqtt.Message]] = {}

    async def call(self, endpoint: str, timeout: float = 10.0, **params: Any) -> Json:
        """Send one request and return the whole reply object (``ok`` true or false)."""
        return await self.call_raw(endpoint, encode(params), timeout=timeout)

    async def call_raw(self, endpoint: str, payload: bytes, timeout: float = 10.0) -> Json:
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = future
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = self._response_topic
        properties.CorrelationData = correlation
        try:
            await self._client.publish(
                f"{self.prefix}/api/{endpoint}",
                payload,
                qos=1,
                properties=properties,
                timeout=timeout,
            )
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(correlation, None)

    async def publish(self, topic: str, payload: Any, timeout: float = 10.0) -> None:
        """A plain QoS 1 publish, e.g. to the simulator's control topic."""
        await self._client.publish(topic, encode(payload), qos=1, timeout=timeout)

    async def subscribe(self, topic_filter: str) -> asyncio.Queue[aiomqtt.Message]:
        """Collect every message on ``topic_filter`` (retained ones included) in a queue."""
        queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
        self._subscriptions[topic_filter] = queue
        await self._client.subscribe(topic_filter, qos=1, timeout=10)
        return queue

    def _dispatch(self, message: aiomqtt.Message) -> None:
        if message.topic.value == self._response_topic:
            correlation = getattr(message.properties, "CorrelationData", None)
            future = self._pending.get(correlation) if correlation else None
            if future is not None and not future.done():
                payload = message.payload
                future.set_result(json.loads(payload if isinstance(payload, bytes) else b"{}"))
            return
        topic = message.topic.value
        for topic_filter, queue in self._subscriptions.items():
            if matches(topic, topic_filter):
                queue.put_nowait(message)

    async def _pump(self) -> None:
        async for message in self._client.messages:
            self._dispatch(message)


@asynccontextmanager
async def connect(
    settings: MqttSettings, prefix: str, *, identifier: str | None = None
) -> AsyncIterator[ApiClient]:
    """An API client on its own connection, for as long as the context lasts."""
    name = identifier or f"lockgate-client-{uuid.uuid4().hex[:12]}"
    client = build_client(settings, identifier=name)
    async with client:
        response_topic = f"{prefix}/clients/{name}/reply"
        api = ApiClient(client, prefix, response_topic)
        await client.subscribe(response_topic, qos=1, timeout=10)
        pump = asyncio.create_task(api._pump(), name=f"api-client:{name}")
        try:
            yield api
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await pump
