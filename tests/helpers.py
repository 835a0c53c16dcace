"""Test helpers that wait on events instead of sleeping: an MQTT probe, a wake recorder, and
background runners whose tasks end with the test."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import aiomqtt

from drivers.base import Driver
from drivers.sim import SimulatedLock, Simulator
from gateway.config import Config, DeviceConfig, MqttSettings, Timing
from gateway.mqtt import MqttSession, Payload, encode
from tests.broker import Broker

TIMEOUT = 5.0  # generous: a test that fails should fail, not hang; a passing one never waits it


def session_for(broker: Broker, identifier: str, *, op_timeout: float = 2.0) -> MqttSession:
    """A session that reconnects fast, for tests that take the broker away."""
    return MqttSession(
        MqttSettings(host=broker.host, port=broker.port, keepalive=5),
        identifier=identifier,
        backoff_base=0.02,
        backoff_ceiling=0.2,
        op_timeout=op_timeout,
    )


@asynccontextmanager
async def running(*jobs: tuple[str, Coroutine[Any, Any, object]]) -> AsyncIterator[None]:
    """Run named coroutines for the duration of the block; a crash in one fails the test.

    They are stopped one by one in the order given, so a simulator listed before its session
    can still say goodbye over it.
    """
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(coro, name=name) for name, coro in jobs]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    await asyncio.wait([task])
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:  # show the one failure, not a group around it
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def simulation(config: Config, broker: Broker) -> AsyncIterator[Simulator]:
    """Every simulated lock of ``config`` on its own connection, announced and ready."""
    session = session_for(broker, f"sim-{config.hub_id}")
    simulator = Simulator(config, session)
    # The simulator first, so its subscriptions go out in batches on the first connect.
    async with running(("test-sim", simulator.run()), ("test-sim-mqtt", session.run())):
        async with asyncio.timeout(TIMEOUT):
            await simulator.ready.wait()
        yield simulator


D = TypeVar("D", bound=Driver)


@dataclass
class DriverRig(Generic[D]):
    """A gateway-side driver and the simulated lock it talks to, on a real broker."""

    driver: D
    wakes: Wakes
    lock: SimulatedLock
    sim: Simulator


def observed(driver: Driver) -> bool:
    """The driver has seen its lock online and its table: a ``ready`` for :func:`driver_rig`."""
    return driver.online and driver.table is not None


def device_config(config: Config, device_id: str) -> DeviceConfig:
    return next(d for d in config.devices if d.device_id == device_id)


@asynccontextmanager
async def driver_rig(
    config: Config,
    broker: Broker,
    device_id: str,
    create: Callable[[DeviceConfig, MqttSession, Timing], D],
    ready: Callable[[D], bool],
    timing: Timing | None = None,
) -> AsyncIterator[DriverRig[D]]:
    """``config``'s simulated locks, and the driver ``create`` makes for ``device_id`` on its
    own session, started, once ``ready`` says it has seen what it needs of its lock."""
    async with simulation(config, broker) as sim:
        session = session_for(broker, "gateway")
        driver = create(device_config(config, device_id), session, timing or config.timing)
        wakes = Wakes()
        await driver.start(wakes)
        async with running(("test-gateway-mqtt", session.run())):
            await wakes.until(lambda: ready(driver))
            yield DriverRig(driver, wakes, sim.lock(device_id), sim)


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll for a condition that no event announces (use events wherever one exists)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class Wakes:
    """A ``wake`` callback that counts calls and lets a test await a condition after a wake."""

    def __init__(self) -> None:
        self.count = 0
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Return once ``predicate`` holds, checking it after every wake."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._event.clear()
                await self._event.wait()


class Probe:
    """A plain aiomqtt client (no lockgate code in it) that records every message per topic.

    ``next(topic)`` hands out a topic's messages in arrival order, each once, so a message that
    arrived before the test started waiting is not missed. ``history`` keeps every message in
    arrival order across topics, for tests about sequence and about what never came.
    """

    def __init__(self, broker: Broker, identifier: str = "probe") -> None:
        self._client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            max_inflight_messages=1000,
            timeout=TIMEOUT,
        )
        self._queues: defaultdict[str, asyncio.Queue[bytes]] = defaultdict(asyncio.Queue)
        self.history: list[tuple[str, bytes]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        self._reader = asyncio.create_task(self._read(), name="test-probe-reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self._client.messages:
            assert isinstance(message.payload, bytes)
            topic = message.topic.value
            self.history.append((topic, message.payload))
            self._queues[topic].put_nowait(message.payload)

    async def subscribe(self, *topic_filters: str) -> None:
        await self._client.subscribe([(f, 1) for f in topic_filters])

    async def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        await self._client.publish(topic, encode(payload), qos=1, retain=retain)

    async def next_raw(self, topic: str, timeout: float = TIMEOUT) -> bytes:
        async with asyncio.timeout(timeout):
            return await self._queues[topic].get()

    async def next(self, topic: str, timeout: float = TIMEOUT) -> Any:
        """The next unread message on ``topic``, decoded from JSON."""
        return json.loads(await self.next_raw(topic, timeout))

    async def next_where(
        self, topic: str, predicate: Callable[[Any], bool], timeout: float = TIMEOUT
    ) -> Any:
        """Skip ``topic``'s messages until one satisfies ``predicate``."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.next(topic, timeout=timeout)
                if predicate(value):
                    return value

    def seen(self, topic: str) -> list[Any]:
        """Every message that arrived on ``topic``, decoded, whether read or not."""
        return [json.loads(payload) for t, payload in self.history if t == topic]

    def last(self, topic: str) -> Any:
        """The latest message on ``topic``, decoded; KeyError if none came."""
        for t, payload in reversed(self.history):
            if t == topic:
                return json.loads(payload)
        raise KeyError(topic)

    def drain(self, topic: str) -> None:
        """Forget what has arrived on ``topic`` so far."""
        queue = self._queues[topic]
        while not queue.empty():
            queue.get_nowait()


_TIMESTAMP = re.compile(r'"timestamp": "[^"]*"')


def untimed(log_text: str) -> str:
    """JSON log lines without their timestamps, whose digits may spell a PIN by chance
    (``21.348213Z`` holds ``4821``): what "no PIN in the log" is checked on."""
    return _TIMESTAMP.sub('"timestamp": ""', log_text)
