"""kill -9 in the middle of a burst of creates: nothing acknowledged is lost, nothing doubled.

The gateway runs as a real process (so it can really be killed); the simulated locks run in the
test's loop on their own connection and count every command they receive.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.sim import Simulator
from gateway.client import ApiClient, connect
from gateway.config import parse_config
from tests.broker import Broker
from tests.conftest import codes_on_lock, site_dict
from tests.harness import running_simulator, wait_for_json
from tests.test_service import Daemon, is_state, write_config

LOCKS = ("front_door", "back_door")
CODES_PER_LOCK = 12
UNMANAGED = {"30": "9999"}


def site(broker: Broker, tmp_path: Path) -> dict[str, Any]:
    return site_dict(
        broker,
        tmp_path,
        devices=[
            {"device_id": lock, "driver": "native", "slots": 30, "code_lengths": [4, 8]}
            for lock in LOCKS
        ],
        simulator={"latency": "5ms", **codes_on_lock(UNMANAGED)},
        timing={"command_timeout": "2s"},
    )


async def create_all(
    api: ApiClient, requests: list[dict[str, Any]], acked: dict[str, str], stop_after: int | None
) -> None:
    """Send creates one by one; record acknowledged ones; stop once ``stop_after`` are acked."""
    for request in requests:
        if stop_after is not None and len(acked) >= stop_after:
            return
        try:
            reply = await api.call("access_codes/create", timeout=3.0, **request)
        except TimeoutError:
            return  # the gateway died under us
        assert reply["ok"], reply
        acked[request["idempotency_key"]] = reply["access_code"]["access_code_id"]


@pytest.mark.parametrize("kill_after", [1, 7, 18])
async def test_kill_9_during_a_burst_loses_nothing_and_doubles_nothing(
    broker: Broker, tmp_path: Path, kill_after: int
) -> None:
    data = site(broker, tmp_path)
    config = parse_config(data, base_dir=tmp_path)
    daemon = Daemon(write_config(tmp_path / "lockgate.yaml", data), tmp_path / "daemon.log")
    requests = [
        {
            "device_id": lock,
            "name": f"Guest {lock} {i}",
            "code": f"{5 + LOCKS.index(lock)}{i:03d}",
            "idempotency_key": str(uuid.uuid4()),
        }
        for lock in LOCKS
        for i in range(CODES_PER_LOCK)
    ]
    requests.sort(key=lambda r: r["idempotency_key"])  # interleave the two locks
    acked: dict[str, str] = {}
    writes: Counter[tuple[str, int, str]] = Counter()
    try:
        async with running_simulator(config) as sim, connect(config.mqtt, config.prefix) as api:
            commands = await api.subscribe("locks/+/command")
            status = await api.subscribe(f"{config.prefix}/status")
            await daemon.started(status, timeout=30)
            await create_all(api, requests, acked, stop_after=kill_after)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(timeout=10)
            await wait_for_json(status, is_state("offline"), timeout=30)
            await daemon.started(status, timeout=30)
            # The client retries everything it has not seen acknowledged (and, being careful,
            # everything else too): idempotency keys make that safe.
            before = dict(acked)
            await create_all(api, requests, acked, stop_after=None)
            assert {k: acked[k] for k in before} == before  # same codes, not new ones
            await until_all_set(api, acked.values())
            collect_writes(commands, writes)

            await assert_locks_hold(api, sim, LOCKS, acked.values(), {"front_door": UNMANAGED})
        # No slot was written twice with the same code.
        doubled = {k: n for k, n in writes.items() if n > 1}
        assert not doubled, doubled
    finally:
        daemon.stop()


async def until_all_set(api: ApiClient, ids: Iterable[str], timeout: float = 60) -> None:
    """Poll the API (the daemon is another process: there is no in-process event to await)."""
    wanted = list(ids)
    async with asyncio.timeout(timeout):
        while True:
            reply = await api.call("access_codes/list", access_code_ids=wanted)
            if all(c["status"] == "set" for c in reply["access_codes"]):
                return
            await asyncio.sleep(0.05)


def collect_writes(
    commands: asyncio.Queue[aiomqtt.Message], writes: Counter[tuple[str, int, str]]
) -> None:
    """Count the ``set`` commands received so far, by lock topic, slot and PIN."""
    while not commands.empty():
        message = commands.get_nowait()
        assert isinstance(message.payload, bytes)
        body = json.loads(message.payload)
        if body.get("op") == "set":
            writes[(message.topic.value, body["slot"], body["code"])] += 1


async def assert_locks_hold(
    api: ApiClient,
    sim: Simulator,
    locks: Sequence[str],
    ids: Iterable[str],
    unmanaged: Mapping[str, Mapping[str, str]],
) -> None:
    """The gateway manages exactly ``ids``; each lock holds each of its codes once, in the slot
    the gateway says, and nothing else but its ``unmanaged`` codes (slot: PIN)."""
    managed = {}
    for lock in locks:
        reply = await api.call("access_codes/list", device_id=lock)
        for code in reply["access_codes"]:
            managed[code["access_code_id"]] = (lock, code["code"], code["slot"])
    assert set(managed) == set(ids)
    for lock in locks:
        slots = sim.lock(lock).slots
        desired = {code for (d, code, _) in managed.values() if d == lock}
        on_lock = Counter(slots.values())
        # Every managed code is on its lock exactly once, in the slot the gateway says.
        for d, code, slot in managed.values():
            if d == lock:
                assert slots.get(slot) == code
        assert all(on_lock[c] == 1 for c in desired)
        # Nothing else is on the lock but what was there before the gateway.
        extra = set(slots.values()) - desired
        assert extra == set(unmanaged.get(lock, {}).values())
