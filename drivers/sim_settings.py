"""The ``simulator:`` section of the YAML, read by the simulator itself.

The daemon keeps the section as an opaque mapping (``Config.simulator``) and never imports this
module: ``lockgate run`` ignores the section. ``lockgate check-config``, ``sim`` and ``demo`` check
it here, with the configuration's own rules, so a problem is one ``simulator.key.path: ...``
line like any other. It is checked against a configuration whose devices are already valid.

``generate`` makes native locks that only the simulator plays. A site run in one process (the
benchmarks) hands them to its gateway as well, through :func:`with_generated_devices`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from drivers.bounds import MAX_PIN_LENGTH, MAX_SLOTS
from drivers.native.config import NativeOptions
from gateway.config import Claims, Config, ConfigError, DeviceConfig
from gateway.schema import (
    Invalid,
    Section,
    as_code_lengths,
    as_duration,
    as_flag,
    as_integer,
    as_topic,
)

__all__ = [
    "GenerateSettings",
    "SimLockSettings",
    "SimulatorSettings",
    "generated_devices",
    "simulator_settings",
    "with_generated_devices",
]

_GENERATED_DIGITS: Final = 4  # generated ids are "<prefix><i:04d>", i from 0
_GENERATED_PREFIX: Final = re.compile(rf"[A-Za-z0-9_-]{{0,{64 - _GENERATED_DIGITS}}}")


def _no_codes() -> Mapping[int, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SimLockSettings:
    """How the simulator plays one lock, where it should differ from the simulator's defaults."""

    latency: float | None = None
    initial_codes: Mapping[int, str] = field(default_factory=_no_codes)  # slot (from 1) -> PIN
    reject_duplicates: bool = True
    expose_pin: bool = True  # zigbee2mqtt/zwave_js_ui: False = reads show codes masked
    # zigbee2mqtt only: the users Zigbee2MQTT's device definition has (``pinCodeCount``; beyond
    # it Zigbee2MQTT refuses the request), and the users the lock really holds (beyond them
    # reads show ``not_supported_255`` and writes are refused). None: the device's slots.
    pin_code_count: int | None = None
    lock_users: int | None = None


@dataclass(frozen=True, slots=True)
class GenerateSettings:
    """Extra simulated native locks ``<prefix><i:04d>`` (i from 0) on ``locks/<id>``: load tests."""

    count: int
    prefix: str = "sim_lock_"
    driver: str = "native"

    def device_ids(self) -> list[str]:
        return [f"{self.prefix}{i:0{_GENERATED_DIGITS}d}" for i in range(self.count)]


def _no_locks() -> Mapping[str, SimLockSettings]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    control_topic: str = "lockgate-sim"
    latency: float = 0.02
    default_slots: int = 30
    default_code_lengths: tuple[int, int] = (4, 8)
    locks: Mapping[str, SimLockSettings] = field(default_factory=_no_locks)
    generate: GenerateSettings | None = None


@functools.lru_cache(maxsize=4)
def generated_devices(generate: GenerateSettings) -> tuple[DeviceConfig, ...]:
    """The devices ``generate`` makes. Cached: there may be thousands."""
    return tuple(
        DeviceConfig(device_id, device_id, "native", NativeOptions(topic=f"locks/{device_id}"))
        for device_id in generate.device_ids()
    )


def simulator_settings(config: Config) -> SimulatorSettings:
    """``config.simulator`` checked; :class:`ConfigError` names every problem by its key path."""
    problems: list[str] = []
    claims = Claims(config.prefix, problems)
    for index, device in enumerate(config.devices):
        claims.device_id(device.device_id, f"devices[{index}]", f"devices[{index}].device_id")
        claims.addresses(device, f"devices[{index}]")
    section = Section(config.simulator, "simulator", problems)
    default_slots = section.get("default_slots", as_integer(1, MAX_SLOTS), 30)
    generate_section = section.section("generate")
    generate = _parse_generate(generate_section) if generate_section.present else None
    generate_section.finish()
    devices = {d.device_id: d for d in config.devices}
    if generate is not None:
        for device in generated_devices(generate):
            claims.device_id(device.device_id, "simulator.generate", "simulator.generate.prefix")
            claims.addresses(device, "simulator.generate", only_key="prefix")
            devices[device.device_id] = device
    settings = SimulatorSettings(
        control_topic=section.get("control_topic", as_topic, "lockgate-sim"),
        latency=section.get("latency", as_duration(), 0.02),
        default_slots=default_slots,
        default_code_lengths=section.get("default_code_lengths", as_code_lengths, (4, 8)),
        locks=_parse_locks(section.section("locks"), devices, default_slots),
        generate=generate,
    )
    section.finish()
    if problems:
        raise ConfigError(problems)
    return settings


def with_generated_devices(config: Config) -> Config:
    """``config`` with the simulator's generated locks as configured devices, for a gateway run
    in the same process as the simulator (they are then no longer the simulator's to add)."""
    generate = simulator_settings(config).generate
    if generate is None:
        return config
    simulator = {key: value for key, value in config.simulator.items() if key != "generate"}
    return dataclasses.replace(
        config,
        devices=config.devices + generated_devices(generate),
        simulator=MappingProxyType(simulator),
    )


def _parse_generate(section: Section) -> GenerateSettings | None:
    count = section.get("count", as_integer(1, 10000), None)
    if not section.given("count"):
        section.report("count", "required (how many native locks to generate, 1-10000)")
    prefix = section.get("prefix", _generated_prefix, "sim_lock_")
    driver = section.get("driver", _only_native, "native")
    section.finish()
    return None if count is None else GenerateSettings(count=count, prefix=prefix, driver=driver)


def _generated_prefix(value: object) -> str:
    if not isinstance(value, str) or not _GENERATED_PREFIX.fullmatch(value):
        raise Invalid(
            f"must be at most {64 - _GENERATED_DIGITS} characters, each a letter, digit, _ or -"
        )
    return value


def _only_native(value: object) -> str:
    if value != "native":
        raise Invalid("must be native (the only driver the generator makes)")
    return "native"


def _parse_locks(
    section: Section, devices: Mapping[str, DeviceConfig], default_slots: int
) -> Mapping[str, SimLockSettings]:
    locks: dict[str, SimLockSettings] = {}
    for key, raw in section.rest().items():
        lock = Section(raw, section.where(key), section.problems)
        device = devices.get(key) if isinstance(key, str) else None
        if device is None:
            lock.report(None, f"no device {str(key)!r} is configured")
            continue
        if lock.given("expose_pin") and device.driver not in ("zigbee2mqtt", "zwave_js_ui"):
            lock.report("expose_pin", "applies to drivers zigbee2mqtt and zwave_js_ui only")
        for setting in ("pin_code_count", "lock_users"):
            if lock.given(setting) and device.driver != "zigbee2mqtt":
                lock.report(setting, "applies to driver zigbee2mqtt only")
        locks[device.device_id] = SimLockSettings(
            latency=lock.get("latency", as_duration(), None),
            initial_codes=_parse_initial_codes(
                lock.section("initial_codes"), device.slots or default_slots
            ),
            reject_duplicates=lock.get("reject_duplicates", as_flag, True),
            expose_pin=lock.get("expose_pin", as_flag, True),
            pin_code_count=lock.get("pin_code_count", as_integer(1, MAX_SLOTS), None),
            lock_users=lock.get("lock_users", as_integer(1, MAX_SLOTS), None),
        )
        lock.finish()
    return MappingProxyType(locks)


def _parse_initial_codes(section: Section, capacity: int) -> Mapping[int, str]:
    codes: dict[int, str] = {}
    for key, pin in section.rest().items():
        # YAML gives `3:` as an int and `"3":` as a string; both name slot 3.
        slot = key if isinstance(key, int) and not isinstance(key, bool) else None
        if isinstance(key, str) and key.isdecimal():
            slot = int(key)
        if slot is None or not 1 <= slot <= capacity:
            section.report(str(key), f"must be a slot number 1-{capacity}")
        elif not isinstance(pin, str) or not pin.isdecimal() or len(pin) > MAX_PIN_LENGTH:
            # An unquoted 0123 is a number to YAML and loses its zero; insist on quotes.
            section.report(str(key), f"must be a quoted string of 1-{MAX_PIN_LENGTH} digits")
        else:
            codes[slot] = pin
    return MappingProxyType(codes)
