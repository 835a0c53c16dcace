"""Issue 11: who opened the door, on a lock behind Z-Wave JS UI. Notification CC Access Control
events (a keypad operation names its user, which is the slot) and Door Lock ``currentMode``
changes become the driver's entry events, each operation once; a node with Access Control
values reports them. Parsing against zwave-js's registry and the captures, then the driver
against the simulated lock, and against Z-Wave JS UI played by hand, on a real broker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.base import EntryEvent, EntryKind, EntryMethod
from drivers.payloads import PayloadError
from drivers.zwave_js_ui.driver import ZwaveJsUiDriver, create_driver
from drivers.zwave_js_ui.protocol import (
    ACCESS_CONTROL,
    Topics,
    door_lock_kind,
    notification_entry,
    notification_payload,
    value_payload,
)
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.entry_helpers import heard, short_window
from tests.helpers import DriverRig, Probe, Wakes, driver_rig, running, session_for
from tests.test_zwave_js_ui_captures import CAPTURES, capture_lines, capture_topics
from tests.zwave_js_ui_helpers import PIN, device_of, zw_config

UNLOCKED, LOCKED, DENIED = EntryKind.UNLOCKED, EntryKind.LOCKED, EntryKind.ACCESS_DENIED
KEYCODE, MANUAL, REMOTE = EntryMethod.KEYCODE, EntryMethod.MANUAL, EntryMethod.REMOTE
AUTOMATIC, UNKNOWN = EntryMethod.AUTOMATIC, EntryMethod.UNKNOWN
NOW = 1795839923919


def event(key: str, value: object = None, notification: str = ACCESS_CONTROL) -> EntryEvent | None:
    payload: dict[str, Any] = {"time": NOW}
    if value is not None:
        payload["value"] = value
    return notification_entry(notification, key, json.dumps(payload))


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CAPTURES))
def test_the_captured_keypad_unlock_names_its_slot(name: str) -> None:
    topics = capture_topics(name)
    found = [
        notification_entry(*where, payload)
        for topic, payload in capture_lines(name)
        if (where := topics.parse_notification_topic(topic)) is not None
    ]
    # The retained Access Control state first (no operation), then the keypad unlocks.
    assert found[0] is None
    assert len(found) == (3 if name == "valueid" else 2)  # two unlocks captured, or one
    assert set(found[1:]) == {EntryEvent(UNLOCKED, KEYCODE, 3)}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("Keypad_unlock_operation", {"userId": 3}, EntryEvent(UNLOCKED, KEYCODE, 3)),
        ("Keypad_lock_operation", {"userId": 1, "userIdStatus": 1}, EntryEvent(LOCKED, KEYCODE, 1)),
        ("Unlock_operation_with_User_Code", {"user ID": 7}, EntryEvent(UNLOCKED, KEYCODE, 7)),
        ("Lock_operation_with_User_Code", {"user ID": 2}, EntryEvent(LOCKED, KEYCODE, 2)),
        ("Keypad_unlock_operation", None, EntryEvent(UNLOCKED, KEYCODE)),  # no parameters
        ("Keypad_unlock_operation", {"userId": 0}, EntryEvent(UNLOCKED, KEYCODE)),
        ("Keypad_unlock_operation", {"userId": "3"}, EntryEvent(UNLOCKED, KEYCODE)),
        ("Keypad_unlock_operation", {"userId": True}, EntryEvent(UNLOCKED, KEYCODE)),
        ("Keypad_unlock_operation", {"userId": 10**9}, EntryEvent(UNLOCKED, KEYCODE)),
        ("Keypad_unlock_operation", "0a03", EntryEvent(UNLOCKED, KEYCODE)),  # a Buffer, hex
        ("Manual_unlock_operation", None, EntryEvent(UNLOCKED, MANUAL)),
        ("Manual_lock_operation", None, EntryEvent(LOCKED, MANUAL)),
        ("RF_unlock_operation", None, EntryEvent(UNLOCKED, REMOTE)),
        ("RF_lock_operation", None, EntryEvent(LOCKED, REMOTE)),
        ("Auto_lock_locked_operation", None, EntryEvent(LOCKED, AUTOMATIC)),
        (
            "Manually_enter_user_access_code_exceeds_code_limit",
            None,
            EntryEvent(DENIED, KEYCODE),
        ),
        ("Unlock_by_RF_with_invalid_user_code", None, EntryEvent(DENIED, REMOTE)),
        ("Locked_by_RF_with_invalid_user_code", None, EntryEvent(DENIED, REMOTE)),
    ],
)
def test_access_control_events(key: str, value: object, expected: EntryEvent) -> None:
    assert event(key, value) == expected


def test_a_wrong_code_on_locks_that_report_it_as_tampering() -> None:
    assert event("Tampering_invalid_code", notification="Home_Security") == EntryEvent(
        DENIED, KEYCODE
    )


@pytest.mark.parametrize(
    "key", ["Lock_state", "New_user_code_added", "Manual_not_fully_locked_operation", "x"]
)
def test_other_notifications_are_no_door_operation(key: str) -> None:
    assert event(key, 11) is None
    assert event("Keypad_unlock_operation", notification="Home_Security") is None


def test_a_malformed_notification_is_refused() -> None:
    for payload in (b"not json", b"[1]", b"3"):
        with pytest.raises(PayloadError):
            notification_entry(ACCESS_CONTROL, "Keypad_unlock_operation", payload)


def test_the_door_lock_mode() -> None:
    def kind(value: object) -> EntryKind | None:
        return door_lock_kind(json.dumps(value_payload(value, NOW)))

    assert kind(255) is LOCKED
    assert all(kind(mode) is UNLOCKED for mode in (0, 1, 16, 17, 32, 33))
    assert kind(254) is None  # unknown
    assert kind("255") is None
    assert door_lock_kind(b'{"time": 1}') is None  # never read
    with pytest.raises(PayloadError):
        door_lock_kind(b"255")


def test_named_topics() -> None:
    topics = Topics.for_node("zwave", 2, "g", style="named")
    assert topics.notifications_filter == "zwave/nodeID_2/notification/endpoint_0/+/+"
    assert topics.door_lock_mode == "zwave/nodeID_2/door_lock/endpoint_0/currentMode"
    valueid = Topics.for_node("zwave", 2, "g", node_names=False)
    assert valueid.door_lock_mode == "zwave/2/98/0/currentMode"
    assert valueid.parse_notification_topic("zwave/2/113/0/Access_Control/Lock_state") == (
        ACCESS_CONTROL,
        "Lock_state",
    )
    assert valueid.parse_notification_topic("zwave/2/113/0/Access_Control") is None
    assert valueid.parse_notification_topic("zwave/3/113/0/Access_Control/x") is None


# -- the driver against the simulated lock ------------------------------------------------------


Rig = DriverRig[ZwaveJsUiDriver]


@pytest.fixture
async def rig(
    make_config: ConfigFactory, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    short_window(monkeypatch)
    config = zw_config(make_config)
    ready = driver_rig(config, broker, "zw", create_driver, lambda d: d.has_entry_events)
    async with ready as instance:
        yield instance


CONTROL = "lockgate-sim/zw/set"


async def test_a_keypad_unlock_names_the_slot_once(rig: Rig, probe: Probe) -> None:
    """The notification, then the Door Lock mode it leaves: one operation."""
    topics = rig.driver.topics
    await probe.subscribe(topics.keypad_unlock, topics.door_lock_mode)
    await probe.publish(CONTROL, {"enter": PIN})
    assert (await probe.next(topics.keypad_unlock))["value"] == {"userId": 1}
    modes = [(await probe.next(topics.door_lock_mode))["value"] for _ in range(2)]
    assert modes == [255, 0]  # retained, as it stood; then unsecured
    await rig.lock.publish_entry(EntryEvent(LOCKED, AUTOMATIC))
    await rig.lock.publish_entry(EntryEvent(UNLOCKED, MANUAL))
    await rig.lock.publish_entry(EntryEvent(LOCKED, REMOTE))
    assert await heard(rig.driver, rig.wakes, 4) == [
        EntryEvent(UNLOCKED, KEYCODE, 1),
        EntryEvent(LOCKED, AUTOMATIC),
        EntryEvent(UNLOCKED, MANUAL),
        EntryEvent(LOCKED, REMOTE),
    ]


async def test_named_topics_tell_the_same(
    make_config: ConfigFactory, broker: Broker, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_window(monkeypatch)
    config = zw_config(make_config, style="named")
    ready = driver_rig(config, broker, "zw", create_driver, lambda d: d.has_entry_events)
    async with ready as rig:
        node = "zwave/nodeID_5"
        keypad = f"{node}/notification/endpoint_0/Access_Control/Keypad_unlock_operation"
        mode = f"{node}/door_lock/endpoint_0/currentMode"
        await probe.subscribe(keypad, mode)
        await probe.publish(CONTROL, {"enter": PIN})
        assert (await probe.next(keypad))["value"] == {"userId": 1}
        await probe.next_where(mode, lambda m: m["value"] == 0)  # the operation is over
        await rig.lock.publish_entry(EntryEvent(LOCKED, UNKNOWN))  # the mode alone
        assert await heard(rig.driver, rig.wakes, 2) == [
            EntryEvent(UNLOCKED, KEYCODE, 1),
            EntryEvent(LOCKED, UNKNOWN),
        ]


async def test_a_wrong_pin_is_access_denied(rig: Rig, probe: Probe) -> None:
    topic = rig.driver.topics.notification(
        ACCESS_CONTROL, "Manually_enter_user_access_code_exceeds_code_limit"
    )
    await probe.subscribe(topic)
    await probe.publish(CONTROL, {"enter": "0000"})
    assert set(await probe.next(topic)) == {"time"}  # no parameters: no value
    assert await heard(rig.driver, rig.wakes, 1) == [EntryEvent(DENIED, KEYCODE)]


async def test_a_mode_change_alone_is_an_operation(rig: Rig) -> None:
    """Access Control has no automatic unlock; a lock that sends no notification at all
    changes its mode only: unknown method, told once no notification came."""
    await rig.lock.publish_entry(EntryEvent(UNLOCKED, AUTOMATIC))
    await rig.lock.publish_entry(EntryEvent(LOCKED, UNKNOWN))
    assert await heard(rig.driver, rig.wakes, 2) == [
        EntryEvent(UNLOCKED, UNKNOWN),
        EntryEvent(LOCKED, UNKNOWN),
    ]


async def test_a_dead_node_tells_nothing(rig: Rig, probe: Probe) -> None:
    await probe.publish(CONTROL, {"online": False})
    await rig.wakes.until(lambda: not rig.driver.online)
    await rig.lock.publish_entry(EntryEvent(UNLOCKED, MANUAL))  # nothing goes out
    await probe.publish(CONTROL, {"online": True})
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.lock.publish_entry(EntryEvent(LOCKED, MANUAL))
    assert await heard(rig.driver, rig.wakes, 1) == [EntryEvent(LOCKED, MANUAL)]


# -- Z-Wave JS UI played by hand ------------------------------------------------------------------


async def test_old_news_and_garbage(
    make_config: ConfigFactory, broker: Broker, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retained notification is the broker's memory of an old event, not the door now: it
    tells that the node reports operations (an Access Control value), and nothing else; nor
    does the first mode seen, which is where the lock stands. Garbage is ignored."""
    short_window(monkeypatch)
    config = zw_config(make_config)
    session = session_for(broker, "gateway")
    driver = create_driver(device_of(config), session, config.timing)
    topics = driver.topics
    await probe.publish(topics.door_lock_mode, value_payload(255, NOW), retain=True)
    await probe.publish(topics.keypad_unlock, notification_payload(NOW, {"userId": 4}), retain=True)
    wakes = Wakes()
    await driver.start(wakes)
    assert not driver.has_entry_events
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.has_entry_events)
        await probe.publish(topics.notification("Home_Security", "Cover_status"), b"{}")
        await probe.publish(topics.door_lock_mode, b"\x00garbage")
        await probe.publish(topics.notification(ACCESS_CONTROL, "RF_lock_operation"), b"[")
        await probe.publish(topics.door_lock_mode, value_payload(0, NOW), retain=True)
        assert await heard(driver, wakes, 1) == [EntryEvent(UNLOCKED, UNKNOWN)]
