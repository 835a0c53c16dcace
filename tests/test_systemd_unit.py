"""The unit file: the settings the gateway relies on, the hardening, and systemd's own checks.

systemd is not PID 1 on the test machines, so the unit is checked statically. ``systemd-analyze
verify`` exits 0 even on a misspelt key and only prints a warning, so any output fails.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "lockgate.service"
BROKER_DROP_IN = ROOT / "systemd" / "broker-address.conf.example"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"

# The gateway alone at 10,000 locks (`python -m bench.gateway_process`, recorded in
# docs/benchmarks.md): the limits below are checked against these, so a re-measurement that
# grows them fails here until the unit's limits grow too.
MEASURED_PEAK_RSS_MIB = 207
MEASURED_THREADS = 7
# asyncio's default executor grows to min(32, cores + 4) threads: 32 on a large machine.
EXECUTOR_THREADS_MAX = 32
MAX_EXPOSURE = 1.5

Unit = dict[str, dict[str, list[str]]]

HARDENING: dict[str, str] = {
    "DynamicUser": "yes",
    "StateDirectory": "lockgate",
    "StateDirectoryMode": "0700",
    "ConfigurationDirectory": "lockgate",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallFilter": "@system-service",
    "MemoryDenyWriteExecute": "yes",
    "UMask": "0077",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectKernelLogs": "yes",
    "SystemCallArchitectures": "native",
    "RestrictSUIDSGID": "yes",
}


def parse_unit(text: str) -> Unit:
    """systemd's syntax, not INI's: keys repeat (and accumulate), empty values are meaningful."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def test_service_settings(unit: Unit) -> None:
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["ExecStart"] == ["/usr/local/bin/lockgate run -c /etc/lockgate/lockgate.yaml"]
    assert service["WatchdogSec"] == ["30"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartSec"] == ["2"]
    assert service["TimeoutStopSec"] == ["20"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize(("key", "value"), sorted(HARDENING.items()))
def test_hardening_key(unit: Unit, key: str, value: str) -> None:
    assert value in unit["Service"].get(key, []), f"{key}={value} missing from the unit"


def parse_size(value: str) -> int:
    """A systemd byte size (``640M``; K, M, G, T are powers of 1024) in bytes. Percentages and
    ``infinity`` are refused: the limits are meant to be absolute figures from a measurement."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", value)
    assert match, f"not an absolute size: {value!r}"
    return int(match.group(1)) << (10 * " KMGT".index(match.group(2) or " "))


def test_parse_size() -> None:
    assert parse_size("640M") == 640 * 2**20
    assert parse_size("1G") == 2**30
    assert parse_size("4096") == 4096
    with pytest.raises(AssertionError):
        parse_size("50%")


def test_memory_limits_leave_headroom_above_the_measured_peak(unit: Unit) -> None:
    service = unit["Service"]
    assert len(service.get("MemoryMax", [])) == 1, "MemoryMax= set once"
    assert len(service.get("MemoryHigh", [])) == 1, "MemoryHigh= set once"
    peak = MEASURED_PEAK_RSS_MIB * 2**20
    high, hard = parse_size(service["MemoryHigh"][0]), parse_size(service["MemoryMax"][0])
    assert hard >= 2 * peak, f"MemoryMax={service['MemoryMax'][0]} is below twice the peak"
    assert 1.5 * peak <= high < hard, "MemoryHigh= between 1.5x the peak and MemoryMax="


def test_tasks_max_covers_every_thread_the_gateway_can_start(unit: Unit) -> None:
    (value,) = unit["Service"]["TasksMax"]
    assert value.isdigit(), f"TasksMax={value}: an absolute count"
    assert int(value) >= MEASURED_THREADS + EXECUTOR_THREADS_MAX


def test_measured_figures_are_the_documented_ones() -> None:
    """The constants above and docs/benchmarks.md tell the same measurement."""
    text = BENCHMARKS.read_text()
    assert f"peak resident set (`VmHWM`) | {MEASURED_PEAK_RSS_MIB} MiB |" in text
    assert f"most threads seen (`Threads`) | {MEASURED_THREADS} |" in text


def _allowed(values: list[str]) -> list[str]:
    return [item for value in values for item in value.split()]


def test_ip_traffic_is_limited_to_this_machine(unit: Unit) -> None:
    service = unit["Service"]
    assert service.get("IPAddressDeny") == ["any"]
    allowed = _allowed(service.get("IPAddressAllow", []))
    assert "localhost" in allowed or {"127.0.0.0/8", "::1"} <= set(allowed)
    assert "any" not in allowed


def test_broker_drop_in_allows_only_addresses() -> None:
    drop_in = parse_unit(BROKER_DROP_IN.read_text())
    assert list(drop_in) == ["Service"]
    assert list(drop_in["Service"]) == ["IPAddressAllow"]
    addresses = _allowed(drop_in["Service"]["IPAddressAllow"])
    assert addresses
    for address in addresses:
        network = ipaddress.ip_network(address)  # raises on anything but an address or prefix
        assert not network.is_loopback, "localhost is in the unit already"
        assert network.num_addresses < 2**16 or network.version == 6, "not a wide-open prefix"


def test_operations_doc_shows_the_drop_in() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    assert "/etc/systemd/system/lockgate.service.d/broker.conf" in text
    assert "IPAddressAllow=" in text
    assert BROKER_DROP_IN.name in text


def test_exec_start_is_the_console_script(unit: Unit) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    program, subcommand = unit["Service"]["ExecStart"][0].split()[:2]
    assert Path(program).name in scripts
    assert subcommand == "run"


def test_parser_keeps_repeats_and_empty_values() -> None:
    parsed = parse_unit("[Service]\nA=\nB=x\nB=y \\\n  z\n# c=1\n")
    assert parsed == {"Service": {"A": [""], "B": ["x", "y z"]}}


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        reason = "systemd-analyze is not on PATH; the unit was only checked by the parser"
        print(reason)
        pytest.skip(reason)
    return found


def _checkable_copy(tmp_path: Path, *, extra: str = "") -> Path:
    """verify fails on a missing executable, and the gateway is not installed on the test host."""
    text = re.sub(
        r"^ExecStart=.*$",
        f"ExecStart={Path(sys.executable).resolve()} -c pass{extra}",
        UNIT.read_text(),
        count=1,
        flags=re.MULTILINE,
    )
    path = tmp_path / "lockgate.service"
    path.write_text(text)
    return path


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_systemd_analyze(), "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _with_drop_in(unit_path: Path, text: str) -> None:
    """``verify`` and ``security`` read drop-ins from ``<unit file>.d/`` beside the file."""
    directory = unit_path.parent / f"{unit_path.name}.d"
    directory.mkdir()
    (directory / "broker.conf").write_text(text)


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    result = _verify(_checkable_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_analyze_verify_is_silent_with_the_broker_drop_in(tmp_path: Path) -> None:
    path = _checkable_copy(tmp_path)
    _with_drop_in(path, BROKER_DROP_IN.read_text())
    result = _verify(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_reads_the_drop_in(tmp_path: Path) -> None:
    """Proves the test above can fail: a bad address in the drop-in is reported."""
    path = _checkable_copy(tmp_path)
    _with_drop_in(path, BROKER_DROP_IN.read_text().replace("192.0.2.10", "192.0.2.300"))
    output = _verify(path)
    assert "192.0.2.300" in output.stdout + output.stderr


def test_verify_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    """Proves the silence test can fail: systemd only warns, and exits 0, on an unknown key."""
    path = _checkable_copy(tmp_path)
    path.write_text(path.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    result = _verify(path)
    assert "ProtectHom" in result.stdout + result.stderr


def _exposure(path: Path) -> tuple[float, str]:
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    if match is None:
        reason = f"systemd-analyze security --offline=true is unsupported here: {result.stderr}"
        print(reason)
        pytest.skip(reason)
    return float(match.group(1)), result.stdout


def test_security_exposure_is_low(tmp_path: Path) -> None:
    exposure, report = _exposure(_checkable_copy(tmp_path))
    assert exposure <= MAX_EXPOSURE, report
    assert "allow list with only localhost entries" in report, report


def test_security_exposure_is_low_with_the_broker_drop_in(tmp_path: Path) -> None:
    path = _checkable_copy(tmp_path)
    _with_drop_in(path, BROKER_DROP_IN.read_text())
    exposure, report = _exposure(path)
    assert exposure <= MAX_EXPOSURE, report
    assert "non-localhost entries" in report, "the drop-in was not read"
