"""The fault suite's rig: the daemon as a real process, the simulated locks in the test's loop,
a client that retries like a careful integrator, and a workload that keeps a :class:`Ledger`.

The simulator's slot tables are the truth of what the locks hold; the ledger is what the client
was told; :mod:`tests.invariants` judges the two against the gateway's own listing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.sim import Simulator
from gateway.client import ApiClient, connect
from gateway.clock import isoformat
from gateway.config import Config, parse_config
from gateway.model import Json
from tests.broker import Broker
from tests.conftest import site_dict
from tests.harness import running_simulator
from tests.invariants import Ledger, divergences, violations
from tests.test_service import Daemon, write_config

#: Each attempt of a request waits this long for its reply before it is sent again.
ATTEMPT_TIMEOUT = 2.0
#: A reply to a read, once the daemon is up, comes within this (it is served from SQLite).
PROMPT = 1.0


class Caller:
    """An API client that outlives broker restarts: it reconnects when its connection dies and
    sends each request again, with the same idempotency key, until a reply comes."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._api: ApiClient | None = None
        self._stack = AsyncExitStack()
        self._connecting = asyncio.Lock()
        self.retries = 0  # attempts that got no reply and were sent again

    async def close(self) -> None:
        await self._drop(self._api)

    async def _connected(self) -> ApiClient:
        async with self._connecting:
            while self._api is None:
                stack = AsyncExitStack()
                try:
                    api = await stack.enter_async_context(
                        connect(self._config.mqtt, self._config.prefix)
                    )
                except (aiomqtt.MqttError, OSError):
                    await stack.aclose()
                    await asyncio.sleep(0.05)  # the broker is away: knock again shortly
                    continue
                self._api, self._stack = api, stack
            return self._api

    async def _drop(self, api: ApiClient | None) -> None:
        if api is None or api is not self._api:
            return  # another caller dropped it already
        self._api, stack = None, self._stack
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await stack.aclose()

    async def once(self, endpoint: str, timeout: float = PROMPT, **params: Any) -> Json | None:
        """One attempt: the reply, or None if none came within ``timeout``."""
        api = await self._connected()
        try:
            return await api.call(endpoint, timeout=timeout, **params)
        except TimeoutError:
            return None
        except aiomqtt.MqttError:
            await self._drop(api)
            return None

    async def call(self, endpoint: str, *, within: float = 60.0, **params: Any) -> Json:
        """Until a reply comes; retries carry the same parameters, idempotency key included."""
        async with asyncio.timeout(within):
            while True:
                reply = await self.once(endpoint, timeout=ATTEMPT_TIMEOUT, **params)
                if reply is not None:
                    return reply
                self.retries += 1

    async def publish(self, topic: str, payload: bytes | Json) -> None:
        """A plain QoS 1 publish, as a lock (or something pretending to be one) would."""
        await (await self._connected()).publish(topic, payload)

    async def subscribe(self, topic_filter: str) -> asyncio.Queue[aiomqtt.Message]:
        """Messages on ``topic_filter``, for as long as this connection lives."""
        return await (await self._connected()).subscribe(topic_filter)

    async def ok(self, endpoint: str, **params: Any) -> Json:
        reply = await self.call(endpoint, **params)
        assert reply.get("ok") is True, (endpoint, params, reply)
        return reply


@dataclass
class Rig:
    """One site: ``data`` is its YAML, as the daemon reads it; ``config`` is the test's view of
    it (the test and the simulator always talk to the broker itself)."""

    config: Config
    daemon: Daemon
    sim: Simulator
    client: Caller
    ledger: Ledger = field(default_factory=Ledger)
    unmanaged: dict[str, set[str]] = field(default_factory=dict)
    _pins: Iterator[int] = field(default_factory=lambda: itertools.count(100_000))

    @property
    def devices(self) -> list[str]:
        return [d.device_id for d in self.config.devices]

    def fresh_pin(self) -> str:
        """A PIN never used before in this test: six digits, never a generated backup's four."""
        return str(next(self._pins))

    # -- the process --------------------------------------------------------------------------

    async def start(self) -> float:
        """Start the daemon and wait until it answers; how long that took."""
        began = time.monotonic()
        self.daemon.start()
        async with asyncio.timeout(30):
            while await self.client.once("devices/list", timeout=0.5) is None:
                assert self.running, f"the daemon died: {self.log_tail()}"
        return time.monotonic() - began

    async def kill(self) -> None:
        """kill -9, and wait until the process is gone (a new one may then take its session)."""
        proc = self.daemon.proc
        assert proc is not None
        assert proc.poll() is None, f"the daemon died before it was killed: {self.log_tail()}"
        proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(10):
            while proc.poll() is None:
                await asyncio.sleep(0.005)

    @property
    def running(self) -> bool:
        proc = self.daemon.proc
        return proc is not None and proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        text = self.daemon.log_file.read_text(errors="replace") if self.daemon.log_file else ""
        return "\n".join(text.splitlines()[-lines:])

    async def logged(self, event: str, timeout: float = 10.0) -> None:
        """Until the daemon has logged ``event`` (a fault it must have met, so it was tested)."""
        async with asyncio.timeout(timeout):
            while f'"event": "{event}"' not in self.daemon.log_file.read_text(errors="replace"):
                await asyncio.sleep(0.05)  # another process: poll its log

    # -- what is true -------------------------------------------------------------------------

    async def codes(self) -> list[Json]:
        """Every code the gateway lists, backup pools included."""
        found: list[Json] = []
        for device_id in self.devices:
            reply = await self.client.ok(
                "access_codes/list", device_id=device_id, include_backup_pool=True
            )
            found += reply["access_codes"]
        return found

    def tables(self) -> dict[str, dict[int, str | None]]:
        return {d: dict(self.sim.lock(d).slots) for d in self.devices}

    async def assert_safe(self) -> None:
        """The invariants that hold at every moment, work in flight or not."""
        found = violations(self.tables(), await self.codes())
        assert not found, found

    async def assert_converges(self, timeout: float = 30.0) -> None:
        """Wait until the locks match the gateway's codes, then judge every invariant, the
        ledger's included, and that the daemon answers promptly."""
        last: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    codes = await self.codes()
                    now = datetime.now(UTC)
                    last = divergences(self.tables(), codes, now, unmanaged=self.unmanaged)
                    if not last:
                        break
                    await asyncio.sleep(0.1)  # another process: poll, there is no event
        except TimeoutError:
            raise AssertionError(f"no convergence within {timeout}s: {last}") from None
        found = violations(self.tables(), codes, self.ledger, unmanaged=self.unmanaged)
        assert not found, found
        await self.assert_answers()

    async def assert_answers(self) -> None:
        """The daemon is alive and a request gets a prompt reply."""
        assert self.running, f"the daemon died: {self.log_tail()}"
        for device_id in self.devices:
            reply = await self.client.once("devices/get", timeout=PROMPT, device_id=device_id)
            assert reply is not None, f"devices/get: no reply within {PROMPT}s"
            assert reply["ok"], reply


def site_data(broker: Broker, tmp: Path, **overrides: Any) -> dict[str, Any]:
    """Two native locks with room to spare and PINs of 4 to 8 digits, as YAML would have it."""
    data = site_dict(
        broker,
        tmp,
        devices=[
            {"device_id": d, "driver": "native", "slots": 40, "code_lengths": [4, 8]}
            for d in ("front_door", "back_door")
        ],
        timing={"command_timeout": "1s", "delay_warning_after": "5s"},
        simulator={"latency": "5ms"},
    )
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return data


@asynccontextmanager
async def rig(
    broker: Broker,
    tmp: Path,
    *,
    daemon_port: int | None = None,
    daemon_class: type[Daemon] = Daemon,
    start: bool = True,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """A site on ``broker``; the daemon reaches it through ``daemon_port`` when given (a
    proxy), and is killed when the block ends."""
    data = site_data(broker, tmp, **overrides)
    config = parse_config(data, base_dir=tmp)
    daemon_data = {**data, "mqtt": {**data["mqtt"], "port": daemon_port or broker.port}}
    daemon = daemon_class(write_config(tmp / "lockgate.yaml", daemon_data), tmp / "daemon.log")
    client = Caller(config)
    try:
        async with running_simulator(config) as sim:
            site = Rig(config, daemon, sim, client)
            if start:
                await site.start()
            yield site
    finally:
        daemon.stop()
        await client.close()


# -- the workload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """Relative weights of what a workload client does next."""

    create: float = 1.0
    pin_change: float = 0.0
    window_change: float = 0.0
    delete: float = 0.0
    pull: float = 0.0


class Workload:
    """One client working on one lock: it only touches codes it created, and keeps at most
    ``keep`` of them alive. Every request carries an idempotency key and is retried until
    answered; only replies change the ledger."""

    def __init__(
        self,
        site: Rig,
        device_id: str,
        rng: random.Random,
        mix: Mix,
        *,
        time_bound: bool = False,
        pool: bool = False,
        keep: int = 5,
    ) -> None:
        self.site = site
        self.device_id = device_id
        self.rng = rng
        self.mix = mix
        self.time_bound = time_bound
        self.pool = pool
        self.keep = keep
        self.mine: dict[str, Json] = {}
        self.done = 0

    async def run(self, stop: asyncio.Event, ops: int | None = None) -> None:
        """Until ``stop`` is set (the request in flight is finished first), or ``ops`` done."""
        while not stop.is_set() and (ops is None or self.done < ops):
            await self.step()
            self.done += 1

    async def step(self) -> None:
        choices = self._possible()
        op = self.rng.choices(list(choices), weights=list(choices.values()))[0]
        await getattr(self, op)()

    def _possible(self) -> dict[str, float]:
        mix = self.mix
        bound = any(c["type"] == "time_bound" for c in self.mine.values())
        weights = {
            "create": mix.create if len(self.mine) < self.keep else 0.0,
            "pin_change": mix.pin_change if self.mine else 0.0,
            "window_change": mix.window_change if bound else 0.0,
            "delete": mix.delete if self.mine else 0.0,
            "pull": mix.pull if bound and self.pool else 0.0,
        }
        if not any(weights.values()):
            weights["delete" if self.mine else "create"] = 1.0
        return {k: w for k, w in weights.items() if w > 0}

    async def _call(self, endpoint: str, **params: Any) -> Json:
        return await self.site.client.call(endpoint, idempotency_key=str(uuid.uuid4()), **params)

    def _window(self) -> dict[str, str]:
        """Open now (for a minute already), or, one time in four, opening in an hour."""
        now = datetime.now(UTC)
        start = now + timedelta(hours=1) if self.rng.random() < 0.25 else now - timedelta(minutes=1)
        end = start + timedelta(hours=self.rng.uniform(2, 6))
        return {"starts_at": isoformat(start), "ends_at": isoformat(end)}

    def _pick(self, time_bound: bool = False) -> str:
        ids = [i for i, c in self.mine.items() if c["type"] == "time_bound" or not time_bound]
        return self.rng.choice(sorted(ids))

    async def create(self) -> None:
        params: dict[str, Any] = {"device_id": self.device_id, "code": self.site.fresh_pin()}
        if self.time_bound or self.rng.random() < 0.5:
            params |= self._window()
        if self.pool:
            params["use_backup_access_code_pool"] = True
        reply = await self._call("access_codes/create", **params)
        assert reply["ok"], (params, reply)
        code = reply["access_code"]
        self.mine[code["access_code_id"]] = code
        self.site.ledger.created(code)

    async def pin_change(self) -> None:
        cid = self._pick()
        reply = await self._call(
            "access_codes/update", access_code_id=cid, code=self.site.fresh_pin()
        )
        assert reply["ok"], reply
        self.mine[cid] = reply["access_code"]
        self.site.ledger.updated(reply["access_code"])

    async def window_change(self) -> None:
        cid = self._pick(time_bound=True)
        reply = await self._call("access_codes/update", access_code_id=cid, **self._window())
        assert reply["ok"], reply
        self.mine[cid] = reply["access_code"]

    async def delete(self) -> None:
        cid = self._pick()
        reply = await self._call("access_codes/delete", access_code_id=cid)
        assert reply["ok"], reply
        del self.mine[cid]
        self.site.ledger.deleted(cid)

    async def pull(self) -> None:
        cid = self._pick(time_bound=True)
        reply = await self._call("access_codes/pull_backup_access_code", access_code_id=cid)
        if not reply["ok"]:
            assert reply["error"]["type"] == "no_backup_access_code_available", reply
            return
        self.site.ledger.pulled(cid, reply["backup_access_code"])


@asynccontextmanager
async def working(*workloads: Workload, ops: int | None = None) -> AsyncIterator[asyncio.Event]:
    """Run the workloads in the background; at the end of the block they finish the request in
    flight (or their ``ops``) and stop. Set the yielded event to stop them earlier."""
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        for n, workload in enumerate(workloads):
            tg.create_task(workload.run(stop, ops), name=f"test-workload-{n}")
        try:
            yield stop
        finally:
            if ops is None:
                stop.set()
