"""Unmanaged codes (contract section 11): PINs found on a lock that the gateway did not put there.

Stable ids across restarts, ``access_code.unmanaged.created`` once per appearance, ``get``,
``delete`` (the slot is cleared on the lock, never when it changed meanwhile) and
``convert_to_managed`` (the PIN is taken over where it is, without a write).

Runs the real gateway, a real mosquitto and simulated native locks; a PIN typed at the keypad is
the simulator's ``keypad`` control. Asserted is what a client sees over MQTT and what is in the
lock's slots.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.clock import ManualClock
from gateway.config import Config
from gateway.model import Json
from tests.access_codes_helpers import refused
from tests.backup_pool_helpers import gateway_site
from tests.conftest import ConfigFactory, codes_on_lock
from tests.contract import ACCESS_CODE_KEYS, EPOCH, is_uuid
from tests.harness import (
    Recorder,
    Site,
    barrier,
    get_code,
    is_event,
    ok,
    running_simulator,
    running_site,
    window,
)

FRONT = "front_door"
CREATED = "access_code.unmanaged.created"
REMOVED = "access_code.unmanaged.removed"
CONVERTED = "access_code.unmanaged.converted_to_managed"
FAILED = "access_code.unmanaged.failed_to_convert_to_managed"


def lock_with(make_config: ConfigFactory, codes: dict[str, str]) -> Config:
    return make_config(simulator={"latency": "1ms", **codes_on_lock(codes)})


@asynccontextmanager
async def site_with(make_config: ConfigFactory, codes: dict[str, str]) -> AsyncIterator[Site]:
    async with running_site(lock_with(make_config, codes)) as site:
        yield site


async def unmanaged(site: Site, device_id: str = FRONT) -> list[Json]:
    reply = ok(await site.api.call("access_codes/unmanaged/list", device_id=device_id))
    found: list[Json] = reply["access_codes"]
    return found


async def the_unmanaged(site: Site, slot: int) -> Json:
    (found,) = [c for c in await unmanaged(site) if c["slot"] == slot]
    return found


async def stored_events(site: Site, event_type: str, **fields: Any) -> list[Json]:
    reply = ok(await site.api.call("events/list", since=EPOCH, event_types=[event_type]))
    match = is_event(event_type, **fields)
    return [e for e in reply["events"] if match(e)]


def is_command(op: str, slot: int) -> Any:
    return lambda c: c.get("op") == op and c.get("slot") == slot


# -- ids and unmanaged.created -----------------------------------------------------------------


async def test_created_once_with_a_stable_id_also_after_a_restart(
    make_config: ConfigFactory,
) -> None:
    config = lock_with(make_config, {"3": "5550"})
    clock = ManualClock()
    async with running_simulator(config) as sim:
        async with gateway_site(config, clock, sim) as site:
            found = await the_unmanaged(site, 3)
            uid = found["access_code_id"]
            assert is_uuid(uid)
            (event,) = await stored_events(site, CREATED, access_code_id=uid)
            assert event["device_id"] == FRONT
            assert "code" not in event  # the PIN is in the object, not in the event
            # A code the gateway writes is its own: never announced as unmanaged.
            managed = ok(await site.api.call("access_codes/create", device_id=FRONT, code="4821"))[
                "access_code"
            ]
            await site.settled()
            assert "4821" in site.lock(FRONT).slots.values()
            # A PIN typed in at the keypad is.
            events = await Recorder.events(site)
            await site.lock(FRONT).control({"keypad": {"slot": 7, "code": "7070"}})
            (typed_in,) = await events.wait(is_event(CREATED))
            assert typed_in["access_code_id"] == (await the_unmanaged(site, 7))["access_code_id"]
        async with gateway_site(config, clock, sim) as site:
            await barrier(site)
            again = await the_unmanaged(site, 3)
            assert again["access_code_id"] == uid
            assert (
                ok(await site.api.call("access_codes/unmanaged/get", access_code_id=uid))[
                    "access_code"
                ]
                == again
            )
            created = await stored_events(site, CREATED)
            assert sorted(e["access_code_id"] for e in created) == sorted(
                [uid, typed_in["access_code_id"]]
            )  # once each: not again after the restart, never for the managed code
            assert managed["access_code_id"] not in {e["access_code_id"] for e in created}


async def test_get_answers_the_access_code_object(make_config: ConfigFactory) -> None:
    async with site_with(make_config, {"3": "5550"}) as site:
        listed = await the_unmanaged(site, 3)
        got = ok(
            await site.api.call(
                "access_codes/unmanaged/get", access_code_id=listed["access_code_id"]
            )
        )["access_code"]
        assert got == listed
        assert set(got) == ACCESS_CODE_KEYS
        assert (got["code"], got["slot"], got["is_managed"], got["status"]) == (
            "5550",
            3,
            False,
            "set",
        )
        assert got["pending_mutations"] == []


# -- delete ------------------------------------------------------------------------------------


async def test_delete_clears_the_slot_and_says_so(make_config: ConfigFactory) -> None:
    async with site_with(make_config, {"3": "5550", "4": "6660"}) as site:
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        events = await Recorder.events(site)
        reply = ok(await site.api.call("access_codes/unmanaged/delete", access_code_id=uid))
        assert set(reply) == {"ok", "request_id"}  # {} as the result
        await events.wait(is_event(REMOVED, access_code_id=uid, device_id=FRONT))
        await site.settled()
        assert site.lock(FRONT).slots == {4: "6660"}  # that slot only
        assert [c["slot"] for c in await unmanaged(site)] == [4]
        gone = await refused(site, "access_codes/unmanaged/get", access_code_id=uid)
        assert gone["type"] == "access_code_not_found"
        assert len(await stored_events(site, REMOVED, access_code_id=uid)) == 1


async def test_delete_waits_for_the_lock_and_survives_a_restart(
    make_config: ConfigFactory,
) -> None:
    config = lock_with(make_config, {"3": "5550"})
    clock = ManualClock()
    async with running_simulator(config) as sim:
        lock = sim.lock(FRONT)
        async with gateway_site(config, clock, sim) as site:
            uid = (await the_unmanaged(site, 3))["access_code_id"]
            await lock.control({"online": False})
            ok(await site.api.call("access_codes/unmanaged/delete", access_code_id=uid))
            pending = await the_unmanaged(site, 3)
            assert pending["status"] == "removing"
            assert [m["mutation_code"] for m in pending["pending_mutations"]] == ["deleting"]
            # Asked again while it is pending: the same request.
            ok(await site.api.call("access_codes/unmanaged/delete", access_code_id=uid))
            assert lock.slots == {3: "5550"}
        async with gateway_site(config, clock, sim) as site:
            events = await Recorder.events(site)
            await lock.control({"online": True})
            await events.wait(is_event(REMOVED, access_code_id=uid))
            await site.settled()
            assert lock.slots == {}
            assert await unmanaged(site) == []


async def test_a_refused_clear_is_retried_with_backoff(make_config: ConfigFactory) -> None:
    config = make_config(
        simulator={"latency": "1ms", **codes_on_lock({"3": "5550"})},
        timing={"max_attempts": 2},
    )
    async with running_site(config, ManualClock()) as site:
        lock = site.lock(FRONT)
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        commands = await Recorder.commands(site)
        events = await Recorder.events(site)
        await lock.control({"fail_next": 2})
        ok(await site.api.call("access_codes/unmanaged/delete", access_code_id=uid))
        await barrier(site)
        assert commands.count(is_command("clear", 3)) == 2  # then it waits: not hammered
        assert lock.slots == {3: "5550"}
        assert (await the_unmanaged(site, 3))["status"] == "removing"
        await site.advance(5)
        await events.wait(is_event(REMOVED, access_code_id=uid))
        assert commands.count(is_command("clear", 3)) == 3
        assert lock.slots == {}


async def test_delete_never_clears_a_slot_that_changed_meanwhile(
    make_config: ConfigFactory,
) -> None:
    async with site_with(make_config, {"3": "5550"}) as site:
        lock = site.lock(FRONT)
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        commands = await Recorder.commands(site)
        events = await Recorder.events(site)
        await lock.control({"online": False})
        ok(await site.api.call("access_codes/unmanaged/delete", access_code_id=uid))
        # Someone puts another PIN in that slot before the gateway gets to it.
        await lock.control({"keypad": {"slot": 3, "code": "7777"}})
        await lock.control({"online": True})
        await events.wait(is_event(CREATED))
        await events.wait(is_event(REMOVED, access_code_id=uid))  # that PIN is gone from it
        await barrier(site)
        assert lock.slots == {3: "7777"}
        assert commands.count(lambda c: c.get("op") == "clear") == 0
        (now_there,) = await unmanaged(site)
        assert (now_there["code"], now_there["pending_mutations"]) == ("7777", [])


async def test_delete_refusals_change_nothing(make_config: ConfigFactory) -> None:
    async with site_with(make_config, {"3": "5550"}) as site:
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        for params, error_type, field in [
            ({}, "invalid_input", "access_code_id"),
            ({"access_code_id": "slot-3"}, "invalid_input", "access_code_id"),
            (
                {"access_code_id": "00000000-0000-4000-8000-000000000000"},
                "access_code_not_found",
                "access_code_id",
            ),
        ]:
            for endpoint in ("get", "delete", "convert_to_managed"):
                error = await refused(site, f"access_codes/unmanaged/{endpoint}", **params)
                assert (error["type"], field in error["message"]) == (error_type, True), error
        ok(await site.api.call("devices/update", device_id=FRONT, is_managed=False))
        for endpoint in ("delete", "convert_to_managed"):
            error = await refused(site, f"access_codes/unmanaged/{endpoint}", access_code_id=uid)
            assert error["type"] == "device_not_managed"
        await barrier(site)
        assert site.lock(FRONT).slots == {3: "5550"}
        assert (await the_unmanaged(site, 3))["pending_mutations"] == []


# -- convert_to_managed ------------------------------------------------------------------------


async def test_convert_takes_the_pin_over_without_a_write(make_config: ConfigFactory) -> None:
    async with site_with(make_config, {"3": "5550"}) as site:
        lock = site.lock(FRONT)
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        commands = await Recorder.commands(site)
        events = await Recorder.events(site)
        code = ok(
            await site.api.call(
                "access_codes/unmanaged/convert_to_managed", access_code_id=uid, name="Cleaner"
            )
        )["access_code"]
        assert code["access_code_id"] == uid  # the same code, managed now
        assert (code["is_managed"], code["status"], code["slot"], code["code"]) == (
            True,
            "set",
            3,
            "5550",
        )
        assert (code["name"], code["pending_mutations"], code["errors"]) == ("Cleaner", [], [])
        await events.wait(is_event(CONVERTED, access_code_id=uid, device_id=FRONT))
        await barrier(site)
        assert commands.count(lambda c: c.get("op") in ("set", "clear")) == 0
        assert await get_code(site, uid) == {**code, "warnings": [], "errors": []}
        assert await unmanaged(site) == []
        # From now on it is managed like any other: a new PIN is written to its slot...
        ok(await site.api.call("access_codes/update", access_code_id=uid, code="6060"))
        await site.settled()
        assert lock.slots == {3: "6060"}
        assert commands.count(is_command("set", 3)) == 1
        assert (await get_code(site, uid))["status"] == "set"
        assert await unmanaged(site) == []
        # ... and deleting it clears that slot.
        ok(await site.api.call("access_codes/delete", access_code_id=uid))
        await events.wait(is_event("access_code.deleted", access_code_id=uid))
        await site.settled()
        assert lock.slots == {}


async def test_convert_after_the_slot_changed_fails_with_its_event(
    make_config: ConfigFactory,
) -> None:
    async with site_with(make_config, {"3": "5550"}) as site:
        lock = site.lock(FRONT)
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        events = await Recorder.events(site)
        await lock.control({"keypad": {"slot": 3, "code": "7777"}})
        await events.wait(is_event(CREATED))
        error = await refused(site, "access_codes/unmanaged/convert_to_managed", access_code_id=uid)
        assert error["type"] == "access_code_not_found"
        assert "access_code_id" in error["message"]
        assert "slot changed" in error["message"]
        await events.wait(is_event(FAILED, access_code_id=uid, device_id=FRONT))
        assert len(await stored_events(site, FAILED, access_code_id=uid)) == 1
        codes = ok(await site.api.call("access_codes/list", device_id=FRONT))["access_codes"]
        assert codes == []  # nothing was converted
        assert lock.slots == {3: "7777"}


async def test_convert_with_a_later_window_follows_the_usual_rules(
    make_config: ConfigFactory,
) -> None:
    config = lock_with(make_config, {"3": "5550"})
    async with running_site(config, ManualClock()) as site:
        lock = site.lock(FRONT)
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        events = await Recorder.events(site)
        code = ok(
            await site.api.call(
                "access_codes/unmanaged/convert_to_managed",
                access_code_id=uid,
                allow_external_modification=True,
                **window(site, 3600, 7200),
            )
        )["access_code"]
        assert (code["type"], code["is_external_modification_allowed"]) == ("time_bound", True)
        await events.wait(is_event("access_code.removed_from_device", access_code_id=uid))
        await site.settled()
        assert lock.slots == {}  # off the lock until its window starts
        assert (await get_code(site, uid))["status"] == "unset"
        assert await unmanaged(site) == []
        await site.advance(3600)
        await events.wait(is_event("access_code.set_on_device", access_code_id=uid))
        assert list(lock.slots.values()) == ["5550"]


async def test_convert_refuses_bad_input_and_changes_nothing(make_config: ConfigFactory) -> None:
    async with site_with(make_config, {"3": "5550"}) as site:
        uid = (await the_unmanaged(site, 3))["access_code_id"]
        base = {"access_code_id": uid}
        for params, field in [
            ({"starts_at": window(site, 10, 20)["starts_at"]}, "starts_at"),
            (window(site, -20, -10), "ends_at"),
            (window(site, 20, 10), "ends_at"),
            ({"name": 7}, "name"),
            ({"allow_external_modification": "yes"}, "allow_external_modification"),
            ({"code": "1234"}, "code"),
        ]:
            error = await refused(
                site, "access_codes/unmanaged/convert_to_managed", **base, **params
            )
            assert error["type"] == "invalid_input", (params, error)
            assert field in error["message"], (params, error)
        assert await stored_events(site, FAILED) == []
        assert (await the_unmanaged(site, 3))["access_code_id"] == uid
        assert ok(await site.api.call("access_codes/list", device_id=FRONT))["access_codes"] == []


async def test_convert_refuses_a_pin_or_slot_a_managed_code_holds(
    make_config: ConfigFactory,
) -> None:
    async with site_with(make_config, {}) as site:
        lock = site.lock(FRONT)
        events = await Recorder.events(site)
        kept = ok(
            await site.api.call(
                "access_codes/create",
                device_id=FRONT,
                code="4821",
                allow_external_modification=True,
            )
        )["access_code"]
        await site.settled()
        (slot,) = lock.slots
        # Its slot changed at the keypad, and the change is allowed to stand ...
        await lock.control({"keypad": {"slot": slot, "code": "9090"}})
        # ... and its PIN typed into another slot as well.
        await lock.control({"keypad": {"slot": 6, "code": "4821"}})
        await barrier(site)
        found = {c["slot"]: c["access_code_id"] for c in await unmanaged(site)}
        assert set(found) == {slot, 6}
        for at_slot, error_type in ((slot, "invalid_input"), (6, "duplicate_access_code")):
            uid = found[at_slot]
            error = await refused(
                site, "access_codes/unmanaged/convert_to_managed", access_code_id=uid
            )
            assert error["type"] == error_type, error
            assert "access_code_id" in error["message"]
            await events.wait(is_event(FAILED, access_code_id=uid, device_id=FRONT))
        codes = ok(await site.api.call("access_codes/list", device_id=FRONT))["access_codes"]
        assert [c["access_code_id"] for c in codes] == [kept["access_code_id"]]
        assert {c["slot"] for c in await unmanaged(site)} == {slot, 6}
