"""The configuration file: YAML in, frozen dataclasses out, every mistake reported at once.

A bad file is refused with one line per problem naming its key path
(``devices[1].driver: unknown driver 'zigbe2mqtt' (expected ...)``), so an operator fixes all of
them in one edit instead of one restart per typo. Unknown keys are problems too: a misspelt key
would otherwise be ignored and its default silently used.

One rule for every key: missing or ``null`` means the default.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import yaml

from drivers.base import DriverOptions, DriverSpec
from drivers.registry import SPECS
from gateway.domain import MAX_SLOTS
from gateway.rules.rate import Rate
from gateway.schema import (
    Invalid,
    Section,
    as_code_lengths,
    as_duration,
    as_flag,
    as_integer,
    as_topic,
    parse_duration,
)
from gateway.schema import as_string as _string
from gateway.schema import describe as _describe

__all__ = [
    "DEFAULT_DATABASE",
    "DRIVERS",
    "LOG_LEVELS",
    "BackupPoolSettings",
    "Claims",
    "Config",
    "ConfigError",
    "DeviceConfig",
    "DevicePoolSettings",
    "DriverOptions",
    "HomeAssistantSettings",
    "Invalid",
    "MqttSettings",
    "Section",
    "Timing",
    "TlsSettings",
    "as_code_lengths",
    "as_duration",
    "as_flag",
    "as_integer",
    "as_topic",
    "default_hub_id",
    "load_config",
    "parse_config",
    "parse_duration",
]

DEFAULT_DATABASE: Final = Path("/var/lib/lockgate/lockgate.db")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
_MEMORY_DATABASE: Final = ":memory:"  # SQLite's name for a throw-away database; not a path
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID_RULE = "must be 1-64 characters, each a letter, digit, _ or -"


class ConfigError(Exception):
    """The configuration was refused: ``problems`` has one ``key.path: what is wrong`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str]]]:
        # Exception pickles its args (the joined text); rebuild from the list instead.
        return (type(self), (self.problems,))


# --------------------------------------------------------------------------------------------
# The settings


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """The broker connection. ``password`` comes from ``password_file`` and is kept out of repr."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    tls: TlsSettings = field(default_factory=TlsSettings)
    topic_prefix: str = "lockgate"
    keepalive: int = 30


@dataclass(frozen=True, slots=True)
class Timing:
    """All in seconds."""

    command_timeout: float = 10.0
    max_attempts: int = 3
    delay_warning_after: float = 60.0
    program_ahead: float = 0.0
    min_command_interval: float = 0.0
    resync_interval: float = 900.0


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """How long stored events are kept (``events/list``, timelines): older ones, and the oldest
    beyond ``max_events``, are deleted (already published ones only)."""

    retention: float = 90 * 86400.0  # seconds
    max_events: int = 1_000_000


@dataclass(frozen=True, slots=True)
class BackupPoolSettings:
    size: int = 3
    many_active_threshold: int = 2
    fill_grace: float = 30.0


@dataclass(frozen=True, slots=True)
class PinLookupLimits:
    """How fast PINs may be tested against a lock (``access_codes/get`` by PIN, and refusals
    that say a PIN is taken): one bucket per device and one per client."""

    per_device: Rate = field(default_factory=lambda: Rate(burst=20, per_minute=10))
    per_client: Rate = field(default_factory=lambda: Rate(burst=10, per_minute=5))


@dataclass(frozen=True, slots=True)
class HomeAssistantSettings:
    """MQTT discovery for Home Assistant (docs/homeassistant.md): off unless asked for."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True, slots=True)
class DevicePoolSettings:
    enabled: bool = False
    size: int | None = None  # None: the global backup_pool.size


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    device_id: str
    name: str
    driver: str
    options: DriverOptions
    slots: int | None = None  # None: the lock reports its capacity
    code_lengths: tuple[int, int] | None = None  # None: the lock reports them
    backup_pool: DevicePoolSettings = field(default_factory=DevicePoolSettings)


def _nothing() -> Mapping[object, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Config:
    hub_id: str
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    database: Path = DEFAULT_DATABASE
    timing: Timing = field(default_factory=Timing)
    backup_pool: BackupPoolSettings = field(default_factory=BackupPoolSettings)
    pin_lookups: PinLookupLimits = field(default_factory=PinLookupLimits)
    history: HistorySettings = field(default_factory=HistorySettings)
    homeassistant: HomeAssistantSettings = field(default_factory=HomeAssistantSettings)
    devices: tuple[DeviceConfig, ...] = ()
    #: The ``simulator:`` section as written: the simulator's own settings, which it parses
    #: itself (``drivers/sim_settings.py``); the daemon only checks that it is a mapping.
    simulator: Mapping[object, object] = field(default_factory=_nothing)
    log_level: str = "info"
    source: Path | None = None  # the file it was loaded from

    @property
    def prefix(self) -> str:
        """The root of every topic this gateway owns."""
        return f"{self.mqtt.topic_prefix}/{self.hub_id}"


#: Driver name -> its spec (option schema, ``needs_slots``), from ``drivers.registry.SPECS``.
DRIVERS: Final[Mapping[str, DriverSpec]] = MappingProxyType({spec.name: spec for spec in SPECS})
_DEVICE_KEYS: Final = frozenset(
    {"device_id", "name", "driver", "slots", "code_lengths", "backup_pool"}
)


def _identifier(value: object) -> str:
    text = _string(value)
    if not _ID.fullmatch(text):
        raise Invalid(_ID_RULE)
    return text


def _log_level(value: object) -> str:
    if not isinstance(value, str) or value.strip().lower() not in LOG_LEVELS:
        raise Invalid(f"must be one of {', '.join(LOG_LEVELS)}")
    return value.strip().lower()


def _path(base_dir: Path) -> Callable[[object], Path]:
    def convert(value: object) -> Path:
        text = _string(value)
        return Path(text) if text == _MEMORY_DATABASE else base_dir / text

    return convert


def _existing_file(base_dir: Path) -> Callable[[object], Path]:
    def convert(value: object) -> Path:
        path = _path(base_dir)(value)
        if not path.is_file():
            raise Invalid(f"file not found: {path}")
        return path

    return convert


def _read_secret(path: Path) -> str:
    """The file's text without its trailing newline; errors never quote the content."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        # Its message would quote a byte of the secret.
        raise Invalid(f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None


# --------------------------------------------------------------------------------------------
# Sections


def _parse_mqtt(section: Section, base_dir: Path) -> MqttSettings:
    username = section.get("username", _string, None)
    password_file = section.get("password_file", _path(base_dir), None)
    password = None
    if password_file is not None:
        try:
            password = _read_secret(password_file)
        except Invalid as exc:
            section.report("password_file", str(exc))
        if username is None and not section.given("username"):
            section.report("password_file", "needs mqtt.username (MQTT sends no password alone)")
    if section.raw("password") is not None:
        section.report("password", "unknown key (put the password in a file: mqtt.password_file)")
    settings = MqttSettings(
        host=section.get("host", _string, "127.0.0.1"),
        port=section.get("port", as_integer(1, 65535), 1883),
        username=username,
        password=password,
        password_file=password_file,
        tls=_parse_tls(section.section("tls"), base_dir),
        topic_prefix=section.get("topic_prefix", as_topic, "lockgate"),
        keepalive=section.get("keepalive", as_integer(1, 65535), 30),
    )
    section.finish()
    return settings


def _parse_tls(section: Section, base_dir: Path) -> TlsSettings:
    exists = _existing_file(base_dir)
    settings = TlsSettings(
        ca_file=section.get("ca_file", exists, None),
        cert_file=section.get("cert_file", exists, None),
        key_file=section.get("key_file", exists, None),
    )
    if section.given("cert_file") and not section.given("key_file"):
        section.report("key_file", "required when cert_file is set")
    if section.given("key_file") and not section.given("cert_file"):
        section.report("cert_file", "required when key_file is set")
    section.finish()
    return settings


def _parse_timing(section: Section) -> Timing:
    since = as_duration()
    timing = Timing(
        command_timeout=section.get("command_timeout", as_duration(positive=True), 10.0),
        max_attempts=section.get("max_attempts", as_integer(1, 100), 3),
        delay_warning_after=section.get("delay_warning_after", since, 60.0),
        program_ahead=section.get("program_ahead", since, 0.0),
        min_command_interval=section.get("min_command_interval", since, 0.0),
        resync_interval=section.get("resync_interval", since, 900.0),
    )
    section.finish()
    return timing


def _parse_backup_pool(section: Section) -> BackupPoolSettings:
    pool = BackupPoolSettings(
        size=section.get("size", as_integer(1, 100), 3),
        many_active_threshold=section.get("many_active_threshold", as_integer(1), 2),
        fill_grace=section.get("fill_grace", as_duration(), 30.0),
    )
    section.finish()
    return pool


def _parse_history(section: Section) -> HistorySettings:
    history = HistorySettings(
        retention=section.get("retention", as_duration(positive=True), 90 * 86400.0),
        max_events=section.get("max_events", as_integer(1000, 1_000_000_000), 1_000_000),
    )
    section.finish()
    return history


def _parse_pin_lookups(section: Section) -> PinLookupLimits:
    defaults = PinLookupLimits()
    limits = PinLookupLimits(
        per_device=_parse_rate(section.section("per_device"), defaults.per_device),
        per_client=_parse_rate(section.section("per_client"), defaults.per_client),
    )
    section.finish()
    return limits


def _parse_homeassistant(section: Section) -> HomeAssistantSettings:
    settings = HomeAssistantSettings(
        enabled=section.get("enabled", as_flag, False),
        discovery_prefix=section.get("discovery_prefix", as_topic, "homeassistant"),
    )
    section.finish()
    return settings


def _parse_rate(section: Section, default: Rate) -> Rate:
    rate = Rate(
        burst=section.get("burst", as_integer(1, 100_000), default.burst),
        per_minute=section.get("per_minute", as_integer(1, 1_000_000), default.per_minute),
    )
    section.finish()
    return rate


def _parse_devices(raw: object, claims: Claims, problems: list[str]) -> list[DeviceConfig]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"devices: must be a list of devices, not {_describe(raw)}")
        return []
    devices: list[DeviceConfig] = []
    for index, item in enumerate(raw):
        path = f"devices[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{path}: must be a mapping with device_id, driver, ...")
            continue
        device = _parse_device(Section(item, path, problems))
        device_id = item.get("device_id")
        if isinstance(device_id, str) and _ID.fullmatch(device_id):
            # Also for a device refused for another reason: its twin is still a problem.
            claims.device_id(device_id, path, f"{path}.device_id")
        if device is not None:
            claims.addresses(device, path)
            devices.append(device)
    return devices


def _driver_name(value: object) -> str:
    if not isinstance(value, str) or value not in DRIVERS:
        raise Invalid(f"unknown driver {value!r} (expected {', '.join(DRIVERS)})")
    return value


def _parse_device(section: Section) -> DeviceConfig | None:
    device_id = section.get("device_id", _identifier, None)
    if not section.given("device_id"):
        section.report("device_id", "required")
    name = section.get("name", _string, device_id)
    driver = section.get("driver", _driver_name, None)
    if not section.given("driver"):
        section.report("driver", f"required (one of {', '.join(DRIVERS)})")
    slots = section.get("slots", as_integer(1, MAX_SLOTS), None)
    code_lengths = section.get("code_lengths", as_code_lengths, None)
    pool = _parse_device_pool(section.section("backup_pool"), slots)
    options = section.rest_named()  # every other key is the driver's
    if driver is None:
        return None
    schema = DRIVERS[driver]
    if schema.needs_slots and not section.given("slots"):
        section.report("slots", f"required for driver {driver}")
    parsed = schema.parse_options(options, section.path, device_id or "", section.problems)
    if device_id is None:
        return None
    return DeviceConfig(
        device_id=device_id,
        name=name or device_id,
        driver=driver,
        options=parsed,
        slots=slots,
        code_lengths=code_lengths,
        backup_pool=pool,
    )


def _parse_device_pool(section: Section, slots: int | None) -> DevicePoolSettings:
    pool = DevicePoolSettings(
        enabled=section.get("enabled", as_flag, False),
        size=section.get("size", as_integer(1, 100), None),
    )
    section.finish()
    if slots is not None and slots < 2 and (pool.enabled or pool.size is not None):
        section.report(None, f"needs a device with at least 2 slots (this one has {slots})")
    return pool


# --------------------------------------------------------------------------------------------
# Cross-checks between devices


class Claims:
    """Device ids and MQTT addresses only one device may have: first come, first served.

    The second claimant is reported naming the first, so the operator sees both places. Two
    devices on one address would fight over one lock.
    """

    def __init__(self, prefix: str, problems: list[str]) -> None:
        self._owners: dict[str, str] = {}
        self._prefix = prefix
        self._problems = problems

    def _claim(self, thing: str, owner: str, where: str) -> None:
        first = self._owners.setdefault(thing, owner)
        if first != owner:
            self._problems.append(f"{where}: duplicate {thing} (also {first})")

    def device_id(self, device_id: str, owner: str, where: str) -> None:
        self._claim(f"device id '{device_id}'", owner, where)

    def addresses(self, device: DeviceConfig, owner: str, only_key: str | None = None) -> None:
        """``only_key``: the one key to blame for every problem (for generated devices)."""
        for key, address in device.options.addresses():
            self._claim(address, owner, f"{owner}.{only_key or key}")
        # A lock under the gateway's own topics would be taken for API traffic.
        for key, topic in device.options.own_topics():
            if f"{topic}/".startswith(f"{self._prefix}/"):
                self._problems.append(
                    f"{owner}.{only_key or key}: must not be under the gateway's topics "
                    f"{self._prefix}/"
                )


# --------------------------------------------------------------------------------------------
# Entry points


def default_hub_id() -> str:
    """The host name made into a valid hub id, so a fleet of hubs needs no per-host setting."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "hub"


def parse_config(data: object, *, base_dir: Path) -> Config:
    """Check already-parsed YAML; relative paths in it are taken from ``base_dir``."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level: must be a mapping, not {_describe(data)}"])
    problems: list[str] = []
    top = Section(data, "", problems)
    hub_id = top.get("hub_id", _identifier, None) or default_hub_id()
    mqtt = _parse_mqtt(top.section("mqtt"), base_dir)
    database = top.get("database", _path(base_dir), DEFAULT_DATABASE)
    timing = _parse_timing(top.section("timing"))
    backup_pool = _parse_backup_pool(top.section("backup_pool"))
    pin_lookups = _parse_pin_lookups(top.section("pin_lookups"))
    history = _parse_history(top.section("history"))
    homeassistant = _parse_homeassistant(top.section("homeassistant"))
    claims = Claims(f"{mqtt.topic_prefix}/{hub_id}", problems)
    devices = _parse_devices(top.raw("devices"), claims, problems)
    simulator = MappingProxyType(top.section("simulator").rest())
    log_level = top.get("log_level", _log_level, "info")
    top.finish()
    if problems:
        raise ConfigError(problems)
    return Config(
        hub_id=hub_id,
        mqtt=mqtt,
        database=database,
        timing=timing,
        backup_pool=backup_pool,
        pin_lookups=pin_lookups,
        history=history,
        homeassistant=homeassistant,
        devices=tuple(devices),
        simulator=simulator,
        log_level=log_level,
    )


#: libyaml's parser where PyYAML was built with it: a 10,000-lock file is read in a tenth of the
#: time (1.6 s of a 16 s start with the pure-Python one). The constructor is Python either way.
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):
    """Notes duplicate keys, which PyYAML silently resolves by keeping the last one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, object]] = []  # (1-based line, key)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
            continue
        key = loader.construct_object(key_node)
        try:
            if key in seen:
                loader.duplicates.append((key_node.start_mark.line + 1, key))
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path, name: str) -> tuple[object, list[str]]:
    """The document and the duplicate-key problems found in it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{name}: cannot read: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror or type(exc).__name__}"]) from None
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    duplicates = [
        f"{name}:{line}: duplicate key {key!r} (the later one would silently win)"
        for line, key in loader.duplicates
    ]
    return data, duplicates


def load_config(path: str | Path) -> Config:
    """Read and check a config file; relative paths in it are taken from the file's directory."""
    name = str(path)
    source = Path(path).absolute()
    data, duplicates = _read_yaml(source, name)
    if data is None:
        raise ConfigError([f"{name}: the file is empty (expected hub_id, mqtt, devices, ...)"])
    if not isinstance(data, Mapping):
        raise ConfigError([f"{name}: the top level must be a mapping, not {_describe(data)}"])
    try:
        config = parse_config(data, base_dir=source.parent)
    except ConfigError as exc:
        raise ConfigError(duplicates + exc.problems) from None
    if duplicates:
        raise ConfigError(duplicates)
    return replace(config, source=source)
