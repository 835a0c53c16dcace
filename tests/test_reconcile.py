"""Access codes reconciled onto locks: what lands in the slots, statuses, problems, events, time.

Everything runs for real: mosquitto, the gateway and the simulated locks in the test's loop, with
a ``ManualClock`` for schedules. Faults are switched on the simulated lock exactly as the control
topic would. Time-outs of lock commands are real (``command_timeout``), so tests that need a
silent lock use a short one; everything else waits on events, never on the clock of the wall.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import aiomqtt

from drivers.base import SlotTable
from gateway.config import Config
from gateway.model import Json
from gateway.mqtt import build_client
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
    error_codes,
    get_code,
    is_event,
    kinds,
    new_code,
    payload_json,
    running_site,
    warning_codes,
    window,
)
from tests.helpers import eventually

FAST_TIMEOUT = {"command_timeout": "300ms"}


def tries(attempts: int) -> dict[str, Any]:
    """Timing for ``attempts`` tries of each lock command, and no delay warnings in the events."""
    return {"max_attempts": attempts, "delay_warning_after": "1h"}


#: The events about a code that went on its lock (and stayed), in order.
SET_ONCE = ["access_code.created", "access_code.set_on_device"]
#: ... that went on and came off again.
ON_AND_OFF = [*SET_ONCE, "access_code.removed_from_device", "access_code.deleted"]
#: ... whose first writes failed before it landed.
SET_AFTER_FAILING = [
    "access_code.created",
    "access_code.failed_to_set_on_device",
    "access_code.set_on_device",
]
#: ... that came off its lock only on a second try.
REMOVED_ON_RETRY = [
    *SET_ONCE,
    "access_code.failed_to_remove_from_device",
    "access_code.removed_from_device",
    "access_code.deleted",
]


# -- helpers ----------------------------------------------------------------------------------


async def settled_code(site: Site, pin: str, device_id: str = "front_door", **params: Any) -> str:
    """:func:`new_code`, then the gateway settled: the code is on its lock, unless its window or
    the lock keeps it off."""
    cid = await new_code(site, pin, device_id, **params)
    await site.settled()
    return cid


def sets(commands: Recorder, slot: int | None = None) -> list[Json]:
    return [c for c in commands.pull() if c["op"] == "set" and slot in (None, c["slot"])]


def clears(commands: Recorder) -> list[Json]:
    return [c for c in commands.pull() if c["op"] == "clear"]


async def assert_set(site: Site, cid: str) -> Json:
    """The code is ``set``, with no errors; what the gateway says of it."""
    code = await get_code(site, cid)
    assert (code["status"], code["errors"]) == ("set", []), code
    return code


async def delete_refused(site: Site, cid: str, refusals: int) -> None:
    """Delete the code ``cid`` while the front door refuses its next ``refusals`` commands."""
    await site.lock("front_door").control({"fail_next": refusals})
    assert (await site.api.call("access_codes/delete", access_code_id=cid))["ok"] is True
    await site.settled()


async def gone(site: Site, access_code_id: str) -> bool:
    reply = await site.api.call("access_codes/get", access_code_id=access_code_id)
    return reply["ok"] is False and reply["error"]["type"] == "access_code_not_found"


async def reported(site: Site, device_id: str, predicate: Callable[[SlotTable], bool]) -> None:
    """Until the gateway has seen the lock report a table that satisfies ``predicate`` (the
    gateway's own view of the lock, not the simulator's), and has acted on it."""
    assert site.gateway.reconciler is not None
    driver = site.gateway.reconciler.workers[device_id].driver
    await eventually(lambda: driver.table is not None and predicate(driver.table))
    await site.settled()


async def online(site: Site, events: Recorder, device_id: str, value: bool) -> None:
    """Switch the simulated lock on or off and wait until the gateway has noticed."""
    noticed = is_event("device.connected" if value else "device.disconnected", device_id=device_id)
    before = events.count(noticed)
    await site.lock(device_id).control({"online": value})
    await events.wait(noticed, count=before + 1)
    await site.settled()


async def typed_at_keypad(site: Site, events: Recorder, cid: str, pin: str | None) -> None:
    """Put ``pin`` (None: nothing) into slot 1 of the front door at its keypad, over the code
    ``cid``, and wait until the gateway has reported that change to the code."""
    changed = is_event("access_code.modified_external_to_gateway", access_code_id=cid)
    before = events.count(changed)
    await site.lock("front_door").control({"keypad": {"slot": 1, "code": pin}})
    await events.wait(changed, count=before + 1)


# -- the plain life of a code -----------------------------------------------------------------


async def test_ongoing_code_goes_on_and_comes_off(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        cid = await new_code(site, "4826", name="Gus")
        await barrier(site)
        got = await get_code(site, cid)
        assert got["status"] == "set"
        assert got["slot"] == 1
        assert (got["errors"], got["warnings"]) == ([], [])
        assert site.lock("front_door").slots == {1: "4826"}
        assert site.lock("back_door").slots == {}
        assert [(c["slot"], c["code"]) for c in sets(commands)] == [(1, "4826")]
        set_event = (await events.wait(is_event("access_code.set_on_device")))[0]
        assert set_event["code"] == "4826"
        assert set_event["device_id"] == "front_door"
        assert kinds(events, cid) == SET_ONCE

        reply = await site.api.call("access_codes/delete", access_code_id=cid)
        assert reply["ok"] is True
        await barrier(site)
        assert site.lock("front_door").slots == {}
        assert [c["slot"] for c in clears(commands)] == [1]
        assert await gone(site, cid)
        assert kinds(events, cid) == ON_AND_OFF
        for event in events.pull():
            assert set(event) >= {"event_id", "event_type", "occurred_at", "device_id"}


async def test_status_unset_setting_set_removing_gone(make_config: ConfigFactory) -> None:
    """Each status seen as it happens: a silent lock holds the code in ``setting`` and in
    ``removing`` long enough to look."""
    config = make_config(timing={**FAST_TIMEOUT, "delay_warning_after": "1h"})
    async with running_site(config) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "3917", **window(site, 60, 120))
        before = await get_code(site, cid)
        assert (before["status"], before["slot"], before["errors"]) == ("unset", None, [])
        assert lock.slots == {}
        await site.advance(59)
        assert (await get_code(site, cid))["status"] == "unset"

        await lock.control({"silent": True})
        await site.advance(1)  # the window opens; the write goes unanswered
        setting = await get_code(site, cid)
        assert setting["status"] == "setting"
        assert setting["slot"] == 1
        assert lock.slots == {}

        await lock.control({"silent": False})
        await site.advance(5)  # the read-back after the unknown outcome, then the write
        now_set = await get_code(site, cid)
        assert (now_set["status"], now_set["slot"], now_set["errors"]) == ("set", 1, [])
        assert lock.slots == {1: "3917"}

        await lock.control({"silent": True})
        await site.advance(54)
        assert (await get_code(site, cid))["status"] == "set"
        await site.advance(1)  # ends_at: the clear goes unanswered
        removing = await get_code(site, cid)
        assert removing["status"] == "removing"
        assert lock.slots == {1: "3917"}

        await lock.control({"silent": False})
        await site.advance(5)
        assert lock.slots == {}
        assert await gone(site, cid)
        await barrier(site)
        # The silent spells also failed the unanswered commands (reported, then cleared).
        assert [k for k in kinds(events, cid) if "failed_to" not in k] == ON_AND_OFF


async def test_window_with_program_ahead(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing={"program_ahead": "30s"})) as site:
        lock = site.lock("front_door")
        cid = await new_code(site, "6021", **window(site, 3600, 7200))
        ongoing = await new_code(site, "6022")
        await site.settled()
        assert lock.slots == {1: "6022"}
        await site.advance(3569)
        assert (await get_code(site, cid))["status"] == "unset"
        assert "6021" not in lock.slots.values()
        await site.advance(1)  # starts_at - program_ahead
        got = await get_code(site, cid)
        assert got["status"] == "set"
        assert lock.slots == {1: "6022", 2: "6021"}
        await site.advance(3629)
        assert (await get_code(site, cid))["status"] == "set"
        await site.advance(1)  # ends_at: no program_ahead on the way out
        assert lock.slots == {1: "6022"}
        assert await gone(site, cid)
        assert (await get_code(site, ongoing))["status"] == "set"


async def test_a_window_in_one_jump(make_config: ConfigFactory) -> None:
    """The clock jumps over a whole window (a gateway that was stopped): never programmed."""
    async with running_site(make_config()) as site:
        commands = await Recorder.commands(site)
        events = await Recorder.events(site)
        cid = await settled_code(site, "8802", **window(site, 60, 120))
        site.manual_clock.advance(600)
        await site.advance(0)
        assert await gone(site, cid)
        await barrier(site)
        assert sets(commands) == []
        assert site.lock("front_door").slots == {}
        assert "access_code.set_on_device" not in kinds(events, cid)


# -- failures, retries, slowness --------------------------------------------------------------


async def test_failed_to_set_after_max_attempts_then_cleared(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing=tries(3))) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        await lock.control({"fail_next": 4, "error": "busy"})
        cid = await new_code(site, "5096")
        await barrier(site)
        failed = await get_code(site, cid)
        assert failed["status"] == "setting"
        assert error_codes(failed) == {"failed_to_set_on_device"}
        assert lock.slots == {}
        assert len(sets(commands)) == 3  # max_attempts, then it waits
        event = (await events.wait(is_event("access_code.failed_to_set_on_device")))[0]
        assert event["access_code_id"] == cid
        assert [e["error_code"] for e in event["errors"]] == ["failed_to_set_on_device"]

        # Backoff: 5 s after the third failure, then 10 s.
        await site.advance(4.9)
        assert len(sets(commands)) == 3
        await site.advance(0.1)
        await barrier(site)
        assert len(sets(commands)) == 4  # refused again (the fourth fail_next)
        still = await get_code(site, cid)
        assert (still["status"], error_codes(still)) == ("setting", {"failed_to_set_on_device"})
        await site.advance(9.9)
        await barrier(site)
        assert len(sets(commands)) == 4
        await site.advance(0.1)
        await barrier(site)
        assert len(sets(commands)) == 5
        landed = await assert_set(site, cid)
        assert lock.slots == {landed["slot"]: "5096"}
        assert kinds(events, cid) == SET_AFTER_FAILING
        # Once set, a later failure starts counting from zero again.
        await lock.control({"fail_next": 2})
        await site.api.call("access_codes/update", access_code_id=cid, code="5097")
        await site.settled()
        await assert_set(site, cid)
        assert lock.slots == {landed["slot"]: "5097"}


async def test_failed_to_remove_after_max_attempts_then_cleared(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config(timing=tries(2))) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "7310", **window(site, -60, 60))
        assert lock.slots == {1: "7310"}
        await lock.control({"fail_next": 2, "error": "internal"})
        await site.advance(60)
        await barrier(site)
        failed = await get_code(site, cid)
        assert failed["status"] == "removing"
        assert error_codes(failed) == {"failed_to_remove_from_device"}
        assert lock.slots == {1: "7310"}
        assert len(clears(commands)) == 2
        await events.wait(is_event("access_code.failed_to_remove_from_device", access_code_id=cid))
        await site.advance(5)
        assert lock.slots == {}
        assert await gone(site, cid)
        await barrier(site)
        assert len(clears(commands)) == 3
        # (What follows ``deleted`` is test_nothing_is_said_about_a_code_after_it_is_gone's.)
        assert kinds(events, cid)[:5] == REMOVED_ON_RETRY


async def test_delete_refused_by_the_lock_is_retried_and_reported(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config(timing=tries(2))) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "7311")
        await delete_refused(site, cid, 2)
        assert lock.slots == {1: "7311"}
        await events.wait(is_event("access_code.failed_to_remove_from_device", access_code_id=cid))
        await site.advance(5)
        assert lock.slots == {}
        await barrier(site)
        assert kinds(events, cid)[:5] == REMOVED_ON_RETRY


async def test_nothing_is_said_about_a_code_after_it_is_gone(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing=tries(1))) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "7312")
        await delete_refused(site, cid, 1)
        await site.advance(5)
        assert lock.slots == {}
        await barrier(site)
        assert kinds(events, cid)[-1] == "access_code.deleted"
        assert site.gateway.store is not None
        left = await site.gateway.store.fetchall(
            "SELECT code FROM problems WHERE owner_id = ?", (cid,)
        )
        assert [r["code"] for r in left] == []


async def test_a_deleted_code_is_removing_until_it_is_off_the_lock(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config(timing=tries(2))) as site:
        lock = site.lock("front_door")
        cid = await settled_code(site, "7313")
        await delete_refused(site, cid, 2)
        assert lock.slots == {1: "7313"}
        removing = await get_code(site, cid)
        assert removing["status"] == "removing"
        assert error_codes(removing) == {"failed_to_remove_from_device"}
        listed = await site.api.call("access_codes/list", device_id="front_door")
        assert [(c["access_code_id"], c["status"]) for c in listed["access_codes"]] == [
            (cid, "removing")
        ]
        # Its PIN is still on the lock: not free for another code yet.
        reply = await site.api.call("access_codes/create", device_id="front_door", code="7313")
        assert reply["error"]["type"] == "duplicate_access_code"
        await site.advance(5)
        assert await gone(site, cid)
        listed = await site.api.call("access_codes/list", device_id="front_door")
        assert listed["access_codes"] == []


async def test_delay_in_setting_raised_and_cleared(make_config: ConfigFactory) -> None:
    config = make_config(timing={**FAST_TIMEOUT, "delay_warning_after": "30s"})
    async with running_site(config) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        await lock.control({"silent": True})
        cid = await settled_code(site, "2715")
        assert (await get_code(site, cid))["warnings"] == []
        await site.advance(29)
        early = await get_code(site, cid)
        assert (early["status"], early["warnings"]) == ("setting", [])
        await site.advance(1)
        late = await get_code(site, cid)
        assert late["status"] == "setting"
        assert warning_codes(late) == {"delay_in_setting_on_device"}
        assert late["warnings"][0]["message"]
        await events.wait(is_event("access_code.delay_in_setting_on_device", access_code_id=cid))
        await lock.control({"silent": False})
        await site.advance(60)  # past any read-back backoff
        done = await get_code(site, cid)
        assert (done["status"], done["warnings"]) == ("set", [])
        assert lock.slots == {1: "2715"}
        await barrier(site)
        # A silent lock also fails the code's writes (a command answered by nothing failed).
        seen = kinds(events, cid)
        assert "access_code.failed_to_set_on_device" in seen
        assert [k for k in seen if "failed_to" not in k] == [
            "access_code.created",
            "access_code.delay_in_setting_on_device",
            "access_code.set_on_device",
        ]


async def test_delay_in_removing_raised_and_cleared(make_config: ConfigFactory) -> None:
    config = make_config(timing={**FAST_TIMEOUT, "delay_warning_after": "30s"})
    async with running_site(config) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "2716", **window(site, -10, 10))
        await lock.control({"silent": True})
        await site.advance(10)
        assert (await get_code(site, cid))["status"] == "removing"
        await site.advance(30)
        late = await get_code(site, cid)
        assert late["status"] == "removing"
        assert warning_codes(late) == {"delay_in_removing_from_device"}
        await events.wait(is_event("access_code.delay_in_removing_from_device", access_code_id=cid))
        await lock.control({"silent": False})
        await site.advance(60)
        assert lock.slots == {}
        assert await gone(site, cid)
        await barrier(site)
        seen = kinds(events, cid)
        assert "access_code.failed_to_remove_from_device" in seen
        assert [k for k in seen if "failed_to" not in k][:5] == [
            *SET_ONCE,
            "access_code.delay_in_removing_from_device",
            "access_code.removed_from_device",
            "access_code.deleted",
        ]


async def test_a_lock_that_never_answers_fails_the_code(make_config: ConfigFactory) -> None:
    """Contract 10: a command answered by nothing within command_timeout counts as failed."""
    async with running_site(make_config(timing={**FAST_TIMEOUT, **tries(2)})) as site:
        await site.lock("front_door").control({"silent": True})
        cid = await settled_code(site, "2717")
        for _ in range(3):  # well past every backoff
            await site.advance(600)
        stuck = await get_code(site, cid)
        assert stuck["status"] == "setting"
        assert "failed_to_set_on_device" in error_codes(stuck)


# -- an offline lock --------------------------------------------------------------------------


async def test_offline_lock_is_reported_and_catches_up(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        before = await settled_code(site, "1590")
        await online(site, events, "front_door", False)
        dev = await device(site, "front_door")
        assert dev["properties"]["online"] is False
        assert error_codes(dev) == {"device_disconnected"}
        await events.wait(
            is_event("device.error_added", device_id="front_door", error_code="device_disconnected")
        )
        # The code already on the lock: still set, and it says its lock is gone.
        old = await get_code(site, before)
        assert old["status"] == "set"
        assert error_codes(old) == {"device_disconnected"}
        assert set(old["errors"][0]) == {"error_code", "message", "created_at"}
        # The other lock is fine.
        assert (await device(site, "back_door"))["errors"] == []

        mid = await settled_code(site, "1591")
        waiting = await get_code(site, mid)
        assert waiting["status"] == "setting"
        assert error_codes(waiting) == {"failed_to_set_on_device", "device_disconnected"}
        await events.wait(is_event("access_code.failed_to_set_on_device", access_code_id=mid))
        assert lock.slots == {1: "1590"}

        await online(site, events, "front_door", True)
        await assert_set(site, mid)
        assert (await get_code(site, before))["errors"] == []
        assert lock.slots == {1: "1590", 2: "1591"}
        dev = await device(site, "front_door")
        assert (dev["properties"]["online"], dev["errors"]) == (True, [])
        await events.wait(
            is_event(
                "device.error_cleared", device_id="front_door", error_code="device_disconnected"
            )
        )
        await barrier(site)
        assert kinds(events, mid) == SET_AFTER_FAILING


async def test_a_window_that_starts_while_the_lock_is_offline(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "4417", **window(site, 60, 3600))
        await online(site, events, "front_door", False)
        assert (await get_code(site, cid))["status"] == "unset"
        assert "access_code.failed_to_set_on_device" not in kinds(events, cid)
        await site.advance(60)
        due = await get_code(site, cid)
        assert due["status"] == "setting"
        assert error_codes(due) == {"failed_to_set_on_device", "device_disconnected"}
        assert lock.slots == {}
        await online(site, events, "front_door", True)
        await assert_set(site, cid)
        assert lock.slots == {1: "4417"}


async def test_a_window_that_ends_while_the_lock_is_offline(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "4418", **window(site, -60, 60))
        assert lock.slots == {1: "4418"}
        await online(site, events, "front_door", False)
        await site.advance(60)
        ended = await get_code(site, cid)  # still on the lock: not gone until it is cleared
        assert ended["status"] == "removing"
        assert "device_disconnected" in error_codes(ended)
        assert lock.slots == {1: "4418"}
        await online(site, events, "front_door", True)
        assert lock.slots == {}
        assert await gone(site, cid)
        await barrier(site)
        # Delay warnings at a window's edge: test_no_delay_warning_when_a_window_opens_or_closes.
        assert [k for k in kinds(events, cid) if ".delay_in_" not in k][:4] == ON_AND_OFF


async def test_a_whole_window_while_the_lock_is_offline(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        cid = await settled_code(site, "4419", **window(site, 60, 120))
        await online(site, events, "front_door", False)
        await site.advance(60)
        await site.advance(60)
        assert await gone(site, cid)
        await online(site, events, "front_door", True)
        await barrier(site)
        assert sets(commands) == []  # a code whose window has passed is never programmed
        assert site.lock("front_door").slots == {}
        assert "access_code.set_on_device" not in kinds(events, cid)
        assert "access_code.removed_from_device" not in kinds(events, cid)


async def test_no_delay_warning_when_a_window_opens_or_closes(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing={"delay_warning_after": "5s"})) as site:
        events = await Recorder.events(site)
        cid = await settled_code(site, "4420", **window(site, 3600, 7200))
        await site.advance(3600)
        assert (await get_code(site, cid))["status"] == "set"
        await site.advance(3600)
        assert await gone(site, cid)
        await barrier(site)
        # Each step took no time at all on the gateway's clock: nothing was late.
        assert kinds(events, cid) == ON_AND_OFF


# -- changes made at the lock -----------------------------------------------------------------


async def test_keypad_change_is_undone(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "9021")
        assert lock.slots == {1: "9021"}

        await typed_at_keypad(site, events, cid, None)  # cleared at the lock
        await site.settled()
        assert lock.slots == {1: "9021"}  # restored
        restored = await get_code(site, cid)
        assert (restored["status"], restored["slot"], restored["errors"]) == ("set", 1, [])

        await typed_at_keypad(site, events, cid, "9999")  # changed at the lock
        await barrier(site)
        assert lock.slots == {1: "9021"}
        assert [c["code"] for c in sets(commands, slot=1)] == ["9021"] * 3
        assert kinds(events, cid) == [
            *SET_ONCE,
            "access_code.modified_external_to_gateway",
            "access_code.set_on_device",
            "access_code.modified_external_to_gateway",
            "access_code.set_on_device",
        ]
        assert (await get_code(site, cid))["code"] == "9021"


async def test_conflicting_external_modification_stays_until_restored(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config(timing=tries(2))) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "9022")
        await lock.control({"fail_next": 2})
        await typed_at_keypad(site, events, cid, "1111")
        await site.settled()
        conflict = await get_code(site, cid)
        assert "conflicting_external_modification" in error_codes(conflict)
        assert conflict["status"] == "setting"  # being put back
        assert lock.slots == {1: "1111"}
        await site.advance(5)
        await assert_set(site, cid)
        assert lock.slots == {1: "9022"}


async def test_allowed_external_modification_is_kept(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "9023", allow_external_modification=True)
        await typed_at_keypad(site, events, cid, "9024")
        await barrier(site)
        assert lock.slots == {1: "9024"}  # kept
        kept = await get_code(site, cid)
        assert warning_codes(kept) == {"external_modification_in_effect"}
        assert kept["errors"] == []
        assert kept["is_external_modification_allowed"] is True
        assert len(sets(commands)) == 1  # only the first programming
        assert kinds(events, cid) == [*SET_ONCE, "access_code.modified_external_to_gateway"]


async def test_allowed_external_modification_stays_kept(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "9025", allow_external_modification=True)
        await typed_at_keypad(site, events, cid, "9026")
        await site.settled()
        await site.advance(60)  # any later pass (a timer, another code, a resync)
        assert lock.slots == {1: "9026"}
        assert (await get_code(site, cid))["status"] == "set"

        await lock.control({"keypad": {"slot": 1, "code": None}})  # cleared: also kept
        await reported(site, "front_door", lambda t: t.value(1) is None)
        await barrier(site)
        assert lock.slots == {}
        assert len(sets(commands)) == 1
        assert warning_codes(await get_code(site, cid)) == {"external_modification_in_effect"}

        await lock.control({"keypad": {"slot": 1, "code": "9025"}})  # back as it was
        await reported(site, "front_door", lambda t: t.value(1) == "9025")
        back = await get_code(site, cid)
        assert (back["status"], back["warnings"], back["errors"]) == ("set", [], [])


async def test_duplicate_code_on_device_raised_and_cleared(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        cid = await new_code(site, "6655")
        other = await new_code(site, "6656")
        await site.settled()
        await lock.control({"keypad": {"slot": 7, "code": "6655"}})
        await reported(site, "front_door", lambda t: t.value(7) == "6655")
        dup = await get_code(site, cid)
        assert error_codes(dup) == {"duplicate_code_on_device"}
        assert dup["status"] == "set"
        assert (await get_code(site, other))["errors"] == []
        await barrier(site)
        assert all(c["slot"] != 7 for c in commands.pull())  # not the gateway's slot
        assert lock.slots == {1: "6655", 2: "6656", 7: "6655"}

        await lock.control({"keypad": {"slot": 7, "code": None}})
        await reported(site, "front_door", lambda t: t.value(7) is None)
        assert (await get_code(site, cid))["errors"] == []


# -- slots ------------------------------------------------------------------------------------


async def test_slot_choice_leaves_unmanaged_codes_alone(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[{"device_id": "front_door", "driver": "native", "slots": 5}],
        simulator=codes_on_lock({1: "1111", 3: "3333"}),
    )
    async with running_site(config) as site:
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        made = [await new_code(site, pin) for pin in ("5801", "5802", "5803")]
        await barrier(site)
        assert lock.slots == {1: "1111", 2: "5801", 3: "3333", 4: "5802", 5: "5803"}
        assert [(await get_code(site, cid))["slot"] for cid in made] == [2, 4, 5]
        assert {c["slot"] for c in commands.pull()} <= {None, 2, 4, 5}
        unmanaged = (await site.api.call("access_codes/unmanaged/list", device_id="front_door"))[
            "access_codes"
        ]
        assert [(c["slot"], c["code"], c["is_managed"]) for c in unmanaged] == [
            (1, "1111", False),
            (3, "3333", False),
        ]
        # Deleting every managed code clears only their slots.
        for cid in made:
            await site.api.call("access_codes/delete", access_code_id=cid)
        await barrier(site)
        assert lock.slots == {1: "1111", 3: "3333"}
        assert {c["slot"] for c in commands.pull()} <= {None, 2, 4, 5}


def one_slot_free(make_config: ConfigFactory) -> Config:
    """A front door of two slots, the first holding a PIN the gateway did not put there."""
    return make_config(
        devices=[{"device_id": "front_door", "driver": "native", "slots": 2}],
        simulator=codes_on_lock({1: "1212"}),
    )


async def test_no_space_until_a_slot_frees_up(make_config: ConfigFactory) -> None:
    async with running_site(one_slot_free(make_config)) as site:
        lock = site.lock("front_door")
        first = await new_code(site, "4001")
        second = await new_code(site, "4002")
        await site.settled()
        assert lock.slots == {1: "1212", 2: "4001"}
        waiting = await get_code(site, second)
        assert error_codes(waiting) == {"no_space_for_access_code_on_device"}
        assert waiting["status"] == "unset"
        assert waiting["slot"] is None
        assert (await get_code(site, first))["errors"] == []
        # The lock is full: nothing more happens until something changes.
        await site.advance(60)
        assert (await get_code(site, second))["status"] == "unset"
        assert lock.slots == {1: "1212", 2: "4001"}


async def test_a_freed_slot_is_taken_by_a_waiting_code(make_config: ConfigFactory) -> None:
    async with running_site(one_slot_free(make_config)) as site:
        lock = site.lock("front_door")
        first = await new_code(site, "4001")
        second = await new_code(site, "4002")
        await site.settled()
        assert "no_space_for_access_code_on_device" in error_codes(await get_code(site, second))
        await site.api.call("access_codes/delete", access_code_id=first)
        await site.settled()
        assert lock.slots == {1: "1212", 2: "4002"}
        placed = await get_code(site, second)
        assert (placed["status"], placed["slot"], placed["errors"]) == ("set", 2, [])


# -- updates ----------------------------------------------------------------------------------


async def test_a_changed_pin_is_written_in_place(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        await new_code(site, "3001")
        cid = await new_code(site, "3002")
        await site.settled()
        assert lock.slots == {1: "3001", 2: "3002"}
        reply = await site.api.call("access_codes/update", access_code_id=cid, code="3003")
        assert reply["access_code"]["code"] == "3003"
        assert reply["access_code"]["status"] == "setting"
        await barrier(site)
        assert lock.slots == {1: "3001", 2: "3003"}
        now = await get_code(site, cid)
        assert (now["status"], now["slot"], now["code"]) == ("set", 2, "3003")
        assert [(c["slot"], c["code"]) for c in sets(commands)][-1] == (2, "3003")
        assert clears(commands) == []
        assert kinds(events, cid) == [
            *SET_ONCE,
            "access_code.changed",
            "access_code.set_on_device",
        ]
        assert events.pull()[-1]["code"] == "3003"
        # The old PIN is free again; a name change sends nothing.
        assert (await create(site, device_id="front_door", code="3002"))["code"] == "3002"
        await barrier(site)
        before = len(commands.pull())
        await site.api.call("access_codes/update", access_code_id=cid, name="renamed")
        await barrier(site)
        assert len(commands.pull()) == before


async def test_a_changed_window_moves_the_code_off_and_on(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        cid = await settled_code(site, "3101")
        assert lock.slots == {1: "3101"}
        await site.api.call("access_codes/update", access_code_id=cid, **window(site, 60, 120))
        await site.settled()
        assert lock.slots == {}
        later = await get_code(site, cid)
        assert (later["status"], later["slot"], later["type"]) == ("unset", None, "time_bound")
        await site.advance(60)
        assert lock.slots == {1: "3101"}
        assert (await get_code(site, cid))["status"] == "set"
        # Made ongoing: it stays past the old end.
        reply = await site.api.call("access_codes/update", access_code_id=cid, type="ongoing")
        assert reply["access_code"]["type"] == "ongoing"
        await site.advance(600)
        assert lock.slots == {1: "3101"}
        assert (await get_code(site, cid))["status"] == "set"
        # A window that has already started puts a waiting code on at once.
        await site.api.call("access_codes/update", access_code_id=cid, **window(site, 60, 120))
        await site.settled()
        assert lock.slots == {}
        await site.api.call("access_codes/update", access_code_id=cid, starts_at=at(site, -5))
        await site.settled()
        assert lock.slots == {1: "3101"}
        # Ending it sooner takes it off when the new end comes.
        await site.api.call("access_codes/update", access_code_id=cid, ends_at=at(site, 10))
        await site.advance(10)
        assert lock.slots == {}
        assert await gone(site, cid)
        await barrier(site)
        # Delay warnings at a window's edge: test_no_delay_warning_when_a_window_opens_or_closes.
        assert [k for k in kinds(events, cid) if ".delay_in_" not in k][:5] == [
            *SET_ONCE,
            "access_code.changed",
            "access_code.removed_from_device",
            "access_code.set_on_device",
        ]


# -- unmanaged devices ------------------------------------------------------------------------


async def test_an_unmanaged_lock_is_left_alone(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        keep = await new_code(site, "2201")
        later = await new_code(site, "2202", **window(site, -5, 60))
        await site.settled()
        assert lock.slots == {1: "2201", 2: "2202"}
        reply = await site.api.call("devices/update", device_id="front_door", is_managed=False)
        assert reply["device"]["is_managed"] is False
        await events.wait(is_event("device.converted_to_unmanaged", device_id="front_door"))
        await barrier(site)
        sent = len(commands.pull())

        # Nothing the gateway does reaches the lock now.
        await lock.control({"keypad": {"slot": 1, "code": None}})
        await reported(site, "front_door", lambda t: t.value(1) is None)
        await site.advance(60)  # the window of the second code ends
        reply = await site.api.call("access_codes/delete", access_code_id=keep)
        assert reply["error"]["type"] == "device_not_managed"
        await barrier(site)
        assert [c for c in commands.pull()[sent:] if c["op"] != "read"] == []
        assert lock.slots == {2: "2202"}
        assert kinds(events, keep) == SET_ONCE

        # Managed again: the lock is made to match.
        await site.api.call("devices/update", device_id="front_door", is_managed=True)
        await site.settled()
        assert lock.slots == {1: "2201"}
        assert (await get_code(site, keep))["status"] == "set"
        assert await gone(site, later)


# -- unknown outcomes, verification -----------------------------------------------------------


async def test_an_unanswered_write_is_read_back_not_repeated(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing=FAST_TIMEOUT)) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        await lock.control({"apply_silently_next": 1})
        cid = await new_code(site, "8181")
        await barrier(site)
        assert [c["op"] for c in commands.pull()] == ["set", "read"]
        got = await get_code(site, cid)
        assert (got["status"], got["slot"], got["errors"]) == ("set", 1, [])
        assert lock.slots == {1: "8181"}
        assert kinds(events, cid) == SET_ONCE


async def test_an_acknowledged_write_is_believed_only_when_the_lock_shows_it(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        await lock.control({"ignore_writes_next": 1})  # says ok, writes nothing
        cid = await new_code(site, "8282")
        await barrier(site)
        assert lock.slots == {1: "8282"}
        assert [(c["slot"], c["code"]) for c in sets(commands)] == [(1, "8282"), (1, "8282")]
        assert kinds(events, cid) == SET_ONCE


async def test_resync_reads_every_lock_back(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing={"resync_interval": "15m"})) as site:
        front = await Recorder.commands(site)
        back = await Recorder.commands(site, "back_door")
        await site.advance(899)
        await barrier(site)
        assert (front.pull(), back.pull()) == ([], [])
        await site.advance(1)
        await barrier(site)
        assert [c["op"] for c in front.pull()] == ["read"]
        assert [c["op"] for c in back.pull()] == ["read"]


# -- locks do not wait on each other ----------------------------------------------------------


async def test_a_silent_lock_does_not_hold_up_another(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing={"command_timeout": "2s"})) as site:
        events = await Recorder.events(site)
        stuck = await Recorder.commands(site, "back_door")
        await site.lock("back_door").control({"silent": True})
        slow = await new_code(site, "7001", "back_door")
        await stuck.wait(lambda c: c["op"] == "set")  # back_door's worker now waits 2 s
        fast = await new_code(site, "7002")
        await events.wait(is_event("access_code.set_on_device", access_code_id=fast), timeout=1.0)
        assert site.lock("front_door").slots == {1: "7002"}
        assert (await get_code(site, slow))["status"] == "setting"
        await site.lock("back_door").control({"silent": False})
        await site.settled()
        await site.advance(60)
        assert site.lock("back_door").slots == {1: "7001"}
        assert (await get_code(site, slow))["status"] == "set"


# -- events across a broker restart -----------------------------------------------------------


class Watcher:
    """An event subscriber with a persistent session: while it is away (the broker restarting)
    the broker keeps what is published for it, so what it sees is exactly what was published."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.received: list[Json] = []
        self._stack = AsyncExitStack()

    async def connect(self, *, subscribe: bool) -> None:
        client = build_client(self._config.mqtt, identifier="event-watcher", session_expiry=3600)
        await self._stack.enter_async_context(client)
        if subscribe:
            await client.subscribe(f"{self._config.prefix}/events/#", qos=1)
        reader = asyncio.create_task(self._read(client))
        self._stack.callback(reader.cancel)

    async def _read(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in client.messages:
                self.received.append(payload_json(message))

    async def close(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self._stack.aclose()
        self._stack = AsyncExitStack()

    def unique(self) -> list[Json]:
        """At least once: the first copy of each event, in arrival order."""
        seen: set[str] = set()
        first = []
        for event in self.received:
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                first.append(event)
        return first


async def test_events_complete_and_in_order_across_a_broker_restart(
    broker: Broker, make_config: ConfigFactory
) -> None:
    # The broker keeps sessions over its restart (the test's own subscriber needs that).
    broker.stop()
    broker.conf.write_text(
        broker.conf.read_text().replace(
            "persistence false", f"persistence true\npersistence_location {broker.workdir}/"
        )
    )
    broker.start()
    config = make_config(timing={"delay_warning_after": "1h"})
    watcher = Watcher(config)
    await watcher.connect(subscribe=True)
    try:
        async with running_site(config) as site:
            assert site.gateway.store is not None
            assert site.gateway.reconciler is not None
            store, workers = site.gateway.store, site.gateway.reconciler.workers
            ongoing = await new_code(site, "1357")
            ending = await new_code(site, "2468", "back_door", **window(site, -10, 30))
            starting = await new_code(site, "3579", **window(site, 30, 3600))
            await site.settled()
            await watcher.close()

            broker.stop()
            await eventually(lambda: not site.gateway.session.is_connected)
            await asyncio.gather(*(w.settled.wait() for w in workers.values()))
            # While the broker is away: a request through the gateway's own router (the MQTT
            # leg is all that is missing), and the clock moving windows on and off.
            assert site.gateway.router is not None
            reply = await site.gateway.router.handle(
                f"{config.prefix}/api/access_codes/create",
                b'{"device_id": "back_door", "code": "4680", "reply_to": "x/y"}',
            )
            assert reply is not None
            assert reply.body["ok"] is True
            made_offline = reply.body["access_code"]["access_code_id"]
            site.manual_clock.advance(30)
            site.gateway.reconciler.wake_all()
            await asyncio.gather(*(w.settled.wait() for w in workers.values()))
            unpublished = await store.fetchall(
                "SELECT event_type, device_id, access_code_id FROM events WHERE published = 0"
                " ORDER BY seq"
            )
            stored_offline = [(r["event_type"], r["access_code_id"]) for r in unpublished]
            assert ("device.disconnected", None) in stored_offline
            assert ("access_code.created", made_offline) in stored_offline
            assert ("access_code.failed_to_set_on_device", starting) in stored_offline

            broker.start()
            await watcher.connect(subscribe=False)  # the session kept the subscription
            await site.gateway.session.wait_connected(timeout=10)
            async with api_client(config) as api:
                await eventually(
                    lambda: (
                        site.lock("front_door").slots == {1: "1357", 2: "3579"}
                        and site.lock("back_door").slots == {2: "4680"}
                    )
                )
                await site.settled()
                assert (await api.call("access_codes/get", access_code_id=ending))["error"][
                    "type"
                ] == "access_code_not_found"
            rows = await store.fetchall("SELECT body, published FROM events ORDER BY seq")
            assert all(r["published"] == 1 for r in rows)
            stored = [json.loads(r["body"]) for r in rows]
            await eventually(lambda: len(watcher.unique()) == len(stored))
            seen = watcher.unique()
            for device_id in ("front_door", "back_door"):
                assert [e["event_id"] for e in seen if e["device_id"] == device_id] == [
                    e["event_id"] for e in stored if e["device_id"] == device_id
                ]
            assert {e["event_id"] for e in seen} == {e["event_id"] for e in stored}
            by_code = {
                cid: [e["event_type"] for e in seen if e.get("access_code_id") == cid]
                for cid in (ongoing, ending, starting, made_offline)
            }
            assert by_code[ending] == ON_AND_OFF
            assert by_code[starting] == SET_AFTER_FAILING
            assert by_code[made_offline] == SET_AFTER_FAILING
            kinds_front = [e["event_type"] for e in seen if e["device_id"] == "front_door"]
            assert kinds_front.count("device.disconnected") == 1
            assert kinds_front.index("device.disconnected") < kinds_front.index(
                "device.connected", kinds_front.index("device.disconnected")
            )
    finally:
        await watcher.close()
