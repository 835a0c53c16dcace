"""``systemctl reload lockgate`` (SIGHUP; issue 12, point 1), end to end: the daemon as a process
under a fake systemd notify socket, its locks played by the simulator. A reload keeps the MQTT
session and every lock's state; devices come and go; a bad file changes nothing."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from drivers.sim import Simulator
from gateway.client import ApiClient, connect
from gateway.config import parse_config
from gateway.model import Json
from tests.broker import Broker
from tests.conftest import site_dict
from tests.harness import ok, running_simulator, wait_for_json
from tests.test_service import Daemon, is_state, write_config

FRONT = {
    "device_id": "front_door",
    "name": "Front door",
    "driver": "native",
    "slots": 8,
    "backup_pool": {"enabled": True, "size": 2},
}
BACK = {"device_id": "back_door", "name": "Back door", "driver": "native", "slots": 8}
SIDE = {"device_id": "side_door", "name": "Side door", "driver": "native", "slots": 8}


class NotifySocket:
    """What the daemon tells systemd, as systemd would receive it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.seen: list[str] = []

    def drain(self) -> None:
        """Forget what was said so far (start-up's READY and STATUS lines)."""
        while True:
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return

    async def until(self, wanted: str, timeout: float = 20.0) -> list[str]:
        """Messages up to the first that contains ``wanted`` (a line such as ``READY=1``)."""
        loop = asyncio.get_running_loop()
        got: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                message = (await loop.sock_recv(self.sock, 4096)).decode()
                self.seen.append(message)
                got.append(message)
                if wanted in message.splitlines() or wanted in message:
                    return got


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    instance = NotifySocket(tmp_path / "notify.sock")
    yield instance
    instance.sock.close()


def site(broker: Broker, tmp_path: Path, devices: list[Json], **more: Any) -> dict[str, Any]:
    timing = {"command_timeout": "1s", "delay_warning_after": "1h", **more.pop("timing", {})}
    return site_dict(broker, tmp_path, devices=copy.deepcopy(devices), timing=timing, **more)


@asynccontextmanager
async def running(
    broker: Broker, tmp_path: Path, notify: NotifySocket
) -> AsyncIterator[tuple[Daemon, ApiClient, Path, Simulator]]:
    """The simulator playing all three doors, the daemon started on front and back only."""
    everything = parse_config(site(broker, tmp_path, [FRONT, BACK, SIDE]), base_dir=tmp_path)
    config_file = write_config(tmp_path / "lockgate.yaml", site(broker, tmp_path, [FRONT, BACK]))
    daemon = Daemon(config_file, tmp_path / "daemon.log")
    async with (
        running_simulator(everything) as sim,
        connect(everything.mqtt, everything.prefix) as api,
    ):
        status = await api.subscribe(f"{everything.prefix}/status")
        daemon.start(env={**os.environ, "NOTIFY_SOCKET": str(notify.path)})
        try:
            await wait_for_json(status, is_state("online"), timeout=20)
            await notify.until("READY=1")
            yield daemon, api, config_file, sim
        finally:
            daemon.stop()


async def retained(api: ApiClient, topic: str) -> asyncio.Queue[aiomqtt.Message]:
    return await api.subscribe(topic)


async def until_payload(
    queue: asyncio.Queue[aiomqtt.Message], check: Any, timeout: float = 20
) -> bytes:
    async with asyncio.timeout(timeout):
        while True:
            message = await queue.get()
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if check(payload):
                return payload


def hup(daemon: Daemon, notify: NotifySocket) -> None:
    assert daemon.proc is not None
    notify.drain()
    daemon.proc.send_signal(signal.SIGHUP)


def log_count(daemon: Daemon, event: str) -> int:
    """Lines of ``event``; for the broker, those of the gateway's main session (the urgent
    lane has a connection of its own)."""
    lines = [json.loads(line) for line in daemon.log_file.read_text().splitlines() if line]
    return sum(
        1
        for line in lines
        if line.get("event") == event and line.get("client_id", MAIN_CLIENT) == MAIN_CLIENT
    )


MAIN_CLIENT = "lockgate-test-hub"


async def test_a_reload_adds_and_retires_devices_without_dropping_anything(
    broker: Broker, tmp_path: Path, notify: NotifySocket
) -> None:
    async with running(broker, tmp_path, notify) as (daemon, api, config_file, sim):
        prefix = "lockgate/test-hub"
        front_object = await retained(api, f"{prefix}/devices/front_door")
        await wait_for_json(
            front_object, lambda d: d["properties"]["backup_codes_available"] == 2, timeout=20
        )
        backups = set(sim.lock("front_door").slots.values())
        assert len(backups) == 2
        events = await api.subscribe(f"{prefix}/events/#")
        kept = ok(await api.call("access_codes/create", device_id="back_door", code="4821"))
        await wait_for_json(
            events,
            lambda e: (
                e["event_type"] == "access_code.set_on_device"
                and e["access_code_id"] == kept["access_code"]["access_code_id"]
            ),
        )
        back_commands = await api.subscribe("locks/back_door/command")

        renamed = {**BACK, "name": "Back door (yard)"}
        write_config(
            config_file,
            site(broker, tmp_path, [renamed, SIDE], timing={"max_attempts": 5}),
        )
        hup(daemon, notify)
        said = await notify.until("READY=1")
        assert said[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert any(
            m.startswith("STATUS=") and "configuration reloaded: 2 devices" in m for m in said
        )

        # The removed door is unmanaged, its backups come off its lock, then it leaves the API.
        unmanaged = await wait_for_json(
            events, lambda e: e["event_type"] == "device.converted_to_unmanaged", timeout=20
        )
        assert unmanaged["device_id"] == "front_door"
        await until_payload(front_object, lambda payload: payload == b"")
        assert not backups & set(sim.lock("front_door").slots.values())
        gone = await api.call("devices/get", device_id="front_door")
        assert gone["error"]["type"] == "device_not_found"

        # The added door works at once; the kept one has its new name and its code.
        code = ok(await api.call("access_codes/create", device_id="side_door", code="5932"))
        side = sim.lock("side_door")
        async with asyncio.timeout(20):
            while "5932" not in side.slots.values():
                await asyncio.sleep(0.02)  # the simulator is in this process: poll its table
        assert code["access_code"]["device_id"] == "side_door"
        back = ok(await api.call("devices/get", device_id="back_door"))["device"]
        assert back["name"] == "Back door (yard)"
        got = ok(
            await api.call("access_codes/get", access_code_id=kept["access_code"]["access_code_id"])
        )
        assert got["access_code"]["status"] == "set"

        # One MQTT session all along, and the kept lock was not read again (nor written).
        assert log_count(daemon, "mqtt.connected") == 1
        assert log_count(daemon, "gateway.reloaded") == 1
        assert back_commands.empty()


async def test_pool_settings_and_timings_take_effect_in_place(
    broker: Broker, tmp_path: Path, notify: NotifySocket
) -> None:
    async with running(broker, tmp_path, notify) as (daemon, api, config_file, sim):
        front_object = await api.subscribe("lockgate/test-hub/devices/front_door")
        await wait_for_json(
            front_object, lambda d: d["properties"]["backup_codes_available"] == 2, timeout=20
        )
        # The back door stops answering; a code waits there, not yet late by the running file.
        await sim.lock("back_door").control({"silent": True})
        waiting = ok(await api.call("access_codes/create", device_id="back_door", code="4821"))
        cid = waiting["access_code"]["access_code_id"]

        def warned(code: Json) -> set[str]:
            return {w["warning_code"] for w in code["warnings"]}

        first = ok(await api.call("access_codes/get", access_code_id=cid))["access_code"]
        assert "delay_in_setting_on_device" not in warned(first)

        bigger = {**FRONT, "backup_pool": {"enabled": True, "size": 3}}
        timing = {"delay_warning_after": "0s", "command_timeout": "1s"}
        write_config(config_file, site(broker, tmp_path, [bigger, BACK], timing=timing))
        hup(daemon, notify)
        await notify.until("READY=1")
        async with asyncio.timeout(20):  # the new delay_warning_after judges the waiting code
            while "delay_in_setting_on_device" not in warned(
                ok(await api.call("access_codes/get", access_code_id=cid))["access_code"]
            ):
                await asyncio.sleep(0.05)  # another process: ask again
        grown = await wait_for_json(
            front_object, lambda d: d["properties"]["backup_codes_available"] == 3, timeout=20
        )
        assert grown["properties"]["backup_pool_size"] == 3
        assert len(set(sim.lock("front_door").slots.values())) == 3
        assert log_count(daemon, "mqtt.connected") == 1


async def test_a_bad_file_is_refused_as_a_whole_and_the_old_one_runs_on(
    broker: Broker, tmp_path: Path, notify: NotifySocket
) -> None:
    async with running(broker, tmp_path, notify) as (daemon, api, config_file, _):
        good = config_file.read_text()
        bad = site(broker, tmp_path, [FRONT, {**SIDE, "driver": "zigbe2mqtt"}])
        config_file.write_text(yaml.safe_dump(bad))
        hup(daemon, notify)
        said = await notify.until("READY=1")
        # The last STATUS= before READY=1 (others, such as the clock's, may come between).
        status = [m for m in said if m.startswith("STATUS=")][-1]
        assert status.startswith("STATUS=reload refused, still running the previous configuration")
        assert "devices[1].driver: unknown driver 'zigbe2mqtt'" in status
        refused = [
            line
            for line in daemon.log_file.read_text().splitlines()
            if "gateway.reload_refused" in line
        ]
        assert len(refused) == 1
        assert '"level": "error"' in refused[0]
        # Nothing changed: the back door is still there, the side door never came.
        ok(await api.call("access_codes/create", device_id="back_door", code="4821"))
        missing = await api.call("devices/get", device_id="side_door")
        assert missing["error"]["type"] == "device_not_found"

        # A new hub id needs a restart: refused too, with the reason.
        moved = yaml.safe_load(good) | {"hub_id": "another-hub"}
        config_file.write_text(yaml.safe_dump(moved))
        hup(daemon, notify)
        said = await notify.until("READY=1")
        assert any("hub_id: cannot change on reload" in m for m in said)
        assert log_count(daemon, "gateway.reloaded") == 0


async def test_a_changed_broker_section_reconnects(
    broker: Broker, tmp_path: Path, notify: NotifySocket
) -> None:
    async with running(broker, tmp_path, notify) as (daemon, api, config_file, _):
        data = yaml.safe_load(config_file.read_text())
        data["mqtt"]["keepalive"] = 7
        write_config(config_file, data)
        hup(daemon, notify)
        await notify.until("READY=1")
        status = await api.subscribe("lockgate/test-hub/status")
        await wait_for_json(status, is_state("online"))
        async with asyncio.timeout(20):
            while log_count(daemon, "mqtt.connected") < 2:
                await asyncio.sleep(0.05)  # another process: poll its log
        assert log_count(daemon, "mqtt.reconnecting") == 1
        assert log_count(daemon, "mqtt.disconnected") == 0  # left cleanly, not lost
        ok(await api.call("access_codes/create", device_id="back_door", code="4821"))


def test_the_unit_reloads_with_sighup() -> None:
    unit = (Path(__file__).resolve().parent.parent / "systemd" / "lockgate.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit.splitlines()
