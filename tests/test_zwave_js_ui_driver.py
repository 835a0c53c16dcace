"""The ``zwave_js_ui`` driver against the simulated lock on a real broker (reads, writes, refusals,
an offline gateway, masked codes, capacity, named topics), end to end through the gateway, and
issue 8: where Z-Wave JS UI puts the node, what a setting that does not match gives, slots
unread at first contact, and a stack that crashes, is cut off or is still starting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

import drivers.zwave_js_ui.simulator  # registers the simulated lock
from drivers.base import CommandFailed, CommandTimedOut, Unreadable
from drivers.zwave_js_ui.config import ZwaveJsUiOptions
from drivers.zwave_js_ui.driver import ZwaveJsUiDriver, create_driver
from drivers.zwave_js_ui.protocol import Topics
from gateway.clock import ManualClock
from gateway.config import Config, ConfigError, Timing
from gateway.store import codes as code_store
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import (
    Recorder,
    barrier,
    device,
    error_codes,
    is_event,
    new_code,
    ok,
    running_simulator,
    running_site,
)
from tests.helpers import DriverRig, Probe, Wakes, driver_rig, running, session_for
from tests.zwave_js_ui_helpers import LATENCY, PIN, device_of, value, zw_config

# -- a rig: the simulated lock and the driver on a real broker ----------------------------------


Rig = DriverRig[ZwaveJsUiDriver]


def all_read(driver: ZwaveJsUiDriver) -> bool:
    table = driver.table
    return driver.online and table is not None and table.value(30) is not Unreadable.UNKNOWN


def rigged(
    config: Config, broker: Broker, timing: Timing | None = None
) -> AbstractAsyncContextManager[Rig]:
    return driver_rig(config, broker, "zw", create_driver, all_read, timing)


@pytest.fixture
async def rig(make_config: ConfigFactory, broker: Broker) -> AsyncIterator[Rig]:
    async with rigged(zw_config(make_config), broker) as instance:
        yield instance


async def test_set_clear_read(rig: Rig) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rig.driver.set_code(3, "0123")  # leading zero kept: sent as a string
    assert loop.time() - started >= LATENCY  # only once the read-back came
    assert rig.lock.slots[3] == "0123"
    assert value(rig.driver, 3) == "0123"
    await rig.driver.clear_slot(3)
    assert 3 not in rig.lock.slots
    assert value(rig.driver, 3) is None
    rig.lock.slots[5] = "5555"  # changed without telling anyone
    table = await rig.driver.read()
    assert table.value(5) == "5555"
    assert table.value(1) == PIN
    assert table == rig.driver.table


async def test_ignored_write_is_not_applied(rig: Rig) -> None:
    await rig.lock.control({"ignore_writes_next": 1})
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "not_applied"
    assert (await rig.driver.read()).value(2) is None


async def test_applied_silently_times_out_but_read_shows_it(rig: Rig) -> None:
    await rig.lock.control({"apply_silently_next": 1})
    with pytest.raises(CommandTimedOut):
        await rig.driver.set_code(2, "2222")
    assert (await rig.driver.read()).value(2) == "2222"


async def test_refusals_before_sending(rig: Rig) -> None:
    for slot, code, reason in (
        (31, "1234", "slot_out_of_range"),
        (2, "12", "invalid_code"),
        (2, "12a4", "invalid_code"),
        (2, PIN, "duplicate_code"),
    ):
        with pytest.raises(CommandFailed) as caught:
            await rig.driver.set_code(slot, code)
        assert caught.value.reason == reason


async def test_keypad_change_wakes(rig: Rig, probe: Probe) -> None:
    woken = rig.wakes.count
    await probe.publish(rig.lock.control_topics.set, {"keypad": {"slot": 4, "code": "4444"}})
    await rig.wakes.until(lambda: value(rig.driver, 4) == "4444")
    assert rig.wakes.count > woken


async def test_gateway_down_is_offline(rig: Rig, probe: Probe) -> None:
    await probe.publish(rig.driver.topics.gateway_status, {"value": False}, retain=True)
    await rig.wakes.until(lambda: not rig.driver.online)
    await probe.publish(rig.driver.topics.gateway_status, {"value": True}, retain=True)
    await rig.wakes.until(lambda: rig.driver.online)


async def test_masked_codes_are_occupied(rig: Rig) -> None:
    # The config allows expose_pin for zigbee2mqtt only: switch the lock to masking by hand.
    rig.lock.spec = dataclasses.replace(rig.lock.spec, expose_pin=False)
    await rig.lock.publish_table()
    await rig.wakes.until(lambda: value(rig.driver, 1) is Unreadable.OCCUPIED)
    assert (await rig.driver.read()).value(1) is Unreadable.OCCUPIED
    assert value(rig.driver, 2) is None
    # A set read back masked is the set, not a different code.
    await rig.driver.set_code(2, "2222")
    assert rig.lock.slots[2] == "2222"
    assert value(rig.driver, 2) is Unreadable.OCCUPIED
    await rig.driver.clear_slot(2)
    assert value(rig.driver, 2) is None


async def test_capacity_from_the_lock(make_config: ConfigFactory, broker: Broker) -> None:
    config = zw_config(make_config, slots=None)
    async with rigged(config, broker) as rig:
        table = await rig.driver.read()
        assert table.capacity == 30  # getUsersCount, the simulator's default_slots
        assert table.value(1) == PIN


async def test_named_topics(make_config: ConfigFactory, broker: Broker) -> None:
    config = zw_config(make_config, style="named")
    async with rigged(config, broker) as rig:
        assert "/user_code/endpoint_0/" in rig.driver.topics.user_code(1)
        await rig.driver.set_code(2, "2468")
        assert rig.lock.slots[2] == "2468"
        await rig.driver.clear_slot(2)
        assert (await rig.driver.read()).value(2) is None


# -- end to end ----------------------------------------------------------------------------------


async def test_a_code_created_through_the_api_lands_in_the_slot(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "zw",
                "name": "Z-Wave door",
                "driver": "zwave_js_ui",
                "node_id": 5,
                "slots": 30,
            }
        ],
    )
    async with running_site(config) as site:
        await new_code(site, "4826", device_id="zw", name="Gus")
        await barrier(site)
        assert site.lock("zw").slots == {1: "4826"}


# -- issue 8: where Z-Wave JS UI puts the node, and what a setting that does not match gives ----


@pytest.mark.parametrize(
    ("options", "user_code", "node_status"),
    [
        ({"node_names": False}, "zwave/2/99/0/userCode/1", "zwave/2/status"),
        ({}, "zwave/nodeID_2/99/0/userCode/1", "zwave/nodeID_2/status"),
        (
            {"node_name": "Front door"},
            "zwave/Front_door/99/0/userCode/1",
            "zwave/Front_door/status",
        ),
        # Named topics carry the name or nodeID_n whatever "use node names" says.
        (
            {"style": "named", "node_names": False},
            "zwave/nodeID_2/user_code/endpoint_0/userCode/1",
            "zwave/nodeID_2/status",
        ),
        # "Ignore location" off: the location is a level (or two) before the node's.
        (
            {"node_names": False, "location": "Ground floor"},
            "zwave/Ground_floor/2/99/0/userCode/1",
            "zwave/Ground_floor/2/status",
        ),
        (
            {"style": "named", "node_name": "Front door!", "location": "Flat 3/Hall"},
            "zwave/Flat_3/Hall/Front_door/user_code/endpoint_0/userCode/1",
            "zwave/Flat_3/Hall/Front_door/status",
        ),
    ],
)
def test_topics_follow_z_wave_js_ui_settings(
    options: dict[str, Any], user_code: str, node_status: str
) -> None:
    """Z-Wave JS UI's Gateway.nodeTopic/valueTopic, names and locations cleaned as its
    sanitizeTopic does (spaces to _, other characters dropped, / kept)."""
    topics = Topics.for_node("zwave", 2, "zwtest", **options)
    assert topics.user_code(1) == user_code
    assert topics.node_status == node_status
    assert topics.parse_value_topic(user_code) == ("userCode", 1)
    assert topics.gateway_status == "zwave/_CLIENTS/ZWAVE_GATEWAY-zwtest/status"  # no location


def test_node_names_and_location_options(make_config: ConfigFactory) -> None:
    config = zw_config(make_config, node_names=False, location="Ground floor")
    topics = device_of(config).options
    assert isinstance(topics, ZwaveJsUiOptions)
    assert topics.topics().user_code(1) == "zwave/Ground_floor/5/99/0/userCode/1"
    with pytest.raises(ConfigError) as caught:
        zw_config(make_config, node_names=False, node_name="front")
    assert caught.value.problems == [
        "devices[0].node_name: unused with node_names false (ValueID topics then carry the bare"
        " node id); leave it out, or turn on node names in Z-Wave JS UI"
    ]
    with pytest.raises(ConfigError, match=r"devices\[0\]\.node_names: must be true or false"):
        zw_config(make_config, node_names="no")
    with pytest.raises(ConfigError, match=r"devices\[0\]\.location: must not contain the MQTT"):
        zw_config(make_config, location="a/+/b")


@pytest.mark.parametrize(
    "options",
    [
        {"node_names": False},
        {"node_names": False, "location": "Ground floor"},
        {"style": "named", "node_name": "Front door", "location": "Flat 3/Hall"},
    ],
)
async def test_every_topic_form_on_a_real_broker(
    options: dict[str, Any], make_config: ConfigFactory, broker: Broker
) -> None:
    """The simulated Z-Wave JS UI publishes the node where the real one would, and the driver
    configured the same way finds it there."""
    async with rigged(zw_config(make_config, **options), broker) as rig:
        assert isinstance(rig.lock, drivers.zwave_js_ui.simulator.SimulatedZwaveJsUiLock)
        assert rig.driver.topics == rig.lock.topics
        await rig.driver.set_code(2, "2468")
        assert rig.lock.slots[2] == "2468"
        await rig.driver.clear_slot(2)
        assert (await rig.driver.read()).value(2) is None
        assert rig.driver.not_found is None


async def test_not_found_names_the_settings_to_check(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """Before Z-Wave JS UI appears at all, then once it has but the node has not, then found."""
    config = zw_config(make_config)
    session = session_for(broker, "gateway")
    driver = create_driver(device_of(config), session, config.timing)
    wakes = Wakes()
    await driver.start(wakes)
    assert driver.not_found is None  # not connected: nothing to judge
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.not_found is not None)
        assert "base_topic and gateway_name" in (driver.not_found or "")
        await probe.publish(driver.topics.gateway_status, {"value": True}, retain=True)
        await wakes.until(lambda: "node_names" in (driver.not_found or ""))
        assert "zwave/nodeID_5/status" in (driver.not_found or "")
        await probe.publish(driver.topics.node_status, {"value": True, "status": "Alive"})
        await wakes.until(lambda: driver.not_found is None)


async def test_a_lock_not_found_for_a_minute_says_so_once(
    make_config: ConfigFactory, probe: Probe, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8 (10): Z-Wave JS UI with "use node names" off, lockgate told otherwise. A minute
    on the gateway's clock later: one warning in the log and a device error naming the
    settings; never silence."""
    actual = zw_config(make_config, node_names=False)  # where the stack publishes the node
    configured = zw_config(make_config)  # where lockgate looks: nodeID_5
    clock = ManualClock()
    async with (
        running_simulator(actual),
        running_site(configured, clock, simulate=False) as site,
    ):
        assert "device_not_found_on_stack" not in error_codes(await device(site, "zw"))
        await site.advance(59)
        assert "device_not_found_on_stack" not in error_codes(await device(site, "zw"))
        capsys.readouterr()
        await site.advance(1)
        found = await device(site, "zw")
        error = next(e for e in found["errors"] if e["error_code"] == "device_not_found_on_stack")
        assert error["message"].startswith(
            "The lock has not appeared where its configuration says its hub publishes it: "
            "Z-Wave JS UI is on the broker but node 5 has not appeared at zwave/nodeID_5/status"
        )
        assert "node_names" in error["message"]
        await site.advance(3600)
        warned = [
            line
            for line in log_lines(capsys.readouterr().out)
            if line["event"] == "reconciler.device_not_found"
        ]
        assert len(warned) == 1
        assert warned[0]["level"] == "warning"
        assert warned[0]["device_id"] == "zw"
        assert "node_names" in warned[0]["check"]
        # The node shows up where lockgate looks (node names turned on): the error goes.
        events = await Recorder.events(site)
        await probe.publish("zwave/nodeID_5/status", {"value": True, "status": "Alive"})
        await events.wait(is_event("device.error_cleared", error_code="device_not_found_on_stack"))
        assert "device_not_found_on_stack" not in error_codes(await device(site, "zw"))


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_unread_slots_at_first_contact_do_not_empty_the_pool(
    make_config: ConfigFactory,
) -> None:
    """Issue 8 (11): zwave-js reads user codes only when asked, so at first contact most slots
    are unread. Unread is not full: no empty pool error; the backups go on once read."""
    config = zw_config(make_config, latency=0.002, backup_pool={"enabled": True, "size": 3})
    async with running_simulator(config) as sim:
        lock = sim.lock("zw")
        await lock.control({"keypad": {"slot": 2, "code": "2222"}})
        await lock.control({"keypad": {"slot": 3, "code": "3333"}})
        await lock.control({"unread": list(range(4, 31))})  # 27 free slots, none read yet
        async with running_site(config, simulate=False) as site:
            raised = ok(
                await site.api.call(
                    "events/list",
                    since="2000-01-01T00:00:00Z",
                    limit=1000,
                    device_id="zw",
                    event_types=["device.error_added", "device.warning_added"],
                )
            )["events"]
            pool = {"empty_backup_access_code_pool", "partial_backup_access_code_pool"}
            assert not {e.get("error_code") or e.get("warning_code") for e in raised} & pool
            assert len(lock.slots) == 6  # the three codes found, the three backups
            assert not error_codes(await device(site, "zw"))


async def test_a_crashed_stack_is_offline_until_its_driver_is_ready(rig: Rig, probe: Probe) -> None:
    """Issue 8 (12): killed hard, Z-Wave JS UI's will only marks the gateway down; its driver
    and node statuses from before stay retained. Back up, it is not ready for ~1.7 s."""
    info = rig.driver.topics.api_reply("getInfo")
    await probe.subscribe(info)
    await rig.lock.control({"stack": "crash"})
    await rig.wakes.until(lambda: not rig.driver.online)
    await rig.lock.control({"stack": "start"})
    # The driver asks whether Z-Wave JS UI's driver is ready: not yet.
    assert (await probe.next(info))["message"] == "Z-Wave client not connected"
    assert not rig.driver.online  # the retained `driver/status true` and `Alive` are stale
    with pytest.raises(CommandFailed) as caught:
        await rig.driver.set_code(2, "2222")
    assert caught.value.reason == "offline"
    await rig.lock.control({"stack": "ready"})
    await rig.wakes.until(lambda: rig.driver.online)
    await rig.driver.set_code(2, "2222")
    assert rig.lock.slots[2] == "2222"


async def test_a_stack_only_cut_off_from_the_broker_is_back_at_once(rig: Rig, probe: Probe) -> None:
    """Its will, then its status back without a restart: nothing else is republished, so the
    statuses from before stand once the API shows its driver is ready."""
    gateway = rig.driver.topics.gateway_status
    await probe.publish(gateway, {"value": False}, retain=True)
    await rig.wakes.until(lambda: not rig.driver.online)
    await probe.publish(gateway, {"value": True}, retain=True)
    await rig.wakes.until(lambda: rig.driver.online)


async def test_client_not_connected_is_offline(make_config: ConfigFactory, broker: Broker) -> None:
    """A gateway that connects while Z-Wave JS UI is starting finds the gateway up and the old
    statuses: its first call is answered "Z-Wave client not connected", which means offline."""
    config = zw_config(make_config)
    async with rigged(config, broker) as rig:
        await rig.lock.control({"stack": "crash"})
        await rig.lock.control({"stack": "start"})
        session = session_for(broker, "late-gateway")
        late = create_driver(device_of(config), session, config.timing)
        wakes = Wakes()
        await late.start(wakes)
        async with running(("test-late-mqtt", session.run())):
            await wakes.until(lambda: late.online)
            with pytest.raises(CommandFailed) as caught:
                await late.read([2])
            assert caught.value.reason == "offline"
            assert not isinstance(caught.value, CommandTimedOut)
            assert not late.online
            await rig.lock.control({"stack": "ready"})
            await wakes.until(lambda: late.online)
            assert (await late.read([2])).value(2) is None


async def test_nothing_is_sent_nor_counted_while_the_stack_starts(
    make_config: ConfigFactory, probe: Probe
) -> None:
    """Through the gateway: a code created while Z-Wave JS UI is down waits, sends nothing
    during its start-up and is not counted as a failed attempt, then goes on once ready."""
    config = zw_config(make_config, latency=0.002)
    async with running_site(config) as site:
        lock = site.lock("zw")
        events = await Recorder.events(site)
        await lock.control({"stack": "crash"})
        await events.wait(is_event("device.disconnected", device_id="zw"))
        code_id = await new_code(site, "4826", device_id="zw", name="Gus")
        await probe.subscribe("zwave/#")
        await lock.control({"stack": "start"})
        info = "zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-js-ui/api/getInfo"
        assert (await probe.next(info))["message"] == "Z-Wave client not connected"
        await site.settled()
        sent = [t for t, _ in probe.history if t.endswith("/set") and "getInfo" not in t]
        assert sent == []
        assert site.gateway.store is not None
        retry = await site.gateway.store.read(lambda tx: code_store.retry_state(tx, "zw"))
        attempts, _, _ = retry[code_id]
        assert attempts == 0
        await lock.control({"stack": "ready"})
        await events.wait(is_event("access_code.set_on_device", access_code_id=code_id))
        assert "4826" in lock.slots.values()
