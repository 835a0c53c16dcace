"""The external contract (docs/api.md, docs/configuration.md, docs/native-protocol.md), pinned.

Every name a user, a script or another program relies on is asserted here exactly as the
contract spells it: the console script and its subcommands, the dependencies, every key of the
example configuration, the topics, the reply envelope, every error type, every endpoint's reply
key, the key sets of the public objects, the error and warning codes, the event types with their
fields, and the native lock protocol. The behaviour is real: the gateway, mosquitto and the lock
simulator (or, for the native protocol, a lock written here from the contract alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tomllib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import aiomqtt
import pytest
from packaging.requirements import Requirement

import drivers
import gateway
from drivers.native.protocol import ERRORS as NATIVE_ERRORS
from gateway.api.errors import ErrorType
from gateway.api.router import MAX_REQUEST_BYTES
from gateway.cli import build_parser, main, parse_params
from gateway.config import load_config, parse_duration
from gateway.model import PROBLEMS, EventType, Json
from tests.broker import Broker
from tests.conftest import ConfigFactory, codes_on_lock
from tests.harness import (
    Recorder,
    Site,
    api_client,
    at,
    barrier,
    create,
    device,
    get_code,
    is_event,
    ok,
    payload_json,
    running_site,
    window,
)
from tests.helpers import Probe

ROOT = Path(__file__).resolve().parent.parent
EPOCH = "2000-01-01T00:00:00Z"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")

# -- the contract, written out ------------------------------------------------------------------

SUBCOMMANDS = {"run", "check-config", "sim", "demo", "call", "events"}
DEFAULT_CONFIG_FILE = "/etc/lockgate/lockgate.yaml"
RUNTIME_DEPS = {"aiomqtt", "aiosqlite", "structlog", "pyyaml"}

ERROR_TYPES = {
    "invalid_input",
    "unknown_endpoint",
    "payload_too_large",
    "device_not_found",
    "device_not_managed",
    "access_code_not_found",
    "duplicate_access_code",
    "code_constraints_violated",
    "backup_pool_not_supported",
    "backup_pool_cannot_be_disabled",
    "access_code_not_time_bound",
    "no_backup_access_code_available",
    "internal_error",
}

ACCESS_CODE_KEYS = {
    "access_code_id",
    "device_id",
    "name",
    "code",
    "type",
    "starts_at",
    "ends_at",
    "status",
    "created_at",
    "errors",
    "warnings",
    "is_managed",
    "is_backup",
    "is_backup_access_code_available",
    "pulled_backup_access_code_id",
    "is_external_modification_allowed",
    "slot",
}
ERROR_ITEM_KEYS = {"error_code", "message", "created_at"}
WARNING_ITEM_KEYS = {"warning_code", "message", "created_at"}
DEVICE_KEYS = {
    "device_id",
    "name",
    "driver",
    "is_managed",
    "created_at",
    "errors",
    "warnings",
    "properties",
}
PROPERTY_KEYS = {
    "online",
    "supports_backup_access_code_pool",
    "backup_access_code_pool_enabled",
    "backup_pool_size",
    "backup_codes_available",
    "active_backup_codes",
    "max_active_codes_supported",
    "supported_code_lengths",
    "code_constraints",
}

#: Section 7: code -> (on, kind).
PROBLEM_TABLE = {
    "failed_to_set_on_device": ("access_code", "error"),
    "failed_to_remove_from_device": ("access_code", "error"),
    "duplicate_code_on_device": ("access_code", "error"),
    "no_space_for_access_code_on_device": ("access_code", "error"),
    "conflicting_external_modification": ("access_code", "error"),
    "external_modification_in_effect": ("access_code", "warning"),
    "delay_in_setting_on_device": ("access_code", "warning"),
    "delay_in_removing_from_device": ("access_code", "warning"),
    "using_backup_access_code": ("access_code", "warning"),
    "device_disconnected": ("device", "error"),
    "empty_backup_access_code_pool": ("device", "error"),
    "partial_backup_access_code_pool": ("device", "warning"),
    "many_active_backup_codes": ("device", "warning"),
    # Beyond section 7 (issue 7): a lock's report refused as out of bounds.
    "invalid_report_from_device": ("device", "error"),
    # Beyond section 7 (issue 8): a lock whose topics never appeared where configured.
    "device_not_found_on_stack": ("device", "error"),
}

EVENT_TYPES = {
    "access_code.created",
    "access_code.changed",
    "access_code.set_on_device",
    "access_code.removed_from_device",
    "access_code.failed_to_set_on_device",
    "access_code.delay_in_setting_on_device",
    "access_code.failed_to_remove_from_device",
    "access_code.delay_in_removing_from_device",
    "access_code.deleted",
    "access_code.modified_external_to_gateway",
    "access_code.backup_access_code_pulled",
    "device.connected",
    "device.disconnected",
    "device.converted_to_unmanaged",
    "device.converted_to_managed",
    "device.error_added",
    "device.error_cleared",
    "device.warning_added",
    "device.warning_cleared",
}
EVENT_BASE_KEYS = {"event_id", "event_type", "occurred_at", "device_id"}
#: Section 8: the fields an event of that type carries beyond the base keys.
EVENT_EXTRA_FIELDS = {
    "access_code.set_on_device": {"code"},
    "access_code.failed_to_set_on_device": {"errors"},
    "access_code.backup_access_code_pulled": {"backup_access_code_id"},
    "device.error_added": {"error_code"},
    "device.error_cleared": {"error_code"},
    "device.warning_added": {"warning_code"},
    "device.warning_cleared": {"warning_code"},
}

#: Section 2's example key for key and value for value (three comments shortened to fit a line);
#: only the broker address and the database path are adapted, by ``example_file``.
CONTRACT_EXAMPLE_YAML = """\
hub_id: hub-1                  # [A-Za-z0-9_-]{1,64}; default: the host name, sanitised
mqtt:
  host: 127.0.0.1
  port: 1883
  username: null
  password_file: null          # read once at start; never log it
  tls: {ca_file: null, cert_file: null, key_file: null}   # any set => TLS
  topic_prefix: lockgate       # topics live under {topic_prefix}/{hub_id}
  keepalive: 30
database: /var/lib/lockgate/lockgate.db     # SQLite file; created 0600
timing:
  command_timeout: 10s         # per device command
  max_attempts: 3              # per programming try, then failed_to_*_on_device
  delay_warning_after: 60s     # delay_in_setting_on_device / delay_in_removing_from_device
  program_ahead: 0s            # how long before starts_at a time_bound code is programmed
  min_command_interval: 0s     # spacing between commands to one lock
  resync_interval: 15m         # full read-back of every lock
backup_pool:
  size: 3                      # backup codes kept on each pool-enabled device (1-100)
  many_active_threshold: 2     # pulled, still-active backups on one device
  fill_grace: 30s              # how long a fill may take before partial/empty is raised
devices:
  - device_id: front_door      # [A-Za-z0-9_-]{1,64}
    name: Front door
    driver: native             # native | zigbee2mqtt | zwave_js_ui
    # driver-specific addressing, e.g.
    #   native:       topic: locks/front_door
    #   zigbee2mqtt:  friendly_name: front_door, base_topic: zigbee2mqtt
    #   zwave_js_ui:  node_id: 5, node_name: null, base_topic: zwave, gateway_name: zwave-js-ui,
    #                 topic_style: valueid   # valueid | named (Z-Wave JS UI's two gateway types)
    slots: 30                  # slot count; needed where the lock cannot report it (zigbee2mqtt)
    code_lengths: [4, 8]       # optional: shortest and longest PIN the lock accepts
    backup_pool: {enabled: false, size: 3}   # optional per-device override
"""


def example_file(broker: Broker, tmp_path: Path, extra: str = "") -> Path:
    text = CONTRACT_EXAMPLE_YAML.replace("port: 1883", f"port: {broker.port}")
    text = text.replace("host: 127.0.0.1", f"host: {broker.host}")
    text = text.replace("/var/lib/lockgate/lockgate.db", str(tmp_path / "lockgate.db"))
    path = tmp_path / "lockgate.yaml"
    path.write_text(text + extra)
    return path


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and UUID.fullmatch(value) is not None


def is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


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


# -- section 3: topics --------------------------------------------------------------------------


async def first_message(queue: asyncio.Queue[aiomqtt.Message], timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        return await queue.get()


async def test_status_topic_retained_online_then_offline(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        message = await first_message(await site.api.subscribe(f"{config.prefix}/status"))
        assert message.retain
        assert payload_json(message) == {"state": "online", "version": gateway.__version__}
    async with api_client(config) as api:
        message = await first_message(await api.subscribe(f"{config.prefix}/status"))
        assert message.retain
        assert payload_json(message) == {"state": "offline", "version": gateway.__version__}


async def test_device_topic_is_retained_and_is_the_device_object(
    make_config: ConfigFactory,
) -> None:
    config = make_config()
    async with running_site(config) as site:
        queue = await site.api.subscribe(f"{config.prefix}/devices/front_door")
        message = await first_message(queue)
        assert message.retain
        assert payload_json(message) == await device(site)
        # Republished on a change.
        await site.api.call("devices/update", device_id="front_door", is_managed=False)
        changed = await first_message(queue)
        assert payload_json(changed) == await device(site)
        assert payload_json(changed)["is_managed"] is False


async def test_event_topics_are_qos1_and_not_retained(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        queue = await site.api.subscribe(f"{config.prefix}/events/#")
        made = await create(site, device_id="front_door", code="4821")
        await barrier(site)
        seen: list[aiomqtt.Message] = []
        while not queue.empty():
            seen.append(queue.get_nowait())
        types = []
        for message in seen:
            body = payload_json(message)
            assert message.topic.value == f"{config.prefix}/events/{body['event_type']}"
            assert message.qos == 1
            assert not message.retain
            types.append(body["event_type"])
        assert types[:2] == ["access_code.created", "access_code.set_on_device"]
        assert all(payload_json(m)["access_code_id"] == made["access_code_id"] for m in seen)
        # Nothing is left behind for a late subscriber.
        late = await site.api.subscribe(f"{config.prefix}/events/+")
        with pytest.raises(TimeoutError):
            await first_message(late, timeout=0.3)


# -- section 4: the envelope and every error type -----------------------------------------------


def test_error_type_names_are_the_contracts() -> None:
    assert set(get_args(ErrorType)) == ERROR_TYPES


async def test_every_error_type_is_produced_in_the_failure_envelope(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=[
            {"device_id": "front_door", "driver": "native", "slots": 10},
            {"device_id": "back_door", "driver": "native"},
            {"device_id": "tiny", "driver": "native", "slots": 1},
            {"device_id": "side_door", "driver": "native"},
        ]
    )
    produced: set[str] = set()

    def check(reply: Json, request_id: object, error_type: str, named: str) -> None:
        assert set(reply) == {"ok", "request_id", "error"}, reply
        assert reply["ok"] is False
        assert reply["request_id"] == request_id
        assert set(reply["error"]) == {"type", "message"}, reply
        assert reply["error"]["type"] == error_type, reply
        message = reply["error"]["message"]
        assert isinstance(message, str)
        assert named in message, reply
        produced.add(error_type)

    async with running_site(config) as site:

        async def refused(endpoint: str, error_type: str, named: str, **params: Any) -> None:
            request_id = f"req-{error_type}"
            reply = await site.api.call(endpoint, request_id=request_id, **params)
            check(reply, request_id, error_type, named)

        await refused("devices/get", "invalid_input", "device_id", device_id=5)
        await refused("devices/frobnicate", "unknown_endpoint", "devices/frobnicate")
        body = {"request_id": "big", "device_id": "front_door", "name": "x" * MAX_REQUEST_BYTES}
        reply = await site.api.call_raw("devices/update", json.dumps(body).encode())
        check(reply, "big", "payload_too_large", str(64 * 1024))
        await refused("devices/get", "device_not_found", "device_id", device_id="nope")
        ok(await site.api.call("devices/update", device_id="back_door", is_managed=False))
        await refused(
            "access_codes/create", "device_not_managed", "device_id", device_id="back_door"
        )
        await refused(
            "access_codes/get",
            "access_code_not_found",
            "access_code_id",
            access_code_id=str(uuid.uuid4()),
        )
        await create(site, device_id="front_door", code="1357")
        await refused(
            "access_codes/create",
            "duplicate_access_code",
            "code",
            device_id="front_door",
            code="1357",
        )
        await refused(
            "access_codes/create",
            "code_constraints_violated",
            "code",
            device_id="front_door",
            code="12",
        )
        await refused(
            "devices/update",
            "backup_pool_not_supported",
            "backup_access_code_pool_enabled",
            device_id="tiny",
            backup_access_code_pool_enabled=True,
        )
        ok(
            await site.api.call(
                "devices/update", device_id="front_door", backup_access_code_pool_enabled=True
            )
        )
        await refused(
            "devices/update",
            "backup_pool_cannot_be_disabled",
            "backup_access_code_pool_enabled",
            device_id="front_door",
            backup_access_code_pool_enabled=False,
        )
        ongoing = await create(site, device_id="front_door", code="2468")
        await refused(
            "access_codes/pull_backup_access_code",
            "access_code_not_time_bound",
            "access_code_id",
            access_code_id=ongoing["access_code_id"],
        )
        stay = await create(site, device_id="side_door", code="3579", **window(site, 0, 3600))
        await refused(
            "access_codes/pull_backup_access_code",
            "no_backup_access_code_available",
            "access_code_id",
            access_code_id=stay["access_code_id"],
        )
    assert produced == ERROR_TYPES - {"internal_error"}


# -- section 5: endpoints and their reply keys --------------------------------------------------


def answered(reply: Json, key: str | None, request_id: str) -> Any:
    """The success envelope exactly: ok, request_id, and the one resource key (or none)."""
    assert reply.get("ok") is True, reply
    assert reply["request_id"] == request_id
    assert set(reply) == {"ok", "request_id"} | ({key} if key else set()), reply
    return reply[key] if key else None


async def test_every_endpoint_answers_with_its_reply_key(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[{"device_id": "front_door", "driver": "native", "slots": 10}],
        backup_pool={"size": 2},
        simulator={"latency": "1ms", **codes_on_lock({"10": "5550"})},
    )
    async with running_site(config) as site:

        async def call(endpoint: str, key: str | None, **params: Any) -> Any:
            request_id = f"req-{endpoint}"
            return answered(
                await site.api.call(endpoint, request_id=request_id, **params), key, request_id
            )

        devices = await call("devices/list", "devices")
        assert [d["device_id"] for d in devices] == ["front_door"]
        assert (await call("devices/get", "device", device_id="front_door"))["name"]
        updated = await call("devices/update", "device", device_id="front_door", is_managed=True)
        assert updated["is_managed"] is True

        made = await call(
            "access_codes/create",
            "access_code",
            device_id="front_door",
            name="Guest",
            use_backup_access_code_pool=True,
            allow_external_modification=False,
            **window(site, 0, 3600),
        )
        cid = made["access_code_id"]
        assert made["type"] == "time_bound"
        assert made["is_external_modification_allowed"] is False
        assert re.fullmatch(r"\d{4,8}", made["code"])
        sized = await call(
            "access_codes/create",
            "access_code",
            device_id="front_door",
            preferred_code_length=6,
        )
        assert re.fullmatch(r"\d{6}", sized["code"])
        assert sized["type"] == "ongoing"
        await site.settled()
        got = await call("access_codes/get", "access_code", access_code_id=cid)
        assert got["status"] == "set"
        by_pin = await call(
            "access_codes/get", "access_code", device_id="front_door", code=made["code"]
        )
        assert by_pin["access_code_id"] == cid

        listed = await call("access_codes/list", "access_codes", device_id="front_door")
        assert {c["access_code_id"] for c in listed} == {cid, sized["access_code_id"]}
        with_pool = await call(
            "access_codes/list",
            "access_codes",
            device_id="front_door",
            include_backup_pool=True,
        )
        backups = [c for c in with_pool if c["is_backup"]]
        assert len(backups) == 2
        for backup in backups:
            assert backup["type"] == "ongoing"
            assert re.fullmatch(r"Backup [0-9a-f]{4}", backup["name"])
        by_ids = await call("access_codes/list", "access_codes", access_code_ids=[cid])
        assert [c["access_code_id"] for c in by_ids] == [cid]

        renamed = await call("access_codes/update", "access_code", access_code_id=cid, name="G2")
        assert renamed["name"] == "G2"
        endless = await call(
            "access_codes/update",
            "access_code",
            access_code_id=sized["access_code_id"],
            **window(site, 0, 7200),
        )
        assert endless["type"] == "time_bound"
        dropped = await call(
            "access_codes/update",
            "access_code",
            access_code_id=sized["access_code_id"],
            type="ongoing",
        )
        assert (dropped["type"], dropped["starts_at"], dropped["ends_at"]) == (
            "ongoing",
            None,
            None,
        )

        request_id = "req-pull"
        reply = await site.api.call(
            "access_codes/pull_backup_access_code", request_id=request_id, access_code_id=cid
        )
        assert reply.get("ok") is True, reply
        assert set(reply) == {"ok", "request_id", "access_code", "backup_access_code"}
        original, backup = reply["access_code"], reply["backup_access_code"]
        assert original["access_code_id"] == cid
        assert original["pulled_backup_access_code_id"] == backup["access_code_id"]
        assert backup["is_backup"] is True
        assert backup["type"] == "time_bound"
        assert backup["ends_at"] == original["ends_at"]
        again = await site.api.call("access_codes/pull_backup_access_code", access_code_id=cid)
        assert again["backup_access_code"]["access_code_id"] == backup["access_code_id"]

        generated = await call(
            "access_codes/generate_code", "generated_code", device_id="front_door"
        )
        assert set(generated) == {"device_id", "code"}
        assert generated["device_id"] == "front_door"
        assert re.fullmatch(r"\d{4,8}", generated["code"])

        unmanaged = await call(
            "access_codes/unmanaged/list", "access_codes", device_id="front_door"
        )
        assert [(c["code"], c["slot"], c["is_managed"]) for c in unmanaged] == [("5550", 10, False)]

        events = await call("events/list", "events", since=EPOCH)
        assert events
        after = await call("events/list", "events", after_event_id=events[0]["event_id"], limit=1)
        assert [e["event_id"] for e in after] == [events[1]["event_id"]]

        assert await call("access_codes/delete", None, access_code_id=cid) is None
        await site.settled()
        gone = await site.api.call("access_codes/get", access_code_id=cid)
        assert gone["error"]["type"] == "access_code_not_found"


async def test_unmanaged_codes_are_access_code_objects(make_config: ConfigFactory) -> None:
    config = make_config(simulator={"latency": "1ms", **codes_on_lock({"3": "5550"})})
    async with running_site(config) as site:
        reply = ok(await site.api.call("access_codes/unmanaged/list", device_id="front_door"))
        (found,) = reply["access_codes"]
        assert (found["code"], found["slot"], found["is_managed"]) == ("5550", 3, False)
        assert set(found) == ACCESS_CODE_KEYS, ACCESS_CODE_KEYS - set(found)


# -- section 6: the objects ----------------------------------------------------------------------


def assert_access_code_shape(code: Json) -> None:
    assert set(code) == ACCESS_CODE_KEYS, set(code) ^ ACCESS_CODE_KEYS
    assert is_uuid(code["access_code_id"])
    assert code["type"] in ("ongoing", "time_bound")
    assert code["status"] in ("unset", "setting", "set", "removing")
    assert is_timestamp(code["created_at"])
    for key in ("starts_at", "ends_at"):
        assert code[key] is None or is_timestamp(code[key])
    assert (code["starts_at"] is None) == (code["type"] == "ongoing")
    assert code["is_managed"] is True
    for key in ("is_backup", "is_backup_access_code_available", "is_external_modification_allowed"):
        assert isinstance(code[key], bool), key
    assert code["pulled_backup_access_code_id"] is None or is_uuid(
        code["pulled_backup_access_code_id"]
    )
    assert code["slot"] is None or (isinstance(code["slot"], int) and code["slot"] >= 1)
    assert_problem_items(code)


def assert_problem_items(obj: Json) -> None:
    for item in obj["errors"]:
        assert set(item) == ERROR_ITEM_KEYS, item
        assert is_timestamp(item["created_at"])
        assert PROBLEM_TABLE[item["error_code"]][1] == "error"
    for item in obj["warnings"]:
        assert set(item) == WARNING_ITEM_KEYS, item
        assert is_timestamp(item["created_at"])
        assert PROBLEM_TABLE[item["warning_code"]][1] == "warning"


def assert_device_shape(found: Json) -> None:
    assert set(found) == DEVICE_KEYS, set(found) ^ DEVICE_KEYS
    assert set(found["properties"]) == PROPERTY_KEYS, set(found["properties"]) ^ PROPERTY_KEYS
    assert is_timestamp(found["created_at"])
    assert isinstance(found["is_managed"], bool)
    props = found["properties"]
    for key in ("online", "supports_backup_access_code_pool", "backup_access_code_pool_enabled"):
        assert isinstance(props[key], bool), key
    for key in ("backup_pool_size", "backup_codes_available", "active_backup_codes"):
        assert isinstance(props[key], int), key
    assert isinstance(props["supported_code_lengths"], list)
    assert isinstance(props["code_constraints"], list)
    assert_problem_items(found)


async def test_objects_have_exactly_the_contracts_keys(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "front_door",
                "driver": "native",
                "slots": 10,
                "backup_pool": {"enabled": True, "size": 2},
            }
        ],
        backup_pool={"many_active_threshold": 1},
    )
    async with running_site(config) as site:
        lock = site.lock("front_door")
        stay = await create(site, device_id="front_door", code="4821", **window(site, 0, 3600))
        await site.settled()
        assert_access_code_shape(stay)
        pulled = ok(
            await site.api.call(
                "access_codes/pull_backup_access_code", access_code_id=stay["access_code_id"]
            )
        )
        original = pulled["access_code"]
        assert_access_code_shape(original)
        assert_access_code_shape(pulled["backup_access_code"])
        assert [w["warning_code"] for w in original["warnings"]] == ["using_backup_access_code"]
        await site.settled()  # the pool's health is judged by the lock's worker
        front = await device(site)
        assert_device_shape(front)
        assert [w["warning_code"] for w in front["warnings"]] == ["many_active_backup_codes"]
        props = front["properties"]
        assert props["max_active_codes_supported"] == 10
        assert props["backup_pool_size"] == 2
        assert props["active_backup_codes"] == 1
        assert props["supports_backup_access_code_pool"] is True
        assert props["backup_access_code_pool_enabled"] is True

        await lock.control({"online": False})
        offline_code = await create(site, device_id="front_door", code="9753")
        await site.settled()
        front = await device(site)
        assert_device_shape(front)
        assert front["properties"]["online"] is False
        assert [e["error_code"] for e in front["errors"]] == ["device_disconnected"]
        waiting = await get_code(site, offline_code["access_code_id"])
        assert_access_code_shape(waiting)
        assert waiting["status"] == "setting"
        assert {e["error_code"] for e in waiting["errors"]} == {
            "device_disconnected",
            "failed_to_set_on_device",
        }
        listed = ok(
            await site.api.call(
                "access_codes/list", device_id="front_door", include_backup_pool=True
            )
        )["access_codes"]
        for code in listed:
            assert_access_code_shape(code)
        for found in ok(await site.api.call("devices/list"))["devices"]:
            assert_device_shape(found)


# -- section 7: error and warning codes ---------------------------------------------------------


def test_problem_codes_are_the_contracts() -> None:
    table = {code: (spec.on, spec.kind.value) for code, spec in PROBLEMS.items()}
    assert table == PROBLEM_TABLE


# -- section 8: events --------------------------------------------------------------------------


def test_event_types_are_the_contracts() -> None:
    assert {t.value for t in EventType} == EVENT_TYPES
    assert len(EventType) == len(EVENT_TYPES)


@dataclass
class Published:
    topic: str
    qos: int
    retain: bool
    body: Json


class EventTap:
    """Every event published on ``P/events/#``, with its topic, QoS and retain flag."""

    def __init__(self, queue: asyncio.Queue[aiomqtt.Message]) -> None:
        self._queue = queue
        self.seen: list[Published] = []

    def _take(self, message: aiomqtt.Message) -> None:
        self.seen.append(
            Published(message.topic.value, message.qos, message.retain, payload_json(message))
        )

    def pull(self) -> list[Published]:
        while not self._queue.empty():
            self._take(self._queue.get_nowait())
        return self.seen

    async def wait(self, predicate: Callable[[Json], bool], timeout: float = 5.0) -> Json:
        """The first event so far (or to come) that satisfies ``predicate``."""
        async with asyncio.timeout(timeout):
            while True:
                for item in self.pull():
                    if predicate(item.body):
                        return item.body
                self._take(await self._queue.get())


@asynccontextmanager
async def story_site(make_config: ConfigFactory) -> AsyncIterator[tuple[Site, EventTap]]:
    config = make_config(
        devices=[
            {
                "device_id": "front_door",
                "driver": "native",
                "slots": 10,
                "backup_pool": {"enabled": True, "size": 2},
            }
        ],
        backup_pool={"many_active_threshold": 1},
        timing={"command_timeout": "2s", "delay_warning_after": "10s", "max_attempts": 1},
    )
    async with running_site(config) as site:
        tap = EventTap(await site.api.subscribe(f"{config.prefix}/events/#"))
        yield site, tap


async def test_every_event_type_with_its_fields(make_config: ConfigFactory) -> None:
    """One story that produces all nineteen event types, each checked for its fields."""
    async with story_site(make_config) as (site, tap):
        lock = site.lock("front_door")
        # The lock drops off; a code created now cannot go on, and is late.
        await lock.control({"online": False})
        await tap.wait(is_event("device.disconnected"))
        await tap.wait(is_event("device.error_added", error_code="device_disconnected"))
        stay = await create(site, device_id="front_door", code="4821", **window(site, -60, 3600))
        cid = stay["access_code_id"]
        await tap.wait(is_event("access_code.failed_to_set_on_device", access_code_id=cid))
        await site.advance(10)
        await tap.wait(is_event("access_code.delay_in_setting_on_device", access_code_id=cid))
        # Back online: the code goes on.
        await lock.control({"online": True})
        await tap.wait(is_event("device.connected"))
        await tap.wait(is_event("device.error_cleared", error_code="device_disconnected"))
        await site.settled()
        await tap.wait(is_event("access_code.set_on_device", access_code_id=cid))
        ok(await site.api.call("access_codes/update", access_code_id=cid, name="Renamed"))
        await tap.wait(is_event("access_code.changed", access_code_id=cid))
        # A backup is pulled for it: one active backup reaches the threshold of 1.
        pulled = ok(await site.api.call("access_codes/pull_backup_access_code", access_code_id=cid))
        backup_id = pulled["backup_access_code"]["access_code_id"]
        await tap.wait(
            is_event(
                "access_code.backup_access_code_pulled",
                access_code_id=cid,
                backup_access_code_id=backup_id,
            )
        )
        await tap.wait(is_event("device.warning_added", warning_code="many_active_backup_codes"))
        # Someone types over the code's slot at the keypad; the gateway restores it.
        slot = (await get_code(site, cid))["slot"]
        await lock.control({"keypad": {"slot": slot, "code": "9090"}})
        await tap.wait(is_event("access_code.modified_external_to_gateway", access_code_id=cid))
        await site.settled()
        assert lock.slots[slot] == "4821"
        # Deleted while the lock refuses: the removal fails, then is late, then happens.
        await lock.control({"fail_next": 2})
        ok(await site.api.call("access_codes/delete", access_code_id=cid))
        await site.settled()
        await tap.wait(is_event("access_code.failed_to_remove_from_device"))
        await lock.control({"online": False})
        await site.advance(10)
        await tap.wait(is_event("access_code.delay_in_removing_from_device"))
        await lock.control({"online": True})
        await site.advance(30)
        await tap.wait(is_event("access_code.removed_from_device", access_code_id=cid))
        await tap.wait(is_event("access_code.deleted", access_code_id=cid))
        await tap.wait(is_event("device.warning_cleared", warning_code="many_active_backup_codes"))
        # Management off and on again.
        ok(await site.api.call("devices/update", device_id="front_door", is_managed=False))
        ok(await site.api.call("devices/update", device_id="front_door", is_managed=True))
        await tap.wait(is_event("device.converted_to_unmanaged"))
        await tap.wait(is_event("device.converted_to_managed"))
        await barrier(site)

        published = tap.pull()
        assert {p.body["event_type"] for p in published} == EVENT_TYPES
        stored = {
            e["event_id"]: e
            for e in ok(await site.api.call("events/list", since=EPOCH, limit=1000))["events"]
        }
        pins = {cid: "4821"}
        for item in published:
            event = item.body
            kind = event["event_type"]
            assert item.topic == f"{site.config.prefix}/events/{kind}"
            assert (item.qos, item.retain) == (1, False)
            assert stored[event["event_id"]] == event  # stored before it was published
            expected = EVENT_BASE_KEYS | EVENT_EXTRA_FIELDS.get(kind, set())
            if kind.startswith("access_code."):
                expected |= {"access_code_id"}
                assert is_uuid(event["access_code_id"])
            assert set(event) == expected, (kind, set(event) ^ expected)
            assert is_uuid(event["event_id"])
            assert is_timestamp(event["occurred_at"])
            assert event["device_id"] == "front_door"
            if kind == "access_code.set_on_device" and event["access_code_id"] in pins:
                assert event["code"] == pins[event["access_code_id"]]
            if kind == "access_code.failed_to_set_on_device":
                # The code's errors as its object shows them: its own, and its device's.
                codes = [e["error_code"] for e in event["errors"]]
                assert "failed_to_set_on_device" in codes
                assert set(codes) <= {"failed_to_set_on_device", "device_disconnected"}
            if kind.startswith("device.error_"):
                assert PROBLEM_TABLE[event["error_code"]] == ("device", "error")
            if kind.startswith("device.warning_"):
                assert PROBLEM_TABLE[event["warning_code"]] == ("device", "warning")
        assert len({p.body["event_id"] for p in published}) == len(published)


async def test_failed_to_set_event_carries_the_codes_errors(make_config: ConfigFactory) -> None:
    config = make_config(timing={"max_attempts": 1, "delay_warning_after": "1h"})
    async with running_site(config) as site:
        events = await Recorder.events(site)
        await site.lock("front_door").control({"fail_next": 1})
        made = await create(site, device_id="front_door", code="4821")
        cid = made["access_code_id"]
        (event,) = await events.wait(
            is_event("access_code.failed_to_set_on_device", access_code_id=cid)
        )
        code = await get_code(site, cid)
        for item in event["errors"]:
            assert set(item) == ERROR_ITEM_KEYS, item
        failed = [e for e in code["errors"] if e["error_code"] == "failed_to_set_on_device"]
        assert [e for e in event["errors"] if e["error_code"] == "failed_to_set_on_device"] == (
            failed
        )


# -- section 10: the native lock protocol -------------------------------------------------------


async def test_simulated_lock_topics_and_gateway_commands(make_config: ConfigFactory) -> None:
    config = make_config(timing={"resync_interval": "15m"})
    async with running_site(config) as site:
        availability = await first_message(
            await site.api.subscribe("locks/front_door/availability")
        )
        assert availability.retain
        assert payload_json(availability) == {"state": "online"}
        slots = await first_message(await site.api.subscribe("locks/front_door/slots"))
        assert slots.retain
        table = payload_json(slots)
        assert set(table) == {"capacity", "code_lengths", "slots"}
        assert table["capacity"] == 30
        assert table["code_lengths"] == [4, 8]
        assert set(table["slots"]) == {str(n) for n in range(1, 31)}

        commands = await Recorder.commands(site)
        results = await Recorder.of(site, "locks/front_door/result")
        made = await create(site, device_id="front_door", code="4821")
        await barrier(site)
        (command,) = commands.pull()
        assert set(command) == {"id", "op", "slot", "code"}
        assert (command["op"], command["code"]) == ("set", "4821")
        assert is_uuid(command["id"])
        assert command["slot"] == (await get_code(site, made["access_code_id"]))["slot"]
        assert results.pull() == [{"id": command["id"], "ok": True}]

        await site.advance(900)  # resync_interval: a read of the whole table
        await barrier(site)
        (read,) = commands.pull()[1:]
        assert set(read) == {"id", "op"}
        assert read["op"] == "read"

        ok(await site.api.call("access_codes/delete", access_code_id=made["access_code_id"]))
        await barrier(site)
        (clear,) = commands.pull()[2:]
        assert set(clear) == {"id", "op", "slot"}
        assert (clear["op"], clear["slot"]) == ("clear", command["slot"])
        # Commands and results are not retained: a newcomer finds none.
        late = await site.api.subscribe("locks/+/command")
        late_results = await site.api.subscribe("locks/+/result")
        with pytest.raises(TimeoutError):
            await first_message(late, timeout=0.2)
        assert late_results.empty()


def test_native_error_words() -> None:
    assert set(NATIVE_ERRORS) == {
        "slot_out_of_range",
        "invalid_code",
        "duplicate_code",
        "busy",
        "internal",
    }


async def until(probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5.0) -> None:
    """Ask ``probe`` again until it answers ``expected`` (for changes no event announces)."""
    async with asyncio.timeout(timeout):
        while await probe() != expected:
            await asyncio.sleep(0.01)


class HandLock:
    """A lock written from section 10 alone, on a plain MQTT client, with extra fields in every
    payload (the gateway must ignore what it does not know)."""

    def __init__(self, probe: Probe, base: str, capacity: int = 4) -> None:
        self.probe = probe
        self.base = base
        self.capacity = capacity
        self.slots: dict[str, str | None] = {str(n): None for n in range(1, capacity + 1)}
        self.commands: list[Json] = []

    async def announce(self, online: bool = True) -> None:
        state = {"state": "online" if online else "offline", "battery": 87}
        await self.probe.publish(f"{self.base}/availability", state, retain=True)
        if online:
            await self.publish_table()

    async def publish_table(self) -> None:
        table = {
            "capacity": self.capacity,
            "code_lengths": [4, 6],
            "slots": self.slots,
            "firmware": "1.2.3",
        }
        await self.probe.publish(f"{self.base}/slots", table, retain=True)

    async def serve(self) -> None:
        while True:
            command = await self.probe.next(f"{self.base}/command", timeout=3600)
            self.commands.append(command)
            if command["op"] == "set":
                self.slots[str(command["slot"])] = command["code"]
            elif command["op"] == "clear":
                self.slots[str(command["slot"])] = None
            await self.publish_table()
            answer = {"id": command["id"], "ok": True, "slots": self.slots, "took_ms": 3}
            await self.probe.publish(f"{self.base}/result", answer)


async def test_a_lock_written_from_the_contract(make_config: ConfigFactory, probe: Probe) -> None:
    config = make_config(
        devices=[{"device_id": "hand", "name": "Hand", "driver": "native", "topic": "it/hand"}]
    )
    hand = HandLock(probe, "it/hand")
    await probe.subscribe("it/hand/command")
    await hand.announce()
    server = asyncio.create_task(hand.serve())
    try:
        async with running_site(config, simulate=False) as site:
            assert hand.commands, "the gateway reads the table at start"
            for read in hand.commands:
                assert set(read) == {"id", "op"}
                assert read["op"] == "read"
                assert is_uuid(read["id"])
            found = await device(site, "hand")
            assert found["properties"]["online"] is True
            assert found["properties"]["max_active_codes_supported"] == 4
            assert found["properties"]["supported_code_lengths"] == [4, 5, 6]
            assert found["errors"] == []

            made = await create(site, device_id="hand", code="48213")
            await site.settled()
            command = hand.commands[-1]
            assert set(command) == {"id", "op", "slot", "code"}
            assert (command["op"], command["code"]) == ("set", "48213")
            got = await get_code(site, made["access_code_id"])
            assert (got["status"], got["slot"], got["errors"]) == ("set", command["slot"], [])
            assert hand.slots[str(command["slot"])] == "48213"

            # Typed in at the keypad: the lock republishes its table on its own.
            free = next(k for k, v in hand.slots.items() if v is None)
            hand.slots[free] = "7777"
            await hand.publish_table()

            async def unmanaged() -> list[tuple[int, str]]:
                reply = ok(await site.api.call("access_codes/unmanaged/list", device_id="hand"))
                return [(c["slot"], c["code"]) for c in reply["access_codes"]]

            await until(unmanaged, [(int(free), "7777")])

            ok(await site.api.call("access_codes/delete", access_code_id=made["access_code_id"]))
            await site.settled()
            clear = hand.commands[-1]
            assert set(clear) == {"id", "op", "slot"}
            assert (clear["op"], clear["slot"]) == ("clear", command["slot"])
            assert hand.slots[str(command["slot"])] is None

            events = await Recorder.events(site)
            await hand.announce(online=False)
            await events.wait(is_event("device.disconnected", device_id="hand"))
            await site.settled()
            found = await device(site, "hand")
            assert found["properties"]["online"] is False
            assert [e["error_code"] for e in found["errors"]] == ["device_disconnected"]
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


# -- bits of the contract checked once more, end to end ----------------------------------------


async def test_pull_with_idempotency_key_answers_the_first_reply(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "front_door",
                "driver": "native",
                "slots": 10,
                "backup_pool": {"enabled": True, "size": 2},
            }
        ]
    )
    async with running_site(config) as site:
        stay = await create(site, device_id="front_door", code="4821", **window(site, 0, 3600))
        await site.settled()
        params = {"access_code_id": stay["access_code_id"], "idempotency_key": "pull-1"}
        first = ok(await site.api.call("access_codes/pull_backup_access_code", **params))
        again = ok(await site.api.call("access_codes/pull_backup_access_code", **params))
        assert again["backup_access_code"] == first["backup_access_code"]
        pulled = ok(
            await site.api.call(
                "events/list",
                since=at(site, -3600),
                event_types=["access_code.backup_access_code_pulled"],
            )
        )["events"]
        assert len(pulled) == 1
