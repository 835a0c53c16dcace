"""A whole site in one process: simulated locks, the gateway and an API client.

The demo, the benchmarks and the tests all need the same thing — the real gateway against the
lock simulator over a real broker — so it is written once, here. Nothing in the daemon itself
uses this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.sim import SimulatedLock, Simulator
from gateway.broker import Broker
from gateway.client import ApiClient, connect
from gateway.clock import Clock, ManualClock, SystemClock
from gateway.config import Config
from gateway.model import Json
from gateway.mqtt import MqttSession
from gateway.service import Gateway

STARTUP_TIMEOUT = 30.0


@asynccontextmanager
async def running_simulator(config: Config) -> AsyncIterator[Simulator]:
    """Every simulated lock of ``config`` on one connection, announced and answering."""
    session = MqttSession(
        config.mqtt, identifier=f"lockgate-sim-{config.hub_id}", backoff_ceiling=0.5
    )
    simulator = Simulator(config, session)
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(session.run(), name="site-sim-mqtt"),
            tg.create_task(simulator.run(), name="site-sim"),
        ]
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await simulator.ready.wait()
            yield simulator
        finally:
            for task in tasks:
                task.cancel()


@asynccontextmanager
async def running_gateway(config: Config, clock: Clock | None = None) -> AsyncIterator[Gateway]:
    """The gateway started (database open, API subscribed, broker connected); stopped after."""
    gateway = Gateway(config, clock=clock or SystemClock(), backoff_ceiling=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop), name="site-gateway")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            ready = asyncio.create_task(gateway.ready.wait(), name="site-gateway-ready")
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if task.done():
                task.result()  # raise what stopped it
            await gateway.session.wait_connected()
        yield gateway
    finally:
        stop.set()
        async with asyncio.timeout(STARTUP_TIMEOUT):
            (outcome,) = await asyncio.gather(task, return_exceptions=True)
    if isinstance(outcome, BaseException):
        raise GatewayFailed("the gateway stopped with an error") from outcome


class GatewayFailed(RuntimeError):
    """The gateway under test stopped with an error instead of on request."""


class RequestRefused(RuntimeError):
    """A request the demo or a benchmark relied on was refused."""


@dataclass
class Site:
    config: Config
    clock: Clock
    gateway: Gateway
    api: ApiClient
    sim: Simulator | None

    async def call(self, endpoint: str, timeout: float = 30.0, **params: Any) -> Json:
        """One request that is expected to succeed: a refusal raises :class:`RequestRefused`."""
        reply = await self.api.call(endpoint, timeout=timeout, **params)
        if not reply.get("ok"):
            raise RequestRefused(f"{endpoint} failed: {reply.get('error')}")
        return reply

    def lock(self, device_id: str) -> SimulatedLock:
        assert self.sim is not None
        return self.sim.lock(device_id)

    async def settled(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until the gateway has nothing left to do: workers idle, events and objects out."""
        async with asyncio.timeout(timeout):
            await self.gateway.settled()

    @property
    def manual_clock(self) -> ManualClock:
        assert isinstance(self.clock, ManualClock), "only a ManualClock can be moved"
        return self.clock

    async def advance(self, seconds: float) -> None:
        """Move a manual clock forward and let the gateway catch up."""
        self.manual_clock.advance(seconds)
        assert self.gateway.reconciler is not None
        self.gateway.reconciler.wake_all()  # look again now, not a few loop turns later
        await self.settled()


@asynccontextmanager
async def running_site(
    config: Config,
    clock: Clock | None = None,
    *,
    simulate: bool = True,
    settle: bool = True,
) -> AsyncIterator[Site]:
    """Simulator first (so the gateway finds every lock announced), then gateway and client.

    ``settle``: hand the site over only once the gateway has looked at every lock.
    """
    clock = clock or ManualClock()
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(running_simulator(config)) if simulate else None
        gateway = await stack.enter_async_context(running_gateway(config, clock))
        api = await stack.enter_async_context(connect(config.mqtt, config.prefix))
        site = Site(config, clock, gateway, api, sim)
        if settle:
            await site.settled()
        yield site


@contextlib.contextmanager
def private_config(config: Config) -> Iterator[Config]:
    """``config`` moved onto its own mosquitto and a fresh database, both gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="lockgate-site-") as workdir:
        broker = Broker(Path(workdir))
        broker.start()
        try:
            yield dataclasses.replace(
                config,
                mqtt=dataclasses.replace(config.mqtt, host=broker.host, port=broker.port),
                database=Path(workdir) / "lockgate.db",
            )
        finally:
            broker.kill()


@asynccontextmanager
async def private_site(
    config: Config, clock: Clock | None = None, *, settle: bool = True
) -> AsyncIterator[Site]:
    """``running_site`` on a private broker and database (see :func:`private_config`)."""
    with private_config(config) as private:
        async with running_site(private, clock, settle=settle) as site:
            yield site
