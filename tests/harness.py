"""Run the real gateway (and the lock simulator) in the test's event loop, against a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

from gateway.client import ApiClient, connect
from gateway.config import Config
from gateway.site import Site, running_gateway, running_simulator, running_site

__all__ = ["Site", "running_gateway", "running_simulator", "running_site"]


@asynccontextmanager
async def api_client(config: Config) -> AsyncIterator[ApiClient]:
    async with connect(config.mqtt, config.prefix) as client:
        yield client


def payload_json(message: aiomqtt.Message) -> Any:
    payload = message.payload
    assert isinstance(payload, bytes)
    return json.loads(payload)


async def next_json(queue: asyncio.Queue[aiomqtt.Message], timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        return payload_json(await queue.get())


async def wait_for_json(
    queue: asyncio.Queue[aiomqtt.Message],
    predicate: Any,
    timeout: float = 5.0,
) -> Any:
    """The first message on ``queue`` whose JSON satisfies ``predicate``."""
    async with asyncio.timeout(timeout):
        while True:
            value = payload_json(await queue.get())
            if predicate(value):
                return value
