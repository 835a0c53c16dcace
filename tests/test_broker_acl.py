"""A locked-down broker (issue 12, point 3): mosquitto started with exactly
``config/mosquitto.conf.example`` and ``config/mosquitto-acl.example`` (paths and port replaced),
the gateway, the simulated locks, an API client and a dashboard each logged in as their role.
Each can do what it needs, and nothing more: no PIN reaches a role that must not see one."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.broker import Broker
from gateway.client import connect
from gateway.config import Config, HomeAssistantSettings, parse_config
from gateway.model import Json
from gateway.mqtt import build_client
from tests.conftest import site_dict
from tests.contract import ROOT
from tests.harness import payload_json, running_gateway, running_simulator

ROLES = ("lockgate", "locks", "frontdesk", "dashboard", "homeassistant")
PASSWORD = "pw-{}-4471"  # each role's password: its name in it
PREFIX = "lockgate/test-hub"


def locked_down_broker(workdir: Path) -> Broker:
    """mosquitto configured with exactly the two examples (their paths and port replaced), each
    role's login in its password file; not started yet."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is needed to make the broker's password file")
    workdir.mkdir()
    passwords = workdir / "lockgate.passwd"
    for n, role in enumerate(ROLES):
        subprocess.run(
            [
                "mosquitto_passwd",
                *(["-c"] if n == 0 else []),
                "-b",
                str(passwords),
                role,
                PASSWORD.format(role),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    passwords.chmod(0o644)  # mosquitto may drop privileges before reading it
    acl = workdir / "lockgate.acl"
    shutil.copy(ROOT / "config" / "mosquitto-acl.example", acl)
    acl.chmod(0o644)
    broker = Broker(workdir)
    conf = (ROOT / "config" / "mosquitto.conf.example").read_text()
    for example, here in (
        ("listener 1883 127.0.0.1", f"listener {broker.port} 127.0.0.1"),
        ("/etc/mosquitto/lockgate.passwd", str(passwords)),
        ("/etc/mosquitto/lockgate.acl", str(acl)),
        ("/var/lib/mosquitto/", f"{workdir}/"),
    ):
        assert example in conf, example
        conf = conf.replace(example, here)
    if os.geteuid() == 0:  # as root mosquitto would switch users and lose our files
        conf += "user root\n"
    broker.conf.write_text(conf + "log_dest none\n")
    return broker


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = locked_down_broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.kill()


def role_config(broker: Broker, tmp_path: Path, role: str) -> Config:
    secret = tmp_path / f"{role}.secret"
    secret.write_text(PASSWORD.format(role) + "\n")
    data = site_dict(broker, tmp_path)
    data["mqtt"] = {**data["mqtt"], "username": role, "password_file": str(secret)}
    return parse_config(data, base_dir=tmp_path)


class Listener:
    """A client of one role subscribed to a few filters, recording what reaches it."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seen: list[tuple[str, Any]] = []
        self._marks: asyncio.Queue[str] = asyncio.Queue()

    async def pump(self) -> None:
        async for message in self.client.messages:
            topic = message.topic.value
            if topic.startswith(f"{PREFIX}/status"):
                await self._marks.put(topic)
            else:
                self.seen.append((topic, payload_json(message)))

    async def caught_up(self) -> None:
        """Everything published before now has reached us: the gateway's retained status,
        asked for again, arrives after anything the broker queued for us before it."""
        while not self._marks.empty():
            self._marks.get_nowait()
        await self.client.unsubscribe(f"{PREFIX}/status")
        await self.client.subscribe(f"{PREFIX}/status", qos=1)
        async with asyncio.timeout(10):
            await self._marks.get()

    def topics(self) -> set[str]:
        return {t for t, _ in self.seen}


@asynccontextmanager
async def listening(config: Config, *filters: str) -> AsyncIterator[Listener]:
    client = build_client(config.mqtt, identifier=f"listener-{config.mqtt.username}")
    async with client:
        listener = Listener(client)
        for topic_filter in (*filters, f"{PREFIX}/status"):
            await client.subscribe(topic_filter, qos=1)
        pump = asyncio.create_task(listener.pump(), name="acl-listener")
        try:
            yield listener
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)


EVERYTHING = ("#", f"{PREFIX}/#", "locks/#", f"{PREFIX}/api/#", f"{PREFIX}/clients/#")


async def test_each_role_does_what_it_needs_and_nothing_more(
    acl_broker: Broker, tmp_path: Path
) -> None:
    gateway_config = role_config(acl_broker, tmp_path, "lockgate")
    locks, frontdesk, dashboard = (
        role_config(acl_broker, tmp_path, role) for role in ("locks", "frontdesk", "dashboard")
    )
    async with (
        running_simulator(locks) as sim,
        running_gateway(gateway_config) as gateway,
        listening(frontdesk, *EVERYTHING) as desk_ears,
        listening(dashboard, *EVERYTHING) as board_ears,
        connect(frontdesk.mqtt, PREFIX, identifier="frontdesk-1") as desk,
        connect(frontdesk.mqtt, PREFIX, identifier="frontdesk-2") as other_desk,
    ):
        # The gateway reached its locks (the locks' role reports, the gateway's role commands).
        await gateway.settled()
        # The API client does its job: a code created, on the lock, its event and device seen.
        reply = await desk.call("access_codes/create", device_id="front_door", code="482916")
        assert reply["ok"] is True, reply
        await gateway.settled()
        assert "482916" in sim.lock("front_door").slots.values()
        # A dashboard's request is dropped by the broker: never executed, never answered.
        with pytest.raises(TimeoutError):
            await as_dashboard(dashboard, "access_codes/create", device_id="back_door", code="7301")
        await desk_ears.caught_up()
        await board_ears.caught_up()

        desk_topics = desk_ears.topics()
        assert f"{PREFIX}/events/access_code.set_on_device" in desk_topics
        assert f"{PREFIX}/devices/front_door" in desk_topics
        # ... but no lock topic, no request, no reply to anyone (it listened under another id).
        assert not {t for t in desk_topics if t.startswith(("locks/", f"{PREFIX}/api/"))}
        assert not {t for t in desk_topics if t.startswith(f"{PREFIX}/clients/")}

        # The dashboard sees device objects and nothing that carries a PIN.
        board_topics = board_ears.topics()
        assert f"{PREFIX}/devices/front_door" in board_topics
        assert board_topics <= {f"{PREFIX}/devices/{d}" for d in ("front_door", "back_door")}
        assert "482916" not in repr(board_ears.seen)
        assert (
            "7301" not in repr(board_ears.seen)
        )
        assert (
            "7301" not in sim.lock("back_door").slots.values()
        )

        # Another API client cannot read the first one's replies, nor pose as the gateway.
        spy = await other_desk.subscribe(f"{PREFIX}/clients/frontdesk-1/reply")
        assert (await desk.call("access_codes/list", device_id="front_door"))["ok"] is True
        forged: Json = {"device_id": "front_door", "name": "forged", "is_managed": False}
        await other_desk.publish(f"{PREFIX}/devices/front_door", forged)
        await other_desk.publish("locks/front_door/command", {"op": "clear", "slot": 1, "id": "x"})
        await desk_ears.caught_up()
        assert spy.empty()
        device = (await desk.call("devices/get", device_id="front_door"))["device"]
        assert device["name"] == "Front door"
        assert "forged" not in repr(desk_ears.seen)
        assert "482916" in sim.lock("front_door").slots.values()


async def as_dashboard(config: Config, endpoint: str, **params: Any) -> Json:
    async with connect(config.mqtt, PREFIX, identifier="dashboard-1") as api:
        return await asyncio.wait_for(api.call(endpoint, **params), timeout=1.5)


def test_the_examples_name_the_pin_bearing_topics() -> None:
    acl = (ROOT / "config" / "mosquitto-acl.example").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    for text in (acl, operations):
        for topic in ("P/api/#", "P/events/#", "P/clients/"):
            assert topic in text, topic


async def test_home_assistant_reads_its_discovery_and_states_and_no_pin(
    acl_broker: Broker, tmp_path: Path
) -> None:
    """Discovery on: the gateway may publish it, Home Assistant's role reads it all (configs,
    device objects, status) and nothing PIN-bearing; a stale config of an earlier run is
    withdrawn under the ACL too."""
    gateway_config = role_config(acl_broker, tmp_path, "lockgate")
    gateway_config = dataclasses.replace(
        gateway_config, homeassistant=HomeAssistantSettings(enabled=True)
    )
    locks, frontdesk, assistant = (
        role_config(acl_broker, tmp_path, role) for role in ("locks", "frontdesk", "homeassistant")
    )
    stale = "homeassistant/sensor/lockgate_test-hub/gone_door_offline/config"
    async with build_client(gateway_config.mqtt, identifier="earlier-run") as earlier:
        await earlier.publish(stale, b'{"name": "Offline"}', qos=1, retain=True)
    async with (
        running_simulator(locks) as sim,
        running_gateway(gateway_config) as gateway,
        connect(frontdesk.mqtt, PREFIX, identifier="frontdesk-1") as desk,
    ):
        reply = await desk.call("access_codes/create", device_id="front_door", code="482916")
        assert reply["ok"] is True, reply
        await gateway.settled()
        assert "482916" in sim.lock("front_door").slots.values()
        async with listening(assistant, *EVERYTHING, "homeassistant/#") as ears:
            # Twice: the first may return on the status of the subscription itself.
            await ears.caught_up()
            await ears.caught_up()
        topics = ears.topics()
        configs = {t for t in topics if t.startswith("homeassistant/")}
        assert configs == {
            f"homeassistant/binary_sensor/lockgate_test-hub/{d}_offline/config"
            for d in ("front_door", "back_door")
        }
        assert f"{PREFIX}/devices/front_door" in topics
        assert topics <= configs | {f"{PREFIX}/devices/{d}" for d in ("front_door", "back_door")}
        assert "482916" not in repr(ears.seen)
