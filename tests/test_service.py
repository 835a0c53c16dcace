"""The daemon as a process: status, signals, kill -9, broker outages, exit codes."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import heap
from gateway.client import ApiClient, connect
from gateway.config import parse_config
from tests.broker import Broker
from tests.conftest import ConfigFactory, site_dict
from tests.harness import running_site, wait_for_json

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


class Daemon:
    def __init__(self, config_file: Path, log_file: Path) -> None:
        self.config_file = config_file
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **popen: Any) -> None:
        """``popen``: more ``subprocess.Popen`` options, or others than the log file's."""
        with self.log_file.open("ab") as log:
            options: dict[str, Any] = {"stdout": log, "stderr": subprocess.STDOUT, **popen}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config_file)],
                cwd=ROOT,
                **options,
            )

    async def started(self, status: asyncio.Queue[Any], timeout: float = 20) -> Any:
        """Start the process and wait until ``status`` says it is online; that status."""
        self.start()
        return await wait_for_json(status, is_state("online"), timeout=timeout)

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon(broker: Broker, tmp_path: Path) -> Iterator[Daemon]:
    config_file = write_config(tmp_path / "lockgate.yaml", site_dict(broker, tmp_path))
    instance = Daemon(config_file, tmp_path / "daemon.log")
    yield instance
    instance.stop()


async def status_of(api: ApiClient, prefix: str) -> asyncio.Queue[Any]:
    return await api.subscribe(f"{prefix}/status")


@asynccontextmanager
async def watching(
    broker: Broker, tmp_path: Path
) -> AsyncIterator[tuple[ApiClient, asyncio.Queue[Any]]]:
    """A client of the site the ``daemon`` fixture runs, subscribed to the daemon's status."""
    config = parse_config(site_dict(broker, tmp_path), base_dir=tmp_path)
    async with connect(config.mqtt, config.prefix) as api:
        yield api, await status_of(api, config.prefix)


def is_state(state: str) -> Any:
    return lambda s: s["state"] == state


async def test_status_online_then_offline_on_sigterm(
    daemon: Daemon, broker: Broker, tmp_path: Path
) -> None:
    async with watching(broker, tmp_path) as (api, status):
        online = await daemon.started(status)
        assert online["version"]
        assert (await api.call("devices/list"))["ok"] is True
        assert await asyncio.to_thread(daemon.signal, signal.SIGTERM) == 0
        await wait_for_json(status, is_state("offline"), timeout=10)
    log = daemon.log_file.read_text()
    assert "gateway.stopped" in log
    assert "Traceback" not in log


async def test_will_publishes_offline_on_kill_9(
    daemon: Daemon, broker: Broker, tmp_path: Path
) -> None:
    async with watching(broker, tmp_path) as (api, status):
        await daemon.started(status)
        assert await asyncio.to_thread(daemon.signal, signal.SIGKILL) == -signal.SIGKILL
        await wait_for_json(status, is_state("offline"), timeout=10)
        # Restarted, it comes back online with what it had.
        await daemon.started(status)
        assert (await api.call("devices/get", device_id="front_door"))["ok"] is True


async def test_api_answers_again_after_broker_restart(
    make_config: ConfigFactory, broker: Broker
) -> None:
    config = make_config()
    async with running_site(config) as site:
        assert (await site.api.call("devices/list"))["ok"] is True
        connections = site.gateway.session.connections
        broker.kill()
        broker.start()
        # The gateway reconnects on its own; a new client gets answers again.
        async with asyncio.timeout(15):
            while site.gateway.session.connections == connections:
                await asyncio.sleep(0.02)
        async with connect(config.mqtt, config.prefix) as api:
            reply = await api.call("devices/update", device_id="front_door", is_managed=False)
            assert reply["ok"] is True
            # The retained status and device objects are back on the fresh broker.
            status = await api.subscribe(f"{config.prefix}/status")
            await wait_for_json(status, is_state("online"))
            devices = await api.subscribe(f"{config.prefix}/devices/front_door")
            await wait_for_json(devices, lambda d: d["is_managed"] is False)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_accepts_the_example() -> None:
    result = run_cli("check-config", "-c", str(ROOT / "config" / "lockgate.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_bad_config_exits_2_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mqtt: {port: 99999}\n"
        "timing: {command_timeout: soon}\n"
        "devices:\n"
        "  - {device_id: front_door, driver: zigbe2mqtt}\n"
        "  - {device_id: front_door, driver: native}\n"
    )
    for command in ("check-config", "run"):
        result = run_cli(command, "-c", str(bad))
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert any(line.startswith("mqtt.port:") for line in lines)
        assert any(line.startswith("timing.command_timeout:") for line in lines)
        assert any(
            line.startswith("devices[0].driver: unknown driver 'zigbe2mqtt'") for line in lines
        )
        assert any(line.startswith("devices[1].device_id: duplicate") for line in lines)


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("check-config", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_call_and_events_commands(
    make_config: ConfigFactory, broker: Broker, tmp_path: Path
) -> None:
    data = site_dict(broker, tmp_path)
    config_file = write_config(tmp_path / "cli.yaml", data)
    async with running_site(make_config()) as site:
        events = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "events",
            "-c",
            str(config_file),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert events.stderr is not None
            async with asyncio.timeout(30):
                assert b"listening" in await events.stderr.readline()
            rc, out, _ = await _cli(
                "call", "-c", str(config_file), "devices/get", "device_id=front_door"
            )
            assert rc == 0
            assert json.loads(out)["device"]["device_id"] == "front_door"
            # key=value is a string (leading zeros kept), key:=json is JSON.
            rc, out, _ = await _cli(
                "call",
                "-c",
                str(config_file),
                "access_codes/create",
                "device_id=front_door",
                "code=0427",
                "allow_external_modification:=true",
            )
            assert rc == 0, out
            created = json.loads(out)["access_code"]
            assert created["code"] == "0427"
            assert created["is_external_modification_allowed"] is True
            # A refusal prints the reply and exits 1.
            rc, out, _ = await _cli("call", "-c", str(config_file), "devices/get", "device_id=nope")
            assert rc == 1
            assert json.loads(out)["error"]["type"] == "device_not_found"
            # `lockgate events` printed the created code's events as JSON lines.
            assert events.stdout is not None
            async with asyncio.timeout(10):
                while True:
                    line = json.loads(await events.stdout.readline())
                    if line["event_type"] == "access_code.created":
                        assert line["access_code_id"] == created["access_code_id"]
                        break
            await site.settled()
        finally:
            events.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                assert await events.wait() == 0


def test_an_unusable_database_is_a_clear_error(tmp_path: Path, broker: Broker) -> None:
    data = site_dict(broker, tmp_path)
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"not a database at all" * 200)
    data["database"] = str(bad)
    result = run_cli("run", "-c", str(write_config(tmp_path / "lockgate.yaml", data)))
    assert result.returncode == 1
    assert "corrupt.db" in result.stderr
    assert "Traceback" not in result.stderr


async def test_what_start_up_built_is_kept_out_of_the_collectors_way(
    make_config: ConfigFactory,
) -> None:
    """Once every lock has been looked at, start-up's objects are frozen (a full collection
    over 10,000 locks' worth held every thread for up to half a second); a stopped gateway
    leaves nothing frozen behind in a process that goes on. Young collections come less often
    than CPython's default (a full collection came every half second of a burst), until the
    gateway stops."""
    thresholds = gc.get_threshold()
    assert thresholds[0] < heap.YOUNG_COLLECTION_EVERY
    async with running_site(make_config()) as site:
        async with asyncio.timeout(10):
            await site.gateway.start_settled.wait()
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()
        assert gc.get_threshold() == (heap.YOUNG_COLLECTION_EVERY, *thresholds[1:])
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()
    assert gc.get_threshold() == thresholds


#: A lock that is not there: its worker waits this long for its first reports.
NEVER_THERE = {"timing": {"command_timeout": "30s"}}


async def test_the_collector_rests_while_the_gateway_starts_and_runs_again_after_a_stop(
    make_config: ConfigFactory,
) -> None:
    """No full collection walks what a start is still building (gateway.heap): paused until
    every lock has been looked at; a gateway stopped before that leaves it running."""
    async with running_site(make_config(**NEVER_THERE), simulate=False, settle=False) as site:
        assert not site.gateway.start_settled.is_set()
        assert not gc.isenabled()
    assert gc.isenabled()


async def test_a_start_that_does_not_settle_resumes_the_collector_all_the_same(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap, "PAUSE_MAX", 0.05)
    async with running_site(make_config(**NEVER_THERE), simulate=False, settle=False) as site:
        async with asyncio.timeout(10):
            await site.gateway.collecting.wait()
        assert gc.isenabled()
        assert not site.gateway.start_settled.is_set()
        assert gc.get_freeze_count() == 0  # nothing frozen before every lock was looked at
