"""Issue 11: who opened the door, on a lock behind Zigbee2MQTT. The converters' operation events
(``action`` with ``action_user`` and ``action_source_name``) and ``lock_state`` changes become
the driver's entry events, each operation once; the definition in ``bridge/devices`` says
whether the lock reports them. Parsing, then the driver against the simulated lock and against
Zigbee2MQTT played by hand on a real broker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from drivers.base import EntryEvent, EntryKind, EntryMethod
from drivers.payloads import PayloadError
from drivers.sim_settings import simulator_settings
from drivers.zigbee2mqtt.driver import Zigbee2MqttDriver, create_driver
from drivers.zigbee2mqtt.protocol import (
    NO_USER,
    devices_payload,
    entry_event,
    lock_state_kind,
    operation_payload,
    parse_devices,
    parse_state,
)
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.entry_helpers import heard, short_window
from tests.helpers import DriverRig, Probe, Wakes, driver_rig, running, session_for
from tests.zigbee2mqtt_helpers import TOPICS, ZB, device, zb_config

UNLOCKED, LOCKED, DENIED = EntryKind.UNLOCKED, EntryKind.LOCKED, EntryKind.ACCESS_DENIED
KEYCODE, MANUAL, REMOTE = EntryMethod.KEYCODE, EntryMethod.MANUAL, EntryMethod.REMOTE
AUTOMATIC, UNKNOWN = EntryMethod.AUTOMATIC, EntryMethod.UNKNOWN


def operation(action: str, source: str | None = None, user: int | None = None) -> EntryEvent | None:
    """What the driver makes of a state message carrying this operation event."""
    message: dict[str, Any] = {"users": {}, "lock_state": "locked", "action": action}
    if source is not None:
        message["action_source_name"] = source
    if user is not None:
        message["action_user"] = user
    return entry_event(parse_state(json.dumps(message)))


# -- parsing --------------------------------------------------------------------------------------


def test_a_pin_at_the_keypad_names_its_slot() -> None:
    """Zigbee2MQTT's users are 0-based: user 2 is slot 3."""
    assert operation("unlock", "keypad", 2) == EntryEvent(UNLOCKED, KEYCODE, 3)
    assert operation("lock", "keypad", 0) == EntryEvent(LOCKED, KEYCODE, 1)
    # A valid PIN outside its schedule is refused, and still names its user.
    assert operation("unlock_failure_invalid_schedule", "keypad", 4) == EntryEvent(
        DENIED, KEYCODE, 5
    )


def test_a_wrong_pin_names_no_slot() -> None:
    assert operation("unlock_failure_invalid_pin_or_id", "keypad", NO_USER) == EntryEvent(
        DENIED, KEYCODE, None
    )
    assert operation("lock_failure_invalid_pin_or_id", "rf", 1) == EntryEvent(DENIED, REMOTE)
    assert operation("unlock", "keypad", NO_USER) == EntryEvent(UNLOCKED, KEYCODE, None)


@pytest.mark.parametrize(
    ("action", "source", "expected"),
    [
        ("manual_unlock", "manual", EntryEvent(UNLOCKED, MANUAL)),
        ("manual_lock", "keypad", EntryEvent(LOCKED, MANUAL)),  # the action says how
        ("key_unlock", None, EntryEvent(UNLOCKED, MANUAL)),
        ("one_touch_lock", "keypad", EntryEvent(LOCKED, MANUAL)),
        ("auto_lock", "manual", EntryEvent(LOCKED, AUTOMATIC)),
        ("schedule_unlock", None, EntryEvent(UNLOCKED, AUTOMATIC)),
        ("unlock", "rf", EntryEvent(UNLOCKED, REMOTE)),
        ("lock", "manual", EntryEvent(LOCKED, MANUAL)),
        ("unlock", "rfid", EntryEvent(UNLOCKED, UNKNOWN)),  # no method of the contract
        ("unlock", None, EntryEvent(UNLOCKED, UNKNOWN)),
    ],
)
def test_how_the_door_was_operated(action: str, source: str | None, expected: EntryEvent) -> None:
    assert operation(action, source, 0) == expected


@pytest.mark.parametrize(
    "action", ["pin_code_added", "unknown", "non_access_user_operational_event", "single"]
)
def test_other_actions_are_no_door_operation(action: str) -> None:
    assert operation(action, "keypad", 1) is None


def test_lock_state() -> None:
    def kind(state: object) -> EntryKind | None:
        return lock_state_kind(parse_state(f'{{"lock_state": {state}}}'))

    assert kind('"locked"') is LOCKED
    assert kind('"unlocked"') is UNLOCKED
    assert kind('"not_fully_locked"') is None
    assert kind("3") is None  # not what the converters give: nothing said
    assert lock_state_kind(parse_state("{}")) is None


def test_the_definition_says_whether_the_lock_reports_operations() -> None:
    other = {"friendly_name": "plug", "definition": {"exposes": []}}
    listed = [other, *devices_payload(ZB, operations=True)]
    assert parse_devices(json.dumps(listed), ZB) is True
    assert parse_devices(json.dumps(devices_payload(ZB, operations=False)), ZB) is False
    assert parse_devices(b'[{"friendly_name": "zb", "definition": null}]', ZB) is False
    assert parse_devices(b'[{"friendly_name": "plug"}]', ZB) is None
    nested = b'[{"friendly_name": "zb", "definition": {"exposes": [{"type": "composite",'
    nested += b' "features": [{"name": "action", "values": ["lock", "unlock"]}]}]}}]'
    assert parse_devices(nested, ZB) is True
    for garbage in (b"{}", b"not json", b'"zb"'):
        with pytest.raises(PayloadError):
            parse_devices(garbage, ZB)


# -- the driver against the simulated lock ------------------------------------------------------


Rig = DriverRig[Zigbee2MqttDriver]


def create(*args: Any) -> Zigbee2MqttDriver:
    driver = create_driver(*args)
    assert isinstance(driver, Zigbee2MqttDriver)
    return driver


@pytest.fixture
async def rig(
    make_config: ConfigFactory, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    short_window(monkeypatch)
    config = zb_config(make_config)
    ready = driver_rig(config, broker, ZB, create, lambda d: d.online and d.has_entry_events)
    async with ready as instance:
        yield instance


@pytest.fixture
def control(make_config: ConfigFactory) -> str:
    return f"{simulator_settings(make_config()).control_topic}/{ZB}/set"


async def test_a_keypad_unlock_names_the_slot_once(rig: Rig, probe: Probe, control: str) -> None:
    """The simulated lock says what a real one does: the operation event over the cache as it
    was (``lock_state`` still ``locked``), then the lockState report without ``action``. Each
    operation is told once, though both messages say it."""
    await probe.subscribe(TOPICS.state)
    await probe.publish(control, {"enter": "8642"})  # slot 1's PIN
    event = await probe.next_where(TOPICS.state, lambda m: "action" in m)
    assert event["action"] == "unlock"
    assert (event["action_user"], event["action_source_name"]) == (0, "keypad")
    assert event["lock_state"] == "locked"  # the cache as it was
    after = await probe.next(TOPICS.state)
    assert "action" not in after
    assert after["lock_state"] == "unlocked"
    await rig.lock.publish_entry(EntryEvent(LOCKED, MANUAL))
    await rig.lock.publish_entry(EntryEvent(UNLOCKED, REMOTE))
    assert await heard(rig.driver, rig.wakes, 3) == [
        EntryEvent(UNLOCKED, KEYCODE, 1),
        EntryEvent(LOCKED, MANUAL),
        EntryEvent(UNLOCKED, REMOTE),
    ]


async def test_a_wrong_pin_is_access_denied(rig: Rig, control: str, probe: Probe) -> None:
    await probe.subscribe(TOPICS.state)
    await probe.publish(control, {"enter": "0000"})
    event = await probe.next_where(TOPICS.state, lambda m: "action" in m)
    assert event["action"] == "unlock_failure_invalid_pin_or_id"
    assert event["action_source_name"] == "keypad"
    assert await heard(rig.driver, rig.wakes, 1) == [EntryEvent(DENIED, KEYCODE)]


async def test_a_lock_without_operation_events_still_tells_its_state(rig: Rig) -> None:
    """Only ``lock_state`` changes: an operation of unknown method, once no operation event
    came for it. The first ``lock_state`` the driver sees is where the lock stands."""
    await rig.driver.read([1])  # the state messages of a read: locked
    await rig.lock.publish_entry(EntryEvent(UNLOCKED, UNKNOWN))
    await rig.lock.publish_entry(EntryEvent(LOCKED, AUTOMATIC))
    assert await heard(rig.driver, rig.wakes, 2) == [
        EntryEvent(UNLOCKED, UNKNOWN),
        EntryEvent(LOCKED, AUTOMATIC),
    ]


async def test_entry_events_off_tells_nothing(rig: Rig, control: str, probe: Probe) -> None:
    """Old firmware reports no operations: the keypad still opens, nothing is told."""
    keypad = control.removesuffix("/set") + "/keypad"
    await probe.subscribe(keypad)
    await probe.publish(control, {"entry_events": False, "enter": "8642"})
    accepted = await probe.next(keypad)
    assert accepted["code_accepted"] is True
    await rig.lock.publish_entry(EntryEvent(LOCKED, MANUAL))  # a probe that something comes
    assert await heard(rig.driver, rig.wakes, 1) == [EntryEvent(LOCKED, MANUAL)]


# -- Zigbee2MQTT played by hand -------------------------------------------------------------------


@asynccontextmanager
async def by_hand(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> AsyncIterator[tuple[Zigbee2MqttDriver, Wakes]]:
    config = zb_config(make_config)
    await probe.publish(TOPICS.bridge_state, {"state": "online"}, retain=True)
    await probe.publish(TOPICS.availability, {"state": "online"}, retain=True)
    session = session_for(broker, "gateway")
    driver = create(device(config), session, config.timing)
    wakes = Wakes()
    await driver.start(wakes)
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.online)
        yield driver, wakes


async def test_a_lock_whose_definition_has_no_operations(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """Not reported by its definition, the lock is said to report operations once it does."""
    await probe.publish(TOPICS.bridge_devices, devices_payload(ZB, operations=False), retain=True)
    async with by_hand(make_config, broker, probe) as (driver, wakes):
        assert not driver.has_entry_events
        message = {"users": {}, **operation_payload("unlock", "keypad", 5)}
        await probe.publish(TOPICS.state, message)
        assert await heard(driver, wakes, 1) == [EntryEvent(UNLOCKED, KEYCODE, 6)]
        assert driver.has_entry_events


async def test_garbage_tells_no_operation(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    async with by_hand(make_config, broker, probe) as (driver, wakes):
        for payload in (b"\x00", b"{}", b'{"friendly_name": "zb"}', b"[1, 2]"):
            await probe.publish(TOPICS.bridge_devices, payload)
        for message in (
            {"action": 7},  # refused as a whole
            {"action": "unlock", "action_user": "two"},  # likewise
            {"action": "unlock", "action_source_name": 3, "action_user": 1},
            {"action": "fly_away", "action_source_name": "keypad"},
            {"lock_state": ["locked"]},
        ):
            await probe.publish(TOPICS.state, message)
        await probe.publish(TOPICS.state, {"action": "manual_lock"})  # the last, and good
        assert await heard(driver, wakes, 2) == [
            EntryEvent(UNLOCKED, UNKNOWN),  # the source was no name: unknown
            EntryEvent(LOCKED, MANUAL),
        ]
        assert driver.online
