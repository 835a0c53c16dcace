"""One gateway per database (issue 12, point 5): a second ``lockgate run`` on the same database
stops at once with one clear line and exit status 2; another client taking the gateway's MQTT
client id is named in an error, and the gateway backs off instead of fighting it."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiomqtt

from gateway.mqtt import SESSION_TAKEN_OVER, TakeoverWatch
from tests.broker import Broker
from tests.test_service import Daemon, daemon, run_cli, watching  # noqa: F401 (fixture)


async def test_a_second_gateway_on_the_same_database_stops_at_once(
    daemon: Daemon,  # noqa: F811 (the fixture)
    broker: Broker,
    tmp_path: Path,
) -> None:
    async with watching(broker, tmp_path) as (api, status):
        await daemon.started(status)
        assert daemon.proc is not None
        second = await asyncio.to_thread(run_cli, "run", "-c", str(daemon.config_file))
        assert second.returncode == 2
        lines = (second.stdout + second.stderr).splitlines()
        assert len(lines) == 1, lines
        assert "already running" in lines[0]
        assert f"pid {daemon.proc.pid}" in lines[0]
        assert str(tmp_path / "lockgate.db") in lines[0]
        # The first never noticed: still connected, still answering.
        assert daemon.proc.poll() is None
        assert (await api.call("devices/list"))["ok"] is True
        said = [json.loads(line) for line in daemon.log_file.read_text().splitlines() if line]
        connected = [s["client_id"] for s in said if s.get("event") == "mqtt.connected"]
        assert connected.count("lockgate-test-hub") == 1  # (the urgent lane has its own)

        # A crash leaves no stale lock: after kill -9 the next gateway starts.
        assert await asyncio.to_thread(daemon.signal, signal.SIGKILL) == -signal.SIGKILL
        await daemon.started(status)


async def test_another_client_with_the_gateways_id_is_named_and_not_fought(
    daemon: Daemon,  # noqa: F811 (the fixture)
    broker: Broker,
    tmp_path: Path,
) -> None:
    """A rogue client that reconnects with the gateway's client id whenever it is knocked off,
    as a second gateway with the same hub_id would: the gateway logs an error naming the id and
    stays away for seconds, so the rogue keeps its connection meanwhile."""
    async with watching(broker, tmp_path) as (_, status):
        await daemon.started(status)
        identifier = "lockgate-test-hub"
        knocked_off = 0
        held = asyncio.Event()

        async def rogue() -> None:
            nonlocal knocked_off
            loop = asyncio.get_running_loop()
            while True:
                began = loop.time()
                try:
                    async with aiomqtt.Client(
                        broker.host,
                        broker.port,
                        identifier=identifier,
                        protocol=aiomqtt.ProtocolVersion.V5,
                    ) as client:
                        await client.subscribe("nothing/here")
                        async for _ in client.messages:
                            pass
                except aiomqtt.MqttError:
                    knocked_off += 1
                if loop.time() - began > 2.0:  # the gateway stayed away for a while
                    held.set()
                    return
                # A client's own reconnect delay (aiomqtt waits up to 10 s for a CONNACK that a
                # takeover in mid-handshake never sends: the gateway must get its session first).
                await asyncio.sleep(0.3)

        async with asyncio.timeout(40):
            await rogue()
        assert held.is_set()
        assert knocked_off >= 1
        errors = [
            json.loads(line)
            for line in daemon.log_file.read_text().splitlines()
            if "mqtt.client_id_in_use" in line
        ]
        assert errors, "the gateway never said why it kept losing the broker"
        assert errors[0]["level"] == "error"
        assert errors[0]["client_id"] == identifier
        assert errors[0]["retry_in"] >= 5


def test_a_broker_saying_so_is_believed_at_once() -> None:
    watch = TakeoverWatch()
    hold = watch.lost(lasted=3600.0, reason_code=SESSION_TAKEN_OVER)
    assert hold is not None
    assert hold.certain
    assert hold.delay == watch.base


def test_sessions_lost_at_once_in_a_row_are_suspected_and_holds_double() -> None:
    watch = TakeoverWatch(short=1.0, suspect_after=3, base=5.0, ceiling=12.0)
    assert [watch.lost(0.1, None) for _ in range(2)] == [None, None]
    first = watch.lost(0.1, None)
    assert first is not None
    assert not first.certain
    assert first.delay == 5.0
    for _ in range(2):
        assert watch.lost(0.1, None) is None
    second = watch.lost(0.1, None)
    assert second is not None
    assert second.delay == 10.0
    for _ in range(3):
        third = watch.lost(0.1, None)
    assert third is not None
    assert third.delay == 12.0


def test_ordinary_losses_never_hold() -> None:
    watch = TakeoverWatch(short=1.0, suspect_after=3)
    # A broker that is away (no session at all) does not count; a session that lasted ends the run.
    for lasted in (0.1, 0.1, None, 30.0, 0.1, 0.1, 30.0, 0.1, 0.1):
        assert watch.lost(lasted, None) is None
