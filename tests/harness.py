"""Run the real gateway (and the lock simulator) in the test's event loop, against a real broker,
and ask it what a client would: the small requests and checks that many tests share."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiomqtt

from gateway.client import ApiClient, connect
from gateway.clock import isoformat
from gateway.config import Config
from gateway.model import Json
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


# -- what the gateway publishes ---------------------------------------------------------------


class Recorder:
    """Every JSON message of one subscription, in arrival order, kept for later questions."""

    def __init__(self, queue: asyncio.Queue[aiomqtt.Message]) -> None:
        self._queue = queue
        self.seen: list[Json] = []

    @classmethod
    async def of(cls, site: Site, topic_filter: str) -> Recorder:
        return cls(await site.api.subscribe(topic_filter))

    @classmethod
    async def events(cls, site: Site) -> Recorder:
        """Every event the gateway publishes."""
        return await cls.of(site, f"{site.config.prefix}/events/#")

    @classmethod
    async def commands(cls, site: Site, device_id: str = "front_door") -> Recorder:
        """Every command the gateway sends to one native lock."""
        return await cls.of(site, f"locks/{device_id}/command")

    def pull(self) -> list[Json]:
        while not self._queue.empty():
            self.seen.append(payload_json(self._queue.get_nowait()))
        return self.seen

    def count(self, predicate: Callable[[Json], bool]) -> int:
        """How many messages seen so far satisfy ``predicate``."""
        return len([m for m in self.pull() if predicate(m)])

    async def wait(
        self, predicate: Callable[[Json], bool], count: int = 1, timeout: float = 5.0
    ) -> list[Json]:
        """Until ``count`` messages seen so far (earlier ones included) satisfy ``predicate``."""
        async with asyncio.timeout(timeout):
            while True:
                found = [m for m in self.pull() if predicate(m)]
                if len(found) >= count:
                    return found
                self.seen.append(payload_json(await self._queue.get()))


def is_event(event_type: str, **fields: Any) -> Callable[[Json], bool]:
    """An event of ``event_type`` whose ``fields`` have these values."""

    def match(event: Json) -> bool:
        return event["event_type"] == event_type and all(
            event.get(k) == v for k, v in fields.items()
        )

    return match


def kinds(events: Recorder, access_code_id: str) -> list[str]:
    """The event types about one code, in the order they were published."""
    return [e["event_type"] for e in events.pull() if e.get("access_code_id") == access_code_id]


# -- requests ---------------------------------------------------------------------------------


def ok(reply: Json) -> Json:
    assert reply.get("ok") is True, reply
    return reply


def at(site: Site, seconds: float) -> str:
    """An ISO 8601 timestamp ``seconds`` from the site's clock."""
    return isoformat(site.clock.now() + timedelta(seconds=seconds))


def window(site: Site, start: float, end: float) -> Json:
    """``starts_at`` and ``ends_at``, in seconds from the site's clock, as request parameters."""
    return {"starts_at": at(site, start), "ends_at": at(site, end)}


async def barrier(site: Site) -> None:
    """Everything the gateway published so far has reached our client: settle, then one round
    trip through the gateway (its reply is queued behind what it published before)."""
    await site.settled()
    assert (await site.api.call("devices/list"))["ok"] is True


async def create(site: Site, **params: Any) -> Json:
    """``access_codes/create``, which must succeed: the new access code."""
    code: Json = ok(await site.api.call("access_codes/create", **params))["access_code"]
    return code


async def new_code(site: Site, pin: str, device_id: str = "front_door", **params: Any) -> str:
    """Create an access code (on the front door unless told otherwise); its id."""
    cid: str = (await create(site, device_id=device_id, code=pin, **params))["access_code_id"]
    return cid


async def get_code(site: Site, access_code_id: str) -> Json:
    code: Json = ok(await site.api.call("access_codes/get", access_code_id=access_code_id))[
        "access_code"
    ]
    return code


async def device(site: Site, device_id: str = "front_door") -> Json:
    found: Json = ok(await site.api.call("devices/get", device_id=device_id))["device"]
    return found


def error_codes(obj: Json) -> set[str]:
    """The ``error_code`` of each of a device's or an access code's errors."""
    return {e["error_code"] for e in obj["errors"]}


def warning_codes(obj: Json) -> set[str]:
    return {w["warning_code"] for w in obj["warnings"]}
