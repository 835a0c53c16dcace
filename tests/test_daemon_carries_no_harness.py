"""``lockgate run`` carries no harness: what the daemon process imports, seen from outside.

The process is the real one (``python -m gateway run``, as systemd starts it), started with
``PYTHONPROFILEIMPORTTIME=1`` (the environment's ``-X importtime``): Python then writes one line
to stderr for every module the process imports, at the moment it imports it. The daemon is taken
through start-up and one code programmed on a simulated lock before it is stopped, so modules
imported on first use are in the list too.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

from gateway.config import parse_config
from tests.broker import Broker
from tests.conftest import site_dict
from tests.harness import api_client, running_simulator, wait_for_json
from tests.test_service import Daemon, is_state, run_cli, write_config

#: The simulator, its settings, its lock classes, the in-process site, the demo, the test broker.
HARNESS = re.compile(
    r"drivers\.sim|drivers\.sim_settings|drivers\.\w+\.simulator|gateway\.(site|demo|broker)"
)


def imported_modules(stderr: str) -> list[str]:
    """The module names of ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    return [
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


async def test_the_daemon_imports_no_simulator_site_demo_or_broker(
    broker: Broker, tmp_path: Path
) -> None:
    # A simulator section with generated locks: the daemon neither parses nor manages them.
    raw = site_dict(broker, tmp_path, simulator={"generate": {"count": 2}})
    config = parse_config(raw, base_dir=tmp_path)
    daemon = Daemon(write_config(tmp_path / "lockgate.yaml", raw), tmp_path / "daemon.log")
    imports = tmp_path / "imports.txt"
    async with running_simulator(config), api_client(config) as api:
        status = await api.subscribe(f"{config.prefix}/status")
        set_on_device = await api.subscribe(f"{config.prefix}/events/access_code.set_on_device")
        with imports.open("wb") as stderr:
            daemon.start(stderr=stderr, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
        try:
            await wait_for_json(status, is_state("online"), timeout=20)
            devices = (await api.call("devices/list"))["devices"]
            assert sorted(d["device_id"] for d in devices) == ["back_door", "front_door"]
            created = await api.call("access_codes/create", device_id="front_door", code="2468")
            code_id = created["access_code"]["access_code_id"]
            await wait_for_json(set_on_device, lambda e: e["access_code_id"] == code_id, 20)
        finally:
            assert await asyncio.to_thread(daemon.signal, signal.SIGTERM) == 0
    loaded = imported_modules(imports.read_text())
    # The daemon did import what it runs on, so the list is the real one.
    assert {"gateway.service", "drivers.native.driver", "sqlite3"} <= set(loaded), loaded
    assert [name for name in loaded if HARNESS.fullmatch(name)] == []


def test_check_config_still_checks_the_simulators_section(tmp_path: Path) -> None:
    """``run`` leaves the section to the simulator; ``check-config`` asks the simulator."""
    path = tmp_path / "lockgate.yaml"
    path.write_text("hub_id: hub-1\nsimulator: {latency: fast, locks: {ghost: {}}}\n")
    result = run_cli("check-config", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "simulator.latency: invalid duration 'fast' (use e.g. 500ms, 10s, 5m, 1h, 2d or a number"
        " of seconds)",
        "simulator.locks.ghost: no device 'ghost' is configured",
    ]
