"""Access codes reconciled onto locks when they change: a changed PIN or window, and devices the
gateway does not manage.

Runs against a real mosquitto, the gateway and simulated locks (see
:mod:`tests.reconcile_helpers`).
"""

from __future__ import annotations

from tests.conftest import ConfigFactory
from tests.harness import (
    Recorder,
    at,
    barrier,
    create,
    get_code,
    is_event,
    kinds,
    new_code,
    running_site,
    window,
)
from tests.reconcile_helpers import SET_ONCE, clears, gone, reported, sets, settled_code

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
