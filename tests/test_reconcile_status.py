"""Access codes reconciled onto locks: the plain life of a code and its statuses (unset, setting,
set, removing, gone), failures, retries and delay warnings.

Runs against a real mosquitto, the gateway and simulated locks (see
:mod:`tests.reconcile_helpers`).
"""

from __future__ import annotations

from tests.conftest import ConfigFactory
from tests.harness import (
    Recorder,
    Site,
    barrier,
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
    FAST_TIMEOUT,
    ON_AND_OFF,
    SET_AFTER_FAILING,
    SET_ONCE,
    assert_set,
    clears,
    gone,
    sets,
    settled_code,
    tries,
)

#: The events about a code that came off its lock only on a second try.
REMOVED_ON_RETRY = [
    *SET_ONCE,
    "access_code.failed_to_remove_from_device",
    "access_code.removed_from_device",
    "access_code.deleted",
]


async def delete_refused(site: Site, cid: str, refusals: int) -> None:
    """Delete the code ``cid`` while the front door refuses its next ``refusals`` commands."""
    await site.lock("front_door").control({"fail_next": refusals})
    assert (await site.api.call("access_codes/delete", access_code_id=cid))["ok"] is True
    await site.settled()


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
