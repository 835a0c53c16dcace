"""Entry events and one-time codes through the whole gateway on the Zigbee2MQTT and Z-Wave JS UI
locks, as their stacks report them (played by the simulator): the native lock's story
(tests/test_entry_events.py) on every driver that hears who opened the door."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.config import Config
from tests import zigbee2mqtt_helpers, zwave_js_ui_helpers
from tests.conftest import ConfigFactory
from tests.harness import Recorder, barrier, create, device, get_code, is_event, running_site

NEW_PIN = "5930"

#: driver -> (its site, its device id, the PIN already in its slot 1 at start)
STACKS: dict[str, tuple[Callable[[ConfigFactory], Config], str, str]] = {
    "zigbee2mqtt": (
        zigbee2mqtt_helpers.zb_config,
        zigbee2mqtt_helpers.ZB,
        zigbee2mqtt_helpers.PIN,
    ),
    "zwave_js_ui": (
        zwave_js_ui_helpers.zw_config,
        "zw",
        zwave_js_ui_helpers.PIN,
    ),
}


@pytest.mark.parametrize("driver", sorted(STACKS))
async def test_who_opened_the_door_and_a_one_time_code(
    make_config: ConfigFactory, driver: str
) -> None:
    site_of, device_id, unmanaged_pin = STACKS[driver]
    config = site_of(make_config)
    async with running_site(config) as site:
        events = await Recorder.events(site)
        lock = site.lock(device_id)
        # The stack says from the start that this lock reports operations.
        assert (await device(site, device_id))["properties"]["has_native_entry_events"] is True

        guest = await create(site, device_id=device_id, code=NEW_PIN, name="Guest")
        await events.wait(
            is_event("access_code.set_on_device", access_code_id=guest["access_code_id"])
        )
        await barrier(site)
        slot = (await get_code(site, guest["access_code_id"]))["slot"]

        await lock.control({"enter": NEW_PIN})
        (opened,) = await events.wait(
            is_event("lock.unlocked", device_id=device_id, method="keycode", slot=slot)
        )
        assert opened["access_code_id"] == guest["access_code_id"]
        assert opened["access_code_is_managed"] is True

        # A PIN someone set at the lock itself: unlocked, by no managed code.
        await lock.control({"enter": unmanaged_pin})
        (other,) = await events.wait(
            is_event("lock.unlocked", device_id=device_id, access_code_is_managed=False)
        )
        assert other["access_code_id"] is None

        # A wrong PIN is refused, naming nobody.
        await lock.control({"enter": "0000"})
        (denied,) = await events.wait(is_event("lock.access_denied", device_id=device_id))
        assert denied["access_code_id"] is None

        # A one-time code goes after its first unlock.
        once = await create(
            site, device_id=device_id, code="7319", name="Courier", is_one_time_use=True
        )
        cid = once["access_code_id"]
        await events.wait(is_event("access_code.set_on_device", access_code_id=cid))
        await barrier(site)
        await lock.control({"enter": "7319"})
        await events.wait(is_event("lock.unlocked", access_code_id=cid))
        await events.wait(is_event("access_code.deleted", access_code_id=cid), timeout=15)
        await site.settled()
        assert "7319" not in lock.slots.values()
