"""Access codes reconciled onto locks when the lock gets in the way: an offline lock, changes made
at the keypad (undone, kept, duplicates) and slots (unmanaged codes, no space, freed slots).

Runs against a real mosquitto, the gateway and simulated locks (see
:mod:`tests.reconcile_helpers`).
"""

from __future__ import annotations

from gateway.config import Config
from tests.conftest import ConfigFactory, codes_on_lock
from tests.harness import (
    Recorder,
    Site,
    barrier,
    device,
    error_codes,
    get_code,
    is_event,
    kinds,
    new_code,
    running_site,
    warning_codes,
    window,
)
from tests.reconcile_helpers import (
    ON_AND_OFF,
    SET_AFTER_FAILING,
    SET_ONCE,
    assert_set,
    gone,
    reported,
    sets,
    settled_code,
    tries,
)


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
