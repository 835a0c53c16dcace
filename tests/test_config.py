"""The config file contract: what loads, and the one line per problem a bad file gets."""

from __future__ import annotations

import pickle
import re
import socket
import textwrap
from pathlib import Path

import pytest

from drivers.native.config import NativeOptions
from drivers.sim_settings import simulator_settings, with_generated_devices
from drivers.zigbee2mqtt.config import Zigbee2MqttOptions
from drivers.zwave_js_ui.config import ZwaveJsUiOptions
from gateway.config import (
    DEFAULT_DATABASE,
    Config,
    ConfigError,
    load_config,
    parse_config,
    parse_duration,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "lockgate.yaml"
SECRET = "s3cret-Pa55"
UNKNOWN_DRIVER = "unknown driver 'zigbe2mqtt' (expected native, zigbee2mqtt, zwave_js_ui)"
KEY_PATH_LINE = re.compile(r"^[A-Za-z_][\w.\[\]-]*: \S")  # "key.path[0].x: what is wrong"


def write(directory: Path, text: str, name: str = "lockgate.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(directory: Path, text: str) -> Config:
    """As ``check-config`` reads a file: the simulator's section is checked too."""
    config = load_config(write(directory, text))
    simulator_settings(config)
    return config


def problems_of(directory: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(directory, text)
    return caught.value.problems


# --------------------------------------------------------------------------------------------
# Files that load


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    assert [d.device_id for d in config.devices] == ["front_door", "back_door", "garage"]
    assert all(d.driver == "native" for d in config.devices)
    assert [d.backup_pool.enabled for d in config.devices] == [True, False, False]
    assert config.prefix == "lockgate/hub-1"
    assert config.source == EXAMPLE
    assert config.timing.resync_interval == 900.0
    assert simulator_settings(config).locks["back_door"].initial_codes == {1: "4821"}


def test_example_commented_devices_are_valid_when_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    head, rest = text.split("\ndevices:\n", 1)
    devices, tail = rest.split("\nsimulator:\n", 1)
    devices = re.sub(r"(?m)^  # (- |  )", r"  \1", devices)
    config = load(tmp_path, f"{head}\ndevices:\n{devices}\nsimulator:\n{tail}")
    by_driver = {d.driver: d for d in config.devices}
    assert by_driver["zigbee2mqtt"].options == Zigbee2MqttOptions("patio_lock", "zigbee2mqtt")
    assert by_driver["zwave_js_ui"].options == ZwaveJsUiOptions(node_id=5)


def test_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "hub_id: hub-1\n")
    assert config.mqtt.host == "127.0.0.1"
    assert config.mqtt.port == 1883
    assert config.mqtt.topic_prefix == "lockgate"
    assert config.mqtt.keepalive == 30
    assert not config.mqtt.tls.enabled
    assert config.database == DEFAULT_DATABASE
    assert config.timing.command_timeout == 10.0
    assert config.timing.max_attempts == 3
    assert config.backup_pool.size == 3
    assert config.backup_pool.fill_grace == 30.0
    assert config.devices == ()
    assert simulator_settings(config).control_topic == "lockgate-sim"
    assert simulator_settings(config).default_code_lengths == (4, 8)
    assert config.log_level == "info"


def test_null_means_the_default(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        mqtt: {port: null, tls: null}
        timing:
        simulator:
        devices:
        """,
    )
    assert config.mqtt.port == 1883
    assert config.timing.command_timeout == 10.0
    assert config.devices == ()


def test_every_driver_and_its_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        log_level: WARNING
        devices:
          - {device_id: a, driver: native, code_lengths: 6}
          - {device_id: b, driver: zigbee2mqtt, slots: 50}
          - {device_id: c, driver: zwave_js_ui, node_id: 7, topic_style: named, slots: 2,
             backup_pool: {enabled: true, size: 1}}
          # the same friendly name / node under another base topic is another lock
          - {device_id: d, driver: zigbee2mqtt, slots: 50, friendly_name: b, base_topic: z2}
          - {device_id: e, driver: zwave_js_ui, node_id: 7, base_topic: zwave2}
        """,
    )
    a, b, c, _, e = config.devices
    assert (a.name, a.options, a.code_lengths) == ("a", NativeOptions("locks/a"), (6, 6))
    assert b.options == Zigbee2MqttOptions(friendly_name="b", base_topic="zigbee2mqtt")
    assert c.options == ZwaveJsUiOptions(node_id=7, topic_style="named")
    assert (c.backup_pool.enabled, c.backup_pool.size) == (True, 1)
    assert e.options == ZwaveJsUiOptions(node_id=7, base_topic="zwave2")
    assert config.log_level == "warning"


def test_generated_devices_are_the_simulators_own(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        devices: [{device_id: front_door, driver: native}]
        simulator:
          generate: {count: 3}
          locks: {sim_lock_0002: {latency: 1s}}
        """,
    )
    assert [d.device_id for d in config.devices] == ["front_door"]  # what `lockgate run` sees
    assert simulator_settings(config).locks["sim_lock_0002"].latency == 1.0
    in_process = with_generated_devices(config)  # a site's gateway beside its simulator
    generated = in_process.devices[1:]
    assert [d.device_id for d in generated] == ["sim_lock_0000", "sim_lock_0001", "sim_lock_0002"]
    assert generated[2].options == NativeOptions("locks/sim_lock_0002")
    assert simulator_settings(in_process).generate is None


def test_simulator_lock_settings(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        devices:
          - {device_id: z, driver: zigbee2mqtt, slots: 10}
        simulator:
          latency: 5ms
          locks:
            z: {initial_codes: {1: "0123", "10": "9999"}, expose_pin: false,
                reject_duplicates: false}
        """,
    )
    lock = simulator_settings(config).locks["z"]
    assert simulator_settings(config).latency == 0.005
    assert dict(lock.initial_codes) == {1: "0123", 10: "9999"}
    assert (lock.expose_pin, lock.reject_duplicates, lock.latency) == (False, False, None)


def test_hub_id_defaults_to_the_sanitised_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "door hub.example.com")
    assert load(tmp_path, "mqtt: {}\n").hub_id == "door-hub-example-com"
    monkeypatch.setattr(socket, "gethostname", lambda: "x" * 100)
    assert load(tmp_path, "mqtt: {}\n").hub_id == "x" * 64
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert load(tmp_path, "mqtt: {}\n").hub_id == "hub"


def test_relative_paths_resolve_against_the_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "certs").mkdir(parents=True)
    for name in ("ca.pem", "client.pem", "client.key"):
        (conf_dir / "certs" / name).write_text("x")
    (conf_dir / "secret").write_text(SECRET + "\n")
    path = write(
        conf_dir,
        """
        database: data/lockgate.db
        mqtt:
          username: gw
          password_file: secret
          tls: {ca_file: certs/ca.pem, cert_file: certs/client.pem, key_file: certs/client.key}
        """,
    )
    monkeypatch.chdir(tmp_path)  # somewhere else: the file's directory must win
    config = load_config("etc/lockgate.yaml")
    assert config.database == conf_dir / "data" / "lockgate.db"
    assert config.mqtt.password_file == conf_dir / "secret"
    assert config.mqtt.tls.ca_file == conf_dir / "certs" / "ca.pem"
    assert config.mqtt.tls.key_file == conf_dir / "certs" / "client.key"
    assert config.mqtt.tls.enabled
    assert config.source == path
    assert config.mqtt.password == SECRET


def test_parse_config_takes_paths_from_base_dir(tmp_path: Path) -> None:
    config = parse_config({"hub_id": "h", "database": "x.db"}, base_dir=tmp_path)
    assert config.database == tmp_path / "x.db"
    assert config.source is None
    assert parse_config({"database": ":memory:"}, base_dir=tmp_path).database == Path(":memory:")


# --------------------------------------------------------------------------------------------
# The password


def test_password_is_read_once_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\r\n")
    config = load(tmp_path, "mqtt: {username: gw, password_file: pw}\n")
    assert config.mqtt.password == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config.mqtt)


def test_password_never_appears_in_problems(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET)
    problems = problems_of(tmp_path, "mqtt: {username: gw, password_file: pw, port: 0}\n")
    assert problems == ["mqtt.port: must be an integer 1-65535"]
    # Not UTF-8: the decoder's own message would quote a byte of the file.
    (tmp_path / "pw").write_bytes(SECRET.encode() + b"\xff")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "mqtt: {username: gw, password_file: pw}\n")
    assert caught.value.problems == [
        f"mqtt.password_file: cannot read {tmp_path / 'pw'}: not UTF-8 text"
    ]
    assert SECRET not in str(caught.value)
    assert "\\xff" not in str(caught.value)


def test_password_in_the_file_itself_is_refused(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, f"mqtt: {{username: gw, password: {SECRET}}}\n")
    assert problems == [
        "mqtt.password: unknown key (put the password in a file: mqtt.password_file)"
    ]


# --------------------------------------------------------------------------------------------
# Bad files: one line per problem, naming the key path

BAD_FILES = [
    ("unknown top key", "colour: red", "colour: unknown key"),
    ("misspelt key", "timing: {comand_timeout: 5s}", "timing.comand_timeout: unknown key"),
    ("port is bool", "mqtt: {port: true}", "mqtt.port: must be an integer 1-65535"),
    ("port range", "mqtt: {port: 70000}", "mqtt.port: must be an integer 1-65535"),
    ("port string", "mqtt: {port: '1883'}", "mqtt.port: must be an integer 1-65535"),
    ("keepalive", "mqtt: {keepalive: 0}", "mqtt.keepalive: must be an integer 1-65535"),
    ("mqtt not map", "mqtt: localhost", "mqtt: must be a mapping, not a string"),
    ("host type", "mqtt: {host: 5}", "mqtt.host: must be a string"),
    ("prefix wild", "mqtt: {topic_prefix: 'a/#'}", "mqtt.topic_prefix: must not contain the MQTT"),
    ("prefix slash", "mqtt: {topic_prefix: /gw}", "mqtt.topic_prefix: must not start or end"),
    ("tls missing", "mqtt: {tls: {ca_file: ca.pem}}", "mqtt.tls.ca_file: file not found: "),
    ("password no user", "mqtt: {password_file: pw}", "mqtt.password_file: needs mqtt.username"),
    (
        "password file",
        "mqtt: {username: u, password_file: nope}",
        "mqtt.password_file: cannot read ",
    ),
    ("hub id", "hub_id: door hub", "hub_id: must be 1-64 characters"),
    ("hub id long", f"hub_id: {'h' * 65}", "hub_id: must be 1-64 characters"),
    (
        "timeout zero",
        "timing: {command_timeout: 0}",
        "timing.command_timeout: must be longer than 0",
    ),
    (
        "timeout bad",
        "timing: {command_timeout: 10x}",
        "timing.command_timeout: invalid duration '10x'",
    ),
    ("negative", "timing: {resync_interval: -5}", "timing.resync_interval: must not be negative"),
    ("attempts", "timing: {max_attempts: 101}", "timing.max_attempts: must be an integer 1-100"),
    ("pool size", "backup_pool: {size: 0}", "backup_pool.size: must be an integer 1-100"),
    (
        "pool threshold",
        "backup_pool: {many_active_threshold: 0}",
        "backup_pool.many_active_threshold: must be an integer >= 1",
    ),
    ("log level", "log_level: loud", "log_level: must be one of debug, info, warning, error"),
    ("devices map", "devices: {front_door: {}}", "devices: must be a list of devices, not "),
    ("device scalar", "devices: [front_door]", "devices[0]: must be a mapping"),
    (
        "unknown driver",
        "devices: [{device_id: a, driver: zigbe2mqtt}]",
        f"devices[0].driver: {UNKNOWN_DRIVER}",
    ),
    ("no driver", "devices: [{device_id: a}]", "devices[0].driver: required"),
    ("no device id", "devices: [{driver: native}]", "devices[0].device_id: required"),
    (
        "bad device id",
        "devices: [{device_id: a/b, driver: native}]",
        "devices[0].device_id: must be 1-64",
    ),
    (
        "duplicate id",
        """
        devices:
          - {device_id: front_door, driver: native}
          - {device_id: back_door, driver: native}
          - {device_id: front_door, driver: native, topic: locks/other}
        """,
        "devices[2].device_id: duplicate device id 'front_door' (also devices[0])",
    ),
    (
        "driver key",
        "devices: [{device_id: a, driver: native, colour: red}]",
        "devices[0].colour: unknown key",
    ),
    (
        "z2m slots",
        "devices: [{device_id: a, driver: zigbee2mqtt}]",
        "devices[0].slots: required for driver zigbee2mqtt",
    ),
    (
        "z2m name",
        "devices: [{device_id: a, driver: zigbee2mqtt, slots: 5, friendly_name: bridge/x}]",
        "devices[0].friendly_name: must not start with 'bridge'",
    ),
    (
        "zwave node",
        "devices: [{device_id: a, driver: zwave_js_ui}]",
        "devices[0].node_id: required for driver zwave_js_ui",
    ),
    (
        "zwave range",
        "devices: [{device_id: a, driver: zwave_js_ui, node_id: 233}]",
        "devices[0].node_id: must be an integer 1-232",
    ),
    (
        "zwave style",
        "devices: [{device_id: a, driver: zwave_js_ui, node_id: 2, topic_style: json}]",
        "devices[0].topic_style: must be one of valueid, named",
    ),
    (
        "zwave twin",
        """
        devices:
          - {device_id: a, driver: zwave_js_ui, node_id: 5}
          - {device_id: b, driver: zwave_js_ui, node_id: 5, gateway_name: other}
        """,
        "devices[1].node_id: duplicate Z-Wave node 5 under base topic 'zwave' (also devices[0])",
    ),
    (
        "topic twin",
        """
        devices:
          - {device_id: a, driver: native, topic: locks/x}
          - {device_id: b, driver: native, topic: locks/x}
        """,
        "devices[1].topic: duplicate topic 'locks/x' (also devices[0])",
    ),
    (
        "z2m twin",
        """
        devices:
          - {device_id: a, driver: zigbee2mqtt, slots: 5, friendly_name: lock}
          - {device_id: b, driver: zigbee2mqtt, slots: 5, friendly_name: lock}
        """,
        "devices[1].friendly_name: duplicate topic 'zigbee2mqtt/lock' (also devices[0])",
    ),
    (
        "topic wild",
        "devices: [{device_id: a, driver: native, topic: locks/+}]",
        "devices[0].topic: must not contain the MQTT wildcards",
    ),
    (
        "topic nul",
        'devices: [{device_id: a, driver: native, topic: "a\\0b"}]',
        "devices[0].topic: must not contain a NUL",
    ),
    (
        "topic in prefix",
        "devices: [{device_id: a, driver: native, topic: lockgate/hub-1/a}]",
        "devices[0].topic: must not be under the gateway's topics lockgate/hub-1/",
    ),
    (
        "slots zero",
        "devices: [{device_id: a, driver: native, slots: 0}]",
        "devices[0].slots: must be an integer 1-1000",
    ),
    (
        "lengths order",
        "devices: [{device_id: a, driver: native, code_lengths: [8, 4]}]",
        "devices[0].code_lengths: must be [shortest, longest]",
    ),
    (
        "lengths range",
        "devices: [{device_id: a, driver: native, code_lengths: [0, 4]}]",
        "devices[0].code_lengths: must be [shortest, longest]",
    ),
    (
        "lengths bool",
        "devices: [{device_id: a, driver: native, code_lengths: true}]",
        "devices[0].code_lengths: must be [shortest, longest]",
    ),
    (
        "device pool",
        "devices: [{device_id: a, driver: native, backup_pool: {size: 101}}]",
        "devices[0].backup_pool.size: must be an integer 1-100",
    ),
    (
        "pool flag",
        "devices: [{device_id: a, driver: native, backup_pool: {enabled: 'yes'}}]",
        "devices[0].backup_pool.enabled: must be true or false",
    ),
    (
        "pool one slot",
        "devices: [{device_id: a, driver: native, slots: 1, backup_pool: {enabled: true}}]",
        "devices[0].backup_pool: needs a device with at least 2 slots (this one has 1)",
    ),
    (
        "sim ghost",
        "simulator: {locks: {ghost: {}}}",
        "simulator.locks.ghost: no device 'ghost' is configured",
    ),
    (
        "sim count",
        "simulator: {generate: {count: 0}}",
        "simulator.generate.count: must be an integer 1-10000",
    ),
    (
        "sim driver",
        "simulator: {generate: {count: 1, driver: zigbee2mqtt}}",
        "simulator.generate.driver: must be native",
    ),
    (
        "sim clash",
        "devices: [{device_id: lock0001, driver: native}]\n"
        "simulator: {generate: {count: 2, prefix: lock}}",
        "simulator.generate.prefix: duplicate device id 'lock0001' (also devices[0])",
    ),
    (
        "sim pin",
        "devices: [{device_id: a, driver: native}]\n"
        "simulator: {locks: {a: {initial_codes: {1: 0123}}}}",
        "simulator.locks.a.initial_codes.1: must be a quoted string of 1-16 digits",
    ),
    (
        "sim slot",
        "devices: [{device_id: a, driver: native, slots: 4}]\n"
        "simulator: {locks: {a: {initial_codes: {5: '1234'}}}}",
        "simulator.locks.a.initial_codes.5: must be a slot number 1-4",
    ),
    (
        "sim expose",
        "devices: [{device_id: a, driver: native}]\nsimulator: {locks: {a: {expose_pin: false}}}",
        "simulator.locks.a.expose_pin: applies to drivers zigbee2mqtt and zwave_js_ui only",
    ),
    ("sim latency", "simulator: {latency: fast}", "simulator.latency: invalid duration 'fast'"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)
def test_bad_file_names_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    text = textwrap.dedent(text)
    header = "" if text.startswith("hub_id:") else "hub_id: hub-1\n"
    problems = problems_of(tmp_path, header + text)
    assert any(line.startswith(expected) for line in problems), problems
    assert all(KEY_PATH_LINE.match(line) for line in problems), problems
    assert all("\n" not in line for line in problems)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            """
            hub_id: hub-1
            mqtt: {port: 0}
            timing: {comand_timeout: 5s, max_attempts: 0}
            devices:
              - {device_id: a, driver: zigbe2mqtt}
              - {device_id: a, driver: native, colour: red}
            log_level: loud
            """,
        )
    error = caught.value
    assert error.problems == [
        "mqtt.port: must be an integer 1-65535",
        "timing.max_attempts: must be an integer 1-100",
        "timing.comand_timeout: unknown key",
        f"devices[0].driver: {UNKNOWN_DRIVER}",
        "devices[1].colour: unknown key",
        "devices[1].device_id: duplicate device id 'a' (also devices[0])",
        "log_level: must be one of debug, info, warning, error",
    ]
    assert str(error) == "\n".join(error.problems)


def test_config_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ConfigError(["a: x", "b: y"])))
    assert error.problems == ["a: x", "b: y"]
    assert str(error) == "a: x\nb: y"


# --------------------------------------------------------------------------------------------
# Files that cannot be read at all


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    [line] = caught.value.problems
    assert line.startswith(f"{tmp_path / 'nope.yaml'}: cannot read: ")


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "hub_id: hub-1\nmqtt: {port: 1883\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [line] = caught.value.problems
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: invalid YAML: ", line), line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "the top level must be a mapping, not a list"),
        ("just text\n", "the top level must be a mapping, not a string"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].startswith(f"{path}: {expected}")


def test_parse_config_refuses_a_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level: must be a mapping, not a list"):
        parse_config([], base_dir=tmp_path)


def test_duplicate_yaml_keys_are_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "hub_id: a\ntiming: {max_attempts: 0}\ntiming: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}:3: duplicate key 'timing' (the later one would silently win)"
    ]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        devices:
          - &lock {device_id: a, driver: native, slots: 10}
          - {<<: *lock, device_id: b}
        """,
    )
    assert [(d.device_id, d.slots) for d in config.devices] == [("a", 10), ("b", 10)]


# --------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("100ms", 0.1),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("0s", 0.0),
        (" 15 m ", 900.0),
        ("30", 30.0),
        (30, 30.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["10x", "", "s", "-5s", "1h30m", "ten", -1, -0.5, True, None, [10], float("inf"), 10**400],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration|negative|finite"):
        parse_duration(value)
