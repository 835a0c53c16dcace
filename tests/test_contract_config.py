"""The external contract, sections 1 and 2 (docs/configuration.md): the console script and its
subcommands, the dependencies, the packages, and every key of the example configuration.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import drivers
import gateway
from gateway.cli import build_parser, main, parse_params
from gateway.config import load_config, parse_duration
from tests.broker import Broker
from tests.contract import (
    DEFAULT_CONFIG_FILE,
    ROOT,
    RUNTIME_DEPS,
    SUBCOMMANDS,
    VERSION,
    example_file,
)
from tests.harness import (
    ok,
    running_site,
)

# -- section 1: names and layout ----------------------------------------------------------------


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("lockgate has no subcommands")


def test_console_script_and_its_subcommands() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "lockgate"
    assert project["scripts"] == {"lockgate": "gateway.cli:main"}
    assert project["requires-python"] == ">=3.11"
    parser = build_parser()
    assert parser.prog == "lockgate"
    assert set(subcommand_parsers(parser)) == SUBCOMMANDS
    for name in SUBCOMMANDS:
        extra = ["devices/list"] if name == "call" else []
        assert build_parser().parse_args([name, *extra]).config == DEFAULT_CONFIG_FILE, name
        given = build_parser().parse_args([name, "-c", "/tmp/x.yaml", *extra])
        assert given.config == "/tmp/x.yaml", name
        assert given.command == name
    # The contract's own example line.
    args = build_parser().parse_args(["call", "-c", "FILE", "devices/get", "device_id=front_door"])
    assert (args.config, args.endpoint) == ("FILE", "devices/get")
    assert parse_params(args.params) == {"device_id": "front_door"}


def test_runtime_dependencies_are_exactly_the_contracts() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    assert set(requirements) == RUNTIME_DEPS
    aiomqtt_spec = requirements["aiomqtt"].specifier
    assert "2.5" in aiomqtt_spec
    assert "2.99" in aiomqtt_spec
    assert "2.4.9" not in aiomqtt_spec
    assert "3.0" not in aiomqtt_spec
    test_deps = {Requirement(r).name for r in project["optional-dependencies"]["test"]}
    assert {"pytest", "pytest-asyncio"} <= test_deps


def test_packages_and_folders() -> None:
    assert Path(gateway.__file__).parent == ROOT / "gateway"
    assert Path(drivers.__file__).parent == ROOT / "drivers"
    assert VERSION.fullmatch(gateway.__version__)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == gateway.__version__
    for folder in ("config", "tests", "systemd", "docs"):
        assert (ROOT / folder).is_dir(), folder


# -- section 2: configuration -------------------------------------------------------------------


def test_the_contract_example_is_accepted_key_by_key(broker: Broker, tmp_path: Path) -> None:
    config = load_config(example_file(broker, tmp_path))
    assert config.hub_id == "hub-1"
    assert config.prefix == "lockgate/hub-1"
    mqtt = config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.username, mqtt.password_file) == (
        broker.host,
        broker.port,
        None,
        None,
    )
    assert (mqtt.topic_prefix, mqtt.keepalive, mqtt.tls.enabled) == ("lockgate", 30, False)
    assert config.database == tmp_path / "lockgate.db"
    timing = config.timing
    assert (timing.command_timeout, timing.max_attempts, timing.delay_warning_after) == (10, 3, 60)
    assert (timing.program_ahead, timing.min_command_interval, timing.resync_interval) == (
        0,
        0,
        900,
    )
    pool = config.backup_pool
    assert (pool.size, pool.many_active_threshold, pool.fill_grace) == (3, 2, 30)
    (front,) = config.devices
    assert (front.device_id, front.name, front.driver) == ("front_door", "Front door", "native")
    assert (front.slots, front.code_lengths) == (30, (4, 8))
    assert (front.backup_pool.enabled, front.backup_pool.size) == (False, 3)


def test_driver_specific_addressing_keys(broker: Broker, tmp_path: Path) -> None:
    extra = """\
  - {device_id: side_door, driver: native, topic: locks/side}
  - {device_id: garage, driver: zigbee2mqtt, slots: 10,
     friendly_name: garage_lock, base_topic: zigbee2mqtt}
  - {device_id: shed, driver: zwave_js_ui, node_id: 5, node_name: null, base_topic: zwave,
     gateway_name: zwave-js-ui, topic_style: valueid}
  - {device_id: barn, driver: zwave_js_ui, node_id: 6, topic_style: named}
"""
    config = load_config(example_file(broker, tmp_path, extra))
    assert [d.driver for d in config.devices] == [
        "native",
        "native",
        "zigbee2mqtt",
        "zwave_js_ui",
        "zwave_js_ui",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), (7, 7.0), (2.5, 2.5)],
)
def test_durations(text: object, seconds: float, broker: Broker, tmp_path: Path) -> None:
    assert parse_duration(text) == seconds
    path = example_file(broker, tmp_path)  # the example, with one timing changed
    path.write_text(path.read_text().replace("command_timeout: 10s", f"command_timeout: {text}"))
    assert load_config(path).timing.command_timeout == seconds


def test_check_config_refuses_with_the_key_path_and_exit_2(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = example_file(broker, tmp_path)
    assert main(["check-config", "-c", str(good)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text() + "  - {device_id: back_door, driver: zigbe2mqtt}\n")
    with pytest.raises(SystemExit) as stopped:
        main(["check-config", "-c", str(bad)])
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert (
        "devices[1].driver: unknown driver 'zigbe2mqtt' (expected native, zigbee2mqtt, zwave_js_ui)"
        in lines
    )


async def test_the_contract_example_runs(broker: Broker, tmp_path: Path) -> None:
    config = load_config(example_file(broker, tmp_path))
    async with running_site(config) as site:
        (found,) = ok(await site.api.call("devices/list"))["devices"]
        assert (found["device_id"], found["name"], found["driver"]) == (
            "front_door",
            "Front door",
            "native",
        )
        props = found["properties"]
        assert props["online"] is True
        assert props["max_active_codes_supported"] == 30
        assert props["supported_code_lengths"] == [4, 5, 6, 7, 8]
        assert props["backup_pool_size"] == 3
        assert props["backup_access_code_pool_enabled"] is False
    assert (tmp_path / "lockgate.db").stat().st_mode & 0o777 == 0o600
