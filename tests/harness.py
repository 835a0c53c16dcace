"""Run the real gateway (and the lock simulator) in the test's event loop, against a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiomqtt

from drivers.sim import SimulatedLock, Simulator
from gateway.client import ApiClient, connect
from gateway.clock import ManualClock
from gateway.config import Config
from gateway.mqtt import MqttSession
from gateway.service import Gateway

STARTUP_TIMEOUT = 10.0


@asynccontextmanager
async def running_gateway(
    config: Config, clock: ManualClock | None = None
) -> AsyncIterator[Gateway]:
    gateway = Gateway(config, clock=clock or ManualClock(), backoff_ceiling=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop), name="test-gateway")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            ready = asyncio.ensure_future(gateway.ready.wait())
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # raise what stopped it
            await gateway.session.wait_connected()
        yield gateway
    finally:
        stop.set()
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await asyncio.gather(task, return_exceptions=True)


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


@asynccontextmanager
async def running_simulator(config: Config) -> AsyncIterator[Simulator]:
    """The lock simulator on its own connection, as ``lockgate sim`` runs it."""
    session = MqttSession(config.mqtt, identifier=f"sim-{config.hub_id}", backoff_ceiling=0.5)
    simulator = Simulator(config, session)
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(session.run(), name="test-sim-mqtt"),
            tg.create_task(simulator.run(), name="test-sim"),
        ]
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await simulator.ready.wait()
        try:
            yield simulator
        finally:
            for task in tasks:
                task.cancel()


@dataclass
class Site:
    """A whole site in one event loop: simulated locks, the gateway, an API client."""

    config: Config
    clock: ManualClock
    gateway: Gateway
    api: ApiClient
    sim: Simulator | None

    def lock(self, device_id: str) -> SimulatedLock:
        assert self.sim is not None
        return self.sim.lock(device_id)

    async def settled(self, timeout: float = 10.0) -> None:
        """Until the gateway has nothing left to do: workers idle, events and objects out."""
        async with asyncio.timeout(timeout):
            await self.gateway.settled()

    async def advance(self, seconds: float) -> None:
        """Move the site's clock and let the gateway catch up."""
        self.clock.advance(seconds)
        assert self.gateway.reconciler is not None
        self.gateway.reconciler.wake_all()  # workers look again now, not a few loop turns later
        await self.settled()


@asynccontextmanager
async def running_site(
    config: Config, clock: ManualClock | None = None, *, simulate: bool = True
) -> AsyncIterator[Site]:
    clock = clock or ManualClock()
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(running_simulator(config)) if simulate else None
        gateway = await stack.enter_async_context(running_gateway(config, clock))
        api = await stack.enter_async_context(api_client(config))
        site = Site(config, clock, gateway, api, sim)
        await site.settled()
        yield site
