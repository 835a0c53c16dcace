"""Home Assistant MQTT discovery (issue 12 point 2, docs/homeassistant.md), read as Home
Assistant reads it: every retained message the broker holds under the discovery prefix is checked
against Home Assistant's documented discovery schema for ``sensor`` and ``binary_sensor``, and
each template is rendered with jinja2 against the retained messages it reads, to show what the
entities would say: backups available, the pool's health, the lock offline, who unlocked last.

A real gateway, SQLite file, mosquitto and lock simulator throughout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Final

import aiomqtt
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.clock import ManualClock
from gateway.config import Config, ConfigError, HomeAssistantSettings
from gateway.domain import EventType
from gateway.homeassistant import Naming, discovery_configs
from gateway.model import Device, Json
from gateway.site import Site
from gateway.store import Tx
from tests.backup_pool_helpers import (
    FRONT,
    gateway_site,
    pool_config,
    stay_with_backup,
)
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import create, ok, running_simulator, running_site
from tests.helpers import Probe

BACK = "back_door"
PREFIX = "homeassistant"

# -- Home Assistant's discovery schema (home-assistant.io: MQTT discovery, MQTT Sensor, MQTT
# Binary Sensor), full key names: lockgate uses no abbreviations. ---------------------------------

_ENTITY_KEYS: Final = frozenset(
    {
        "availability", "availability_mode", "availability_template", "availability_topic",
        "default_entity_id", "device", "enabled_by_default", "encoding", "entity_category",
        "entity_picture", "expire_after", "force_update", "icon", "json_attributes_template",
        "json_attributes_topic", "name", "object_id", "origin", "payload_available",
        "payload_not_available", "platform", "qos", "state_topic", "unique_id", "value_template",
    }
)  # fmt: skip
ALLOWED_KEYS: Final = {
    "sensor": _ENTITY_KEYS
    | {
        "device_class", "last_reset_value_template", "options", "state_class",
        "suggested_display_precision", "unit_of_measurement",
    },
    "binary_sensor": _ENTITY_KEYS | {"device_class", "off_delay", "payload_off", "payload_on"},
}  # fmt: skip
REQUIRED_KEYS: Final = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}}
DEVICE_KEYS: Final = frozenset(
    {
        "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
        "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
    }
)  # fmt: skip
ORIGIN_KEYS: Final = frozenset({"name", "sw_version", "support_url"})
AVAILABILITY_KEYS: Final = frozenset(
    {"topic", "payload_available", "payload_not_available", "value_template"}
)
BINARY_SENSOR_CLASSES: Final = frozenset(
    {
        "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
        "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
        "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
        "smoke", "sound", "tamper", "update", "vibration", "window",
    }
)  # fmt: skip
SENSOR_CLASSES: Final = frozenset(
    {
        "apparent_power", "aqi", "area", "atmospheric_pressure", "battery",
        "blood_glucose_concentration", "carbon_dioxide", "carbon_monoxide", "conductivity",
        "current", "data_rate", "data_size", "date", "distance", "duration", "energy",
        "energy_distance", "energy_storage", "enum", "frequency", "gas", "humidity",
        "illuminance", "irradiance", "moisture", "monetary", "nitrogen_dioxide",
        "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25",
        "power_factor", "power", "precipitation", "precipitation_intensity", "pressure",
        "reactive_power", "signal_strength", "sound_pressure", "speed", "sulphur_dioxide",
        "temperature", "timestamp", "volatile_organic_compounds",
        "volatile_organic_compounds_parts", "voltage", "volume", "volume_flow_rate",
        "volume_storage", "water", "weight", "wind_direction", "wind_speed",
    }
)  # fmt: skip
STATE_CLASSES: Final = frozenset({"measurement", "measurement_angle", "total", "total_increasing"})
AVAILABILITY_MODES: Final = frozenset({"all", "any", "latest"})
ENTITY_CATEGORIES: Final = frozenset({"config", "diagnostic"})
#: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
DISCOVERY_TOPIC: Final = re.compile(
    re.escape(PREFIX) + r"/(?P<component>[^/]+)/(?:(?P<node>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object>[a-zA-Z0-9_-]+)/config"
)


def text(value: object) -> bool:
    """A non-empty string."""
    return isinstance(value, str) and bool(value)


def check_discovery(topic: str, config: Json) -> str:
    """Home Assistant would accept this config: its component, for the caller to use."""
    match = DISCOVERY_TOPIC.fullmatch(topic)
    assert match is not None, topic
    component = match["component"]
    assert component in ALLOWED_KEYS, topic
    assert not (set(config) - ALLOWED_KEYS[component]), (topic, set(config))
    assert REQUIRED_KEYS[component] <= set(config), topic
    assert not any(key.startswith("~") or "~" in str(v) for key, v in config.items()), topic
    assert text(config["unique_id"]), topic
    assert text(config["name"]), topic
    device = config["device"]
    assert not (set(device) - DEVICE_KEYS), device
    assert isinstance(device["identifiers"], list), device
    assert device["identifiers"], device
    assert all(text(i) for i in device["identifiers"]), device
    assert device["manufacturer"] == "lockgate"
    origin = config["origin"]
    assert not (set(origin) - ORIGIN_KEYS), origin
    assert text(origin["name"]), origin
    # availability: a list of {topic, ...}; never together with availability_topic.
    assert "availability_topic" not in config, topic
    availability = config["availability"]
    assert isinstance(availability, list), topic
    assert availability, topic
    for entry in availability:
        assert isinstance(entry, dict), entry
        assert not (set(entry) - AVAILABILITY_KEYS), entry
        assert text(entry["topic"]), entry
    assert config.get("availability_mode", "latest") in AVAILABILITY_MODES, topic
    assert config.get("entity_category", "diagnostic") in ENTITY_CATEGORIES, topic
    classes = BINARY_SENSOR_CLASSES if component == "binary_sensor" else SENSOR_CLASSES
    assert config.get("device_class", "power") in classes, topic
    assert config.get("state_class", "measurement") in STATE_CLASSES, topic
    for key in ("value_template", "json_attributes_template"):
        if key in config:
            TEMPLATES.from_string(config[key])  # compiles
    return component


# -- reading what the broker holds, rendering as Home Assistant renders ---------------------------

TEMPLATES: Final = ImmutableSandboxedEnvironment()


async def retained(broker: Broker, *topic_filters: str) -> dict[str, bytes]:
    """Every retained message a newcomer subscribing to ``topic_filters`` receives.

    A marker published after the subscription comes back after all of them."""
    marker = f"test/marker/{uuid.uuid4().hex}"
    found: dict[str, bytes] = {}
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"ha-{uuid.uuid4().hex[:8]}", timeout=10
    ) as client:
        await client.subscribe([(f, 1) for f in (*topic_filters, marker)])
        await client.publish(marker, b"1", qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                if message.topic.value == marker:
                    return found
                assert isinstance(message.payload, bytes)
                if message.retain:
                    found[message.topic.value] = message.payload
    raise AssertionError("the marker never came back")


@dataclasses.dataclass
class HomeAssistant:
    """The discovered entities and the retained messages they read, as one snapshot."""

    configs: dict[str, Json]  # discovery topic -> config
    messages: dict[str, bytes]  # every retained message of the gateway's prefix

    def _found(self, unique_suffix: str, device_id: str) -> tuple[str, Json]:
        found = [
            (topic, c)
            for topic, c in self.configs.items()
            if c["unique_id"] == f"lockgate.test-hub.{device_id}.{unique_suffix}"
        ]
        assert len(found) == 1, (unique_suffix, device_id, list(self.configs))
        return found[0]

    def entity(self, unique_suffix: str, device_id: str = FRONT) -> Json:
        return self._found(unique_suffix, device_id)[1]

    def render(self, template: str | None, topic: str) -> str:
        payload = self.messages[topic]
        text = payload.decode()
        if template is None:
            return text
        return TEMPLATES.from_string(template).render(value=text, value_json=json.loads(text))

    def state(self, unique_suffix: str, device_id: str = FRONT) -> str:
        """The entity's state as Home Assistant shows it ("on"/"off" for a binary sensor)."""
        topic, config = self._found(unique_suffix, device_id)
        rendered = self.render(config.get("value_template"), config["state_topic"])
        if "/binary_sensor/" not in topic:
            return rendered
        states = {config.get("payload_on", "ON"): "on", config.get("payload_off", "OFF"): "off"}
        return states[rendered]

    def available(self, unique_suffix: str, device_id: str = FRONT) -> bool:
        config = self.entity(unique_suffix, device_id)
        verdicts = []
        for entry in config["availability"]:
            if entry["topic"] not in self.messages:
                verdicts.append(False)
                continue
            rendered = self.render(entry.get("value_template"), entry["topic"])
            verdicts.append(rendered == entry.get("payload_available", "online"))
        mode = config.get("availability_mode", "latest")
        return all(verdicts) if mode == "all" else any(verdicts)


async def home_assistant(site: Site, broker: Broker) -> HomeAssistant:
    """What Home Assistant would find, once the gateway has published all it means to."""
    await site.settled()
    configs = await retained(broker, f"{PREFIX}/#")
    checked: dict[str, Json] = {}
    for topic, payload in configs.items():
        config = json.loads(payload)
        check_discovery(topic, config)
        checked[topic] = config
    unique = [c["unique_id"] for c in checked.values()]
    assert len(unique) == len(set(unique)), unique
    messages = await retained(broker, f"{site.config.prefix}/#")
    return HomeAssistant(checked, messages)


def discovery(config: Config, *, enabled: bool = True) -> Config:
    return dataclasses.replace(config, homeassistant=HomeAssistantSettings(enabled=enabled))


def without_pins(text: bytes, pins: list[str]) -> bool:
    return not any(pin in text.decode() for pin in pins)


async def set_entry_events(site: Site, device_id: str = FRONT) -> None:
    """The lock's stack reports door operations, as the entry-event pipeline records it."""

    def unit(tx: Tx) -> None:
        tx.execute("UPDATE devices SET entry_events = 1 WHERE device_id = ?", (device_id,))
        tx.touch(device_id)

    assert site.gateway.store is not None
    await site.gateway.store.write(unit)


async def unlocked(
    site: Site, access_code_id: str | None, method: str = "keycode", slot: int | None = None
) -> None:
    await unlocked_at(site, FRONT, access_code_id, method, slot)


async def unlocked_at(
    site: Site,
    device_id: str,
    access_code_id: str | None,
    method: str = "keycode",
    slot: int | None = None,
) -> None:
    """A ``lock.unlocked`` committed exactly as the entry-event pipeline commits it."""
    store = site.gateway.store
    assert store is not None
    await store.write(
        lambda tx: tx.emit(
            EventType.LOCK_UNLOCKED,
            device_id,
            access_code_id,
            access_code_is_managed=access_code_id is not None,
            method=method,
            slot=slot,
        )
    )


def pool_site(make_config: ConfigFactory, *, enabled: bool = True) -> Config:
    """A front door with a pool of 3 and a back door without, discovery on."""
    back = {"device_id": BACK, "name": "Back door", "driver": "native"}
    config = pool_config(make_config, slots=8, extra_devices=[back])
    return discovery(config, enabled=enabled)


# -- the tests ------------------------------------------------------------------------------------


async def test_each_managed_lock_is_a_device_with_schema_valid_entities(
    make_config: ConfigFactory, broker: Broker
) -> None:
    config = pool_site(make_config)
    async with running_site(config) as site:
        ha = await home_assistant(site, broker)
        node = f"{PREFIX}/%s/lockgate_test-hub/%s/config"
        assert set(ha.configs) == {
            node % ("sensor", f"{FRONT}_backup_codes"),
            node % ("binary_sensor", f"{FRONT}_backup_pool_problem"),
            node % ("binary_sensor", f"{FRONT}_offline"),
            node % ("binary_sensor", f"{BACK}_offline"),  # no pool, no pool entities
        }
        front = ha.entity("backup_codes")
        assert front["device"] == {
            "identifiers": [f"lockgate.test-hub.{FRONT}"],
            "name": "Front door",
            "manufacturer": "lockgate",
            "model": "native",
        }
        assert ha.entity("offline", BACK)["device"]["identifiers"] == [f"lockgate.test-hub.{BACK}"]
        assert front["unique_id"] == f"lockgate.test-hub.{FRONT}.backup_codes"
        # Tied to the gateway's status and the lock's own state, both required ...
        status = f"{config.prefix}/status"
        assert front["availability_mode"] == "all"
        assert [a["topic"] for a in front["availability"]] == [
            status,
            f"{config.prefix}/devices/{FRONT}",
        ]
        # ... except "offline", which must show while the lock is offline.
        assert [a["topic"] for a in ha.entity("offline")["availability"]] == [status]
        for problem in ("backup_pool_problem", "offline"):
            assert ha.entity(problem)["device_class"] == "problem"
        # The states, from the retained device objects.
        assert ha.state("backup_codes") == "3"
        assert ha.state("backup_pool_problem") == "off"
        assert ha.state("offline") == "off"
        assert ha.state("offline", BACK) == "off"
        assert all(ha.available(e) for e in ("backup_codes", "backup_pool_problem", "offline"))

        # The lock goes offline: its entities become unavailable, "offline" turns on.
        await site.lock(FRONT).control({"online": False})
        await site.settled()
        ha = await home_assistant(site, broker)
        assert ha.state("offline") == "on"
        assert ha.available("offline")
        assert not ha.available("backup_codes")
        assert not ha.available("backup_pool_problem")
        assert ha.state("offline", BACK) == "off"
        await site.lock(FRONT).control({"online": True})
        await site.settled()
        ha = await home_assistant(site, broker)
        assert ha.state("offline") == "off"
        assert ha.available("backup_codes")

    # The gateway stopped: everything unavailable (its status is offline).
    ha = HomeAssistant(ha.configs, await retained(broker, f"{config.prefix}/#"))
    assert not any(ha.available(e) for e in ("backup_codes", "backup_pool_problem", "offline"))


async def test_backup_count_and_pool_health_follow_the_pool(
    make_config: ConfigFactory, broker: Broker
) -> None:
    config = pool_site(make_config)
    async with running_site(config) as site:
        ha = await home_assistant(site, broker)
        assert (ha.state("backup_codes"), ha.state("backup_pool_problem")) == ("3", "off")
        guest, backup = await stay_with_backup(site, hours=2, name="Alice")
        ha = await home_assistant(site, broker)
        assert (ha.state("backup_codes"), ha.state("backup_pool_problem")) == ("3", "off")
        # A second pulled backup: many_active_backup_codes (threshold 2), a pool problem.
        await stay_with_backup(site, hours=2, name="Bob")
        ha = await home_assistant(site, broker)
        assert ha.state("backup_pool_problem") == "on"
        # The stays end, their backups come off the lock: healthy again.
        await site.advance(3 * 3600)
        ha = await home_assistant(site, broker)
        assert (ha.state("backup_codes"), ha.state("backup_pool_problem")) == ("3", "off")
        pins = [guest["code"], backup["code"]]
        assert all(without_pins(p, pins) for p in ha.messages.values())


@pytest.mark.parametrize(
    "problem",
    [
        ("errors", "error_code", "empty_backup_access_code_pool"),
        ("warnings", "warning_code", "partial_backup_access_code_pool"),
        ("warnings", "warning_code", "many_active_backup_codes"),
    ],
)
def test_every_pool_problem_and_no_other_turns_the_health_sensor_on(
    problem: tuple[str, str, str],
) -> None:
    kind, key, code = problem
    naming = Naming(PREFIX, "lockgate/h", "h")
    device = Device("d", "D", "native", True, datetime.now(UTC), pool_enabled=True)
    (config,) = [
        c for t, c in discovery_configs(device, naming).items() if "backup_pool_problem" in t
    ]
    body = device.to_json()
    render = TEMPLATES.from_string(config["value_template"]).render
    # Other problems leave it off.
    body["errors"] = [{"error_code": "device_disconnected", "message": "m", "created_at": "t"}]
    body["warnings"] = [{"warning_code": "max_access_codes_reached", "message": "m"}]
    assert render(value_json=body) == "OFF"
    body[kind] = [*body[kind], {key: code, "message": "m", "created_at": "t"}]
    assert render(value_json=body) == "ON"


async def test_last_unlocked_by_names_the_code_from_the_entry_events(
    make_config: ConfigFactory, broker: Broker
) -> None:
    config = pool_site(make_config)
    state_topic = f"{config.prefix}/homeassistant/{FRONT}/last_unlocked_by"
    clock = ManualClock()
    async with running_simulator(config) as sim:
        async with gateway_site(config, clock, sim) as site:
            ha = await home_assistant(site, broker)
            # Left out while the lock's stack reports no door operations.
            assert not any("last_unlocked_by" in t for t in ha.configs)
            await set_entry_events(site)
            ha = await home_assistant(site, broker)
            sensor = ha.entity("last_unlocked_by")
            assert sensor["state_topic"] == state_topic
            assert sensor["json_attributes_topic"] == state_topic
            assert sensor["availability_mode"] == "all"
            assert state_topic not in ha.messages  # nobody has unlocked yet: unknown

            # A trivial PIN: no backup of the pool, drawn at random, can have taken it first.
            alice = await create(site, device_id=FRONT, name="Alice", code="4545")
            await site.settled()
            await unlocked(site, alice["access_code_id"], slot=alice["slot"])
            ha = await home_assistant(site, broker)
            assert ha.state("last_unlocked_by") == "Alice"
            attributes = json.loads(ha.messages[state_topic])
            assert attributes["access_code_id"] == alice["access_code_id"]
            assert attributes["method"] == "keycode"
            assert attributes["via_backup_access_code"] is False

            # A pulled backup typed in: the guest it stands in for.
            guest, backup = await stay_with_backup(site, hours=2, name="Bob")
            await unlocked(site, backup["access_code_id"], slot=backup["slot"])
            ha = await home_assistant(site, broker)
            assert ha.state("last_unlocked_by") == "Bob"
            assert json.loads(ha.messages[state_topic])["via_backup_access_code"] is True

            # Opened from inside, and with a PIN the gateway does not manage.
            await unlocked(site, None, method="manual")
            assert (await home_assistant(site, broker)).state("last_unlocked_by") == "Manual"
            await unlocked(site, None, method="keycode", slot=7)
            ha = await home_assistant(site, broker)
            assert ha.state("last_unlocked_by") == "Unmanaged code"
            assert ha.available("last_unlocked_by")
            pins = ["4545", guest["code"], backup["code"]]
            assert all(without_pins(p, pins) for p in ha.messages.values())

            await unlocked(site, alice["access_code_id"], slot=alice["slot"])
            await site.settled()
            # Alice's code deleted (a one-time code is, right after its use): the name stays.
            ok(await site.api.call("access_codes/delete", access_code_id=alice["access_code_id"]))
            await site.settled()
            assert (await home_assistant(site, broker)).state("last_unlocked_by") == "Alice"
        async with gateway_site(config, clock, sim) as site:
            assert (await home_assistant(site, broker)).state("last_unlocked_by") == "Alice"


async def test_entities_removed_when_unmanaged_and_when_left_out_of_the_config(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    config = pool_site(make_config)
    clock = ManualClock()
    await probe.subscribe(f"{PREFIX}/#")
    async with running_simulator(config) as sim:
        async with gateway_site(config, clock, sim) as site:
            await set_entry_events(site, BACK)
            code = await create(site, device_id=BACK, name="Cleaner")
            await site.settled()
            await unlocked_at(site, BACK, code["access_code_id"])
            ha = await home_assistant(site, broker)
            back_topics = {t for t in ha.configs if f"/{BACK}_" in t}
            assert len(back_topics) == 2  # offline, last unlocked by
            state_topic = f"{config.prefix}/homeassistant/{BACK}/last_unlocked_by"
            assert state_topic in ha.messages

            ok(await site.api.call("devices/update", device_id=BACK, is_managed=False))
            ha = await home_assistant(site, broker)
            assert not any(f"/{BACK}_" in t for t in ha.configs)
            assert state_topic not in ha.messages
            assert len(ha.configs) == 3  # the front door's stay
            for topic in back_topics:  # withdrawn with an empty retained config
                assert probe.history.count((topic, b"")) == 1

            ok(await site.api.call("devices/update", device_id=BACK, is_managed=True))
            ha = await home_assistant(site, broker)
            assert {t for t in ha.configs if f"/{BACK}_" in t} == back_topics
            assert ha.state("last_unlocked_by", BACK) == "Cleaner"

        published = len(probe.history)
        shorter = dataclasses.replace(config, devices=config.devices[:1])
        async with gateway_site(shorter, clock, sim) as site:
            ha = await home_assistant(site, broker)
            assert not any(f"/{BACK}_" in t for t in ha.configs)
            assert state_topic not in ha.messages
            assert len(ha.configs) == 3
        # The restart sent the back door's withdrawals and nothing else: the front door's
        # configs were on the broker already, unchanged.
        assert {t for t, _ in probe.history[published:]} == back_topics
        assert all(p == b"" for _, p in probe.history[published:])


async def test_disabled_publishes_nothing_and_withdraws_what_an_earlier_run_left(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    config = pool_site(make_config, enabled=False)
    await probe.subscribe(f"{PREFIX}/#")
    clock = ManualClock()
    async with running_simulator(config) as sim:
        async with gateway_site(config, clock, sim) as site:
            await stay_with_backup(site)
            await set_entry_events(site)
            await unlocked(site, None, method="manual")
            await site.settled()
            assert await retained(broker, f"{PREFIX}/#") == {}
            assert probe.history == []
        async with gateway_site(discovery(config), clock, sim) as site:
            ha = await home_assistant(site, broker)
            assert len(ha.configs) == 5
            assert f"{config.prefix}/homeassistant/{FRONT}/last_unlocked_by" in ha.messages
        async with gateway_site(config, clock, sim) as site:
            await site.settled()
            assert await retained(broker, f"{PREFIX}/#") == {}
            assert await retained(broker, f"{config.prefix}/homeassistant/#") == {}


def test_the_homeassistant_section_is_checked_like_the_rest(make_config: ConfigFactory) -> None:
    assert make_config().homeassistant == HomeAssistantSettings(False, "homeassistant")
    given = make_config(homeassistant={"enabled": True, "discovery_prefix": "ha/discovery"})
    assert given.homeassistant == HomeAssistantSettings(True, "ha/discovery")
    with pytest.raises(ConfigError) as refused:
        make_config(homeassistant={"enabled": "yes please", "discovery_prefix": "ha/#", "x": 1})
    problems = refused.value.problems
    assert any(p.startswith("homeassistant.enabled: ") for p in problems), problems
    assert any(
        p.startswith("homeassistant.discovery_prefix: ") and "wildcard" in p for p in problems
    ), problems
    assert "homeassistant.x: unknown key" in problems
    with pytest.raises(ConfigError) as refused:
        make_config(homeassistant=["enabled"])
    assert refused.value.problems == ["homeassistant: must be a mapping, not a list"]


async def test_a_reloaded_configuration_moves_or_withdraws_the_entities(
    make_config: ConfigFactory, broker: Broker
) -> None:
    """What a reload (SIGHUP) hands the publisher: discovery moved to another prefix (the
    old configs withdrawn), then switched off (all withdrawn)."""
    config = pool_site(make_config)
    async with running_site(config) as site:
        ha = await home_assistant(site, broker)
        assert len(ha.configs) == 4
        publisher = site.gateway.homeassistant
        assert publisher is not None
        moved = dataclasses.replace(
            config, homeassistant=HomeAssistantSettings(True, "ha/discovery")
        )
        await publisher.reconfigure(moved)
        await site.settled()
        assert await retained(broker, f"{PREFIX}/#") == {}
        found = await retained(broker, "ha/discovery/#")
        assert {t.replace("ha/discovery/", f"{PREFIX}/", 1) for t in found} == set(ha.configs)
        await publisher.reconfigure(discovery(config, enabled=False))
        await site.settled()
        assert await retained(broker, "ha/discovery/#") == {}
        assert await retained(broker, f"{PREFIX}/#") == {}


async def test_everything_is_back_after_the_broker_lost_it(
    make_config: ConfigFactory, broker: Broker
) -> None:
    """A broker restarted without persistence has lost every retained message: on reconnect
    the gateway finds none of its configs there and publishes them all again."""
    config = pool_site(make_config)
    async with running_site(config) as site:
        await set_entry_events(site)
        alice = await create(site, device_id=FRONT, name="Alice")
        await site.settled()
        await unlocked(site, alice["access_code_id"], slot=alice["slot"])
        before = await home_assistant(site, broker)
        assert before.state("last_unlocked_by") == "Alice"
        reconnected = asyncio.Event()
        site.gateway.session.on_connect(reconnected.set)
        broker.kill()
        broker.start()
        async with asyncio.timeout(15):
            await reconnected.wait()
        after = await home_assistant(site, broker)
        assert after.configs == before.configs
        assert after.state("last_unlocked_by") == "Alice"
        assert after.state("backup_codes") == "3"
