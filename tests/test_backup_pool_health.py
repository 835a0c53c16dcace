"""The backup access code pool (contract sections 7 and 9, issue 4): its health on the device,
the partial, empty and many-active problems raised and cleared as slots, faults, pulls and
refills come and go, and ordinary codes taking slots from unpulled backups.

Runs the real gateway, a real mosquitto and the lock simulator (see
:mod:`tests.backup_pool_helpers`). Nothing is mocked: what is asserted is what a client sees over
MQTT and what a guest would find at the keypad.
"""

from __future__ import annotations

import asyncio

import aiomqtt

from gateway.model import Json
from tests.backup_pool_helpers import (
    FOREVER,
    FRONT,
    PAST_BACKOFF,
    assert_sound_pool,
    available,
    create_ongoing,
    create_stay,
    enable_pool,
    event_stream,
    events,
    on_lock,
    pool_config,
    pool_problems_raised,
    pooled,
    props,
    pull,
    refused_pull,
    retained_device,
    settled_stay,
    stay_with_backup,
)
from tests.conftest import ConfigFactory
from tests.harness import (
    Site,
    device,
    error_codes,
    get_code,
    is_event,
    ok,
    running_site,
    wait_for_json,
    warning_codes,
)


async def front_door_event(
    stream: asyncio.Queue[aiomqtt.Message], event_type: str, **fields: str
) -> Json:
    """The next event on ``stream`` of ``event_type`` with ``fields``; it is the front door's."""
    event: Json = await wait_for_json(stream, is_event(event_type, **fields))
    assert event["device_id"] == FRONT
    return event


async def refill_against(site: Site, fault: Json) -> Json:
    """A stay, and a backup pulled for it once the front door has ``fault``: the refill that
    follows runs into it. The front door, as the gateway then describes it."""
    guest = await settled_stay(site)
    await site.lock(FRONT).control(fault)
    ok(await pull(site, guest["access_code_id"]))
    await site.settled()
    return await device(site)


# -- 6. health ----------------------------------------------------------------------------------


async def test_partial_pool_when_the_lock_lacks_free_slots(make_config: ConfigFactory) -> None:
    config = pool_config(
        make_config, slots=4, enabled=False, initial_codes={"1": "1357", "2": "2468"}
    )
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        await enable_pool(site)
        await site.settled()
        found = await device(site)
        assert found["properties"]["backup_codes_available"] == 2
        assert "partial_backup_access_code_pool" in warning_codes(found)
        assert "empty_backup_access_code_pool" not in error_codes(found)
        assert "partial_backup_access_code_pool" in warning_codes(await retained_device(site))
        assert "partial_backup_access_code_pool" in await pool_problems_raised(site)
        assert len([b for b in await pooled(site) if b["status"] == "set"]) == 2

        # Someone clears a slot at the keypad: the pool takes it and is whole again.
        stream = await event_stream(site)
        await lock.control({"keypad": {"slot": 1, "code": None}})
        cleared = await wait_for_json(stream, is_event("device.warning_cleared"))
        assert cleared["warning_code"] == "partial_backup_access_code_pool"
        await site.settled()
        found = await device(site)
        assert found["properties"]["backup_codes_available"] == 3
        assert "partial_backup_access_code_pool" not in warning_codes(found)
        assert "partial_backup_access_code_pool" not in warning_codes(await retained_device(site))
        assert_sound_pool(lock, await pooled(site), 3)


async def test_a_pool_being_filled_is_not_reported_empty(make_config: ConfigFactory) -> None:
    """Two free slots for three backups: partial, never empty (two are on their way)."""
    config = pool_config(
        make_config, slots=4, enabled=False, initial_codes={"1": "1357", "2": "2468"}
    )
    async with running_site(config) as site:
        await enable_pool(site)
        await site.settled()
        assert (await props(site))["backup_codes_available"] == 2
        assert await pool_problems_raised(site) == ["partial_backup_access_code_pool"]


async def test_empty_pool_on_a_full_lock_shows_the_cause(make_config: ConfigFactory) -> None:
    config = pool_config(make_config, slots=2, initial_codes={"1": "1357", "2": "2468"})
    async with running_site(config) as site:
        found = await device(site)
        assert found["properties"]["backup_codes_available"] == 0
        assert "empty_backup_access_code_pool" in error_codes(found)
        # Its cause, no free slot: on the backups that wait for one, as on any code without
        # a slot, or in the pool error itself.
        waiting = await pooled(site)
        assert len(waiting) == 3
        assert all(b["status"] == "unset" for b in waiting)
        on_backups = all("no_space_for_access_code_on_device" in error_codes(b) for b in waiting)
        message = next(
            e["message"]
            for e in found["errors"]
            if e["error_code"] == "empty_backup_access_code_pool"
        )
        assert on_backups or "slot" in message.lower(), message


async def test_empty_pool_and_disconnected_while_offline_then_cleared(
    make_config: ConfigFactory,
) -> None:
    config = pool_config(make_config, enabled=False)
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        stream = await event_stream(site)
        guest = await settled_stay(site)
        await lock.control({"online": False})
        await wait_for_json(stream, is_event("device.disconnected"))
        await enable_pool(site)
        await front_door_event(
            stream, "device.error_added", error_code="empty_backup_access_code_pool"
        )
        await site.settled()
        found = await device(site)
        assert {"device_disconnected", "empty_backup_access_code_pool"} <= error_codes(found)
        assert found["properties"]["backup_codes_available"] == 0
        retained = await retained_device(site)
        assert {"device_disconnected", "empty_backup_access_code_pool"} <= error_codes(retained)
        code = await get_code(site, guest["access_code_id"])
        assert code["is_backup_access_code_available"] is False
        assert "empty_backup_access_code_pool" in error_codes(code)  # device errors show on codes

        await lock.control({"online": True})
        await site.settled()
        cleared = {
            e["error_code"] for e in await events(site, "device.error_cleared", device_id=FRONT)
        }
        assert {"device_disconnected", "empty_backup_access_code_pool"} <= cleared
        found = await device(site)
        assert error_codes(found) == set()
        assert "partial_backup_access_code_pool" not in warning_codes(found)
        assert found["properties"]["backup_codes_available"] == 3
        assert error_codes(await retained_device(site)) == set()
        assert_sound_pool(lock, await pooled(site), 3)


async def test_exhaustion_by_pulls_empties_the_pool_after_fill_grace(
    make_config: ConfigFactory,
) -> None:
    config = pool_config(make_config, size=2, threshold=10, fill_grace="30s")
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        a, b, c = [await create_stay(site, name=n) for n in "ABC"]
        await site.settled()
        await lock.control({"fail_next": FOREVER})
        ok(await pull(site, a["access_code_id"]))
        ok(await pull(site, b["access_code_id"]))
        await site.settled()
        await refused_pull(site, c)

        await site.advance(31)
        found = await device(site)
        assert found["properties"]["backup_codes_available"] == 0
        assert "empty_backup_access_code_pool" in error_codes(found)
        assert "empty_backup_access_code_pool" in error_codes(await retained_device(site))
        added = await events(site, "device.error_added", device_id=FRONT)
        assert "empty_backup_access_code_pool" in {e["error_code"] for e in added}
        assert await available(site, c) is False

        # The lock takes codes again: the pool refills and the error clears.
        await lock.control({"reset": True, "fail_next": 0})
        await site.advance(PAST_BACKOFF)
        found = await device(site)
        assert found["properties"]["backup_codes_available"] == 2
        assert "empty_backup_access_code_pool" not in error_codes(found)
        assert "partial_backup_access_code_pool" not in warning_codes(found)
        cleared = await events(site, "device.error_cleared", device_id=FRONT)
        assert "empty_backup_access_code_pool" in {e["error_code"] for e in cleared}
        assert_sound_pool(lock, await pooled(site), 2)
        assert ok(await pull(site, c["access_code_id"]))["backup_access_code"]["is_backup"]


async def test_a_refill_that_succeeds_on_retry_raises_nothing(
    make_config: ConfigFactory,
) -> None:
    """Short for a moment, but filling neither failed nor outlived its grace."""
    config = pool_config(make_config, size=2, threshold=10, fill_grace="30s")
    async with running_site(config) as site:
        # One refused write: the refill is retried, not failed (max_attempts is 3).
        found = await refill_against(site, {"fail_next": 1})
        assert found["properties"]["backup_codes_available"] == 2
        assert await pool_problems_raised(site) == []


async def test_a_refill_a_silent_lock_never_answers_raises_partial(
    make_config: ConfigFactory,
) -> None:
    """A lock that hears nothing: each unanswered write counts as failed (contract 10), so after
    max_attempts the refill has failed and partial is raised at once, naming the cause."""
    config = pool_config(
        make_config, size=2, threshold=10, fill_grace="30m", timing={"command_timeout": "300ms"}
    )
    async with running_site(config) as site:
        found = await refill_against(site, {"silent": True})
        assert found["properties"]["backup_codes_available"] == 1
        assert "partial_backup_access_code_pool" in warning_codes(found)
        assert "partial_backup_access_code_pool" in warning_codes(await retained_device(site))
        partial = next(
            w for w in found["warnings"] if w["warning_code"] == "partial_backup_access_code_pool"
        )
        assert "failing" in partial["message"]
        assert await pool_problems_raised(site) == ["partial_backup_access_code_pool"]

        await site.lock(FRONT).control({"silent": False})
        await site.advance(PAST_BACKOFF)
        found = await device(site)
        assert found["properties"]["backup_codes_available"] == 2
        assert "partial_backup_access_code_pool" not in warning_codes(found)
        cleared = await events(site, "device.warning_cleared", device_id=FRONT)
        assert [e["warning_code"] for e in cleared] == ["partial_backup_access_code_pool"]


async def test_a_failed_refill_raises_partial_before_fill_grace(
    make_config: ConfigFactory,
) -> None:
    """Contract 7: partial when fewer than size AND filling has failed OR is past fill_grace."""
    config = pool_config(make_config, size=3, threshold=10, fill_grace="30m")
    async with running_site(config) as site:
        found = await refill_against(site, {"fail_next": FOREVER})
        waiting = [b for b in await pooled(site) if b["status"] != "set"]
        assert len(waiting) == 1
        assert "failed_to_set_on_device" in error_codes(waiting[0])  # filling has failed
        assert found["properties"]["backup_codes_available"] == 2
        assert "partial_backup_access_code_pool" in warning_codes(found)


async def test_many_active_backup_codes_raised_and_cleared(make_config: ConfigFactory) -> None:
    config = pool_config(make_config, threshold=2)
    async with running_site(config) as site:
        stream = await event_stream(site)
        short = await create_stay(site, hours=2, name="Short")
        long = await create_stay(site, hours=48, name="Long")
        await site.settled()

        ok(await pull(site, short["access_code_id"]))
        await site.settled()
        assert "many_active_backup_codes" not in warning_codes(await device(site))

        ok(await pull(site, long["access_code_id"]))
        await front_door_event(
            stream, "device.warning_added", warning_code="many_active_backup_codes"
        )
        await site.settled()
        found = await device(site)
        assert found["properties"]["active_backup_codes"] == 2
        assert "many_active_backup_codes" in warning_codes(found)
        assert "many_active_backup_codes" in warning_codes(await retained_device(site))

        # The short stay ends, its backup with it: one active, under the threshold.
        await site.advance(2 * 3600 + 1)
        found = await device(site)
        assert found["properties"]["active_backup_codes"] == 1
        assert "many_active_backup_codes" not in warning_codes(found)
        assert "many_active_backup_codes" not in warning_codes(await retained_device(site))
        cleared = await events(site, "device.warning_cleared", device_id=FRONT)
        assert [e["warning_code"] for e in cleared] == ["many_active_backup_codes"]


async def test_ordinary_codes_take_slots_from_unpulled_backups(
    make_config: ConfigFactory,
) -> None:
    config = pool_config(make_config, slots=4, size=2, threshold=10)
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        guest, backup = await stay_with_backup(site)
        assert len(lock.slots) == 4  # guest, its backup, two pooled: full
        assert (await props(site))["backup_codes_available"] == 2

        first = await create_ongoing(site, name="Owner")
        await site.settled()
        found = await get_code(site, first["access_code_id"])
        assert found["status"] == "set"
        assert on_lock(lock, found)
        assert error_codes(found) == set()
        device_now = await device(site)
        assert device_now["properties"]["backup_codes_available"] == 1
        assert "partial_backup_access_code_pool" in warning_codes(device_now)
        assert "partial_backup_access_code_pool" in warning_codes(await retained_device(site))

        second = await create_ongoing(site, name="Cleaner")
        await site.settled()
        assert on_lock(lock, await get_code(site, second["access_code_id"]))
        assert (await props(site))["backup_codes_available"] == 0
        assert "empty_backup_access_code_pool" in error_codes(await device(site))

        # No pooled backup is left to give way; a pulled one is a guest's and stays.
        third = await create_ongoing(site, name="Gardener")
        await site.settled()
        found = await get_code(site, third["access_code_id"])
        assert found["status"] == "unset"
        assert "no_space_for_access_code_on_device" in error_codes(found)
        assert on_lock(lock, await get_code(site, backup["access_code_id"]))
        assert on_lock(lock, await get_code(site, guest["access_code_id"]))
