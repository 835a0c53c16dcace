"""The backup access code pool (contract sections 7 and 9, issue 4): pulling a backup (answered
without the lock, the same backup on repeats, restarts and concurrent pulls, refusals), the end
of a pulled backup's life with its stay, and the whole story end to end.

Runs the real gateway, a real mosquitto and the lock simulator (see
:mod:`tests.backup_pool_helpers`). Nothing is mocked: what is asserted is what a client sees over
MQTT and what a guest would find at the keypad.
"""

from __future__ import annotations

import asyncio

import pytest

from drivers.sim_settings import simulator_settings
from gateway.clock import ManualClock
from gateway.model import Json
from tests.backup_pool_helpers import (
    FOREVER,
    FRONT,
    PAST_BACKOFF,
    assert_sound_pool,
    counts,
    create_ongoing,
    create_stay,
    event_stream,
    events,
    gateway_site,
    listing,
    on_lock,
    pool_config,
    pool_problems_raised,
    pooled,
    props,
    pull,
    refused,
    refused_pull,
    retained_device,
    settled_stay,
    stay_with_backup,
)
from tests.conftest import ConfigFactory
from tests.harness import (
    Site,
    at,
    error_codes,
    get_code,
    is_event,
    next_json,
    ok,
    running_simulator,
    running_site,
    wait_for_json,
    warning_codes,
)


def assert_same_backup(reply: Json, backup: Json) -> None:
    """A pull's ``reply`` hands out ``backup`` again, and the code still points at it."""
    assert reply["backup_access_code"]["access_code_id"] == backup["access_code_id"]
    assert reply["backup_access_code"]["code"] == backup["code"]
    assert reply["access_code"]["pulled_backup_access_code_id"] == backup["access_code_id"]


def assert_not_pulled(code: Json) -> None:
    assert code["pulled_backup_access_code_id"] is None
    assert "using_backup_access_code" not in warning_codes(code)


async def assert_removed(site: Site, backup: Json) -> None:
    """A pulled backup is off the lock, removed from it once, and unknown to the gateway."""
    assert site.lock(FRONT).try_code(backup["code"]) is None
    await assert_unknown(site, backup)
    removed = await events(
        site, "access_code.removed_from_device", access_code_id=backup["access_code_id"]
    )
    assert len(removed) == 1


async def assert_unknown(site: Site, code: Json) -> None:
    refused(
        await site.api.call("access_codes/get", access_code_id=code["access_code_id"]),
        "access_code_not_found",
        "access_code_id",
    )


# -- 4. pulling ---------------------------------------------------------------------------------


async def test_pull_hands_out_a_backup_and_refills(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        lock = site.lock(FRONT)
        stream = await event_stream(site)
        guest = await settled_stay(site, hours=30)
        pool_before = {b["access_code_id"] for b in await pooled(site)}
        pulled_at = at(site, 0)
        # The lock drops the next command (the refill's write, unanswered: read back and sent
        # again after the command timeout), so the pool is seen one short before it lands.
        await lock.control({"silent_next": 1})

        reply = ok(await pull(site, guest["access_code_id"]))
        original, backup = reply["access_code"], reply["backup_access_code"]
        assert original["access_code_id"] == guest["access_code_id"]
        assert original["pulled_backup_access_code_id"] == backup["access_code_id"]
        assert "using_backup_access_code" in warning_codes(original)
        assert original["is_backup_access_code_available"] is True
        assert backup["access_code_id"] in pool_before
        assert backup["is_backup"] is True
        assert backup["type"] == "time_bound"
        assert backup["starts_at"] == pulled_at
        assert backup["ends_at"] == guest["ends_at"]
        assert backup["status"] == "set"
        assert on_lock(lock, backup)  # already there: the guest can use it right away

        event = await wait_for_json(stream, is_event("access_code.backup_access_code_pulled"))
        assert event["device_id"] == FRONT
        assert event["access_code_id"] == guest["access_code_id"]
        assert event["backup_access_code_id"] == backup["access_code_id"]

        # Out of the pool at once.
        assert backup["access_code_id"] not in {b["access_code_id"] for b in await pooled(site)}
        assert (await props(site))["backup_codes_available"] == 2

        await site.settled()
        pool_after = await pooled(site)
        assert_sound_pool(lock, pool_after, 3)
        assert backup["access_code_id"] not in {b["access_code_id"] for b in pool_after}
        assert backup["code"] not in {b["code"] for b in pool_after}
        assert on_lock(lock, await get_code(site, backup["access_code_id"]))
        found = await get_code(site, guest["access_code_id"])
        assert found["pulled_backup_access_code_id"] == backup["access_code_id"]
        assert "using_backup_access_code" in warning_codes(found)
        assert counts((await retained_device(site))["properties"]) == (3, 1)
        # A refill within moments is no pool problem.
        assert await pool_problems_raised(site) == []


@pytest.mark.parametrize("fault", [{"silent": True}, {"online": False}], ids=["silent", "offline"])
async def test_pull_answers_without_the_lock(
    make_config: ConfigFactory, fault: dict[str, bool]
) -> None:
    """The backup is on the lock already: a lock that hears nothing cannot delay the reply.

    An offline lock still holds its backups (a keypad works without the gateway), so they stay
    ``set`` and pullable.
    """
    config = pool_config(make_config, timing={"command_timeout": "1s"})
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        guest = await settled_stay(site)
        await lock.control(fault)
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = ok(await pull(site, guest["access_code_id"]))
        elapsed = loop.time() - started
        assert elapsed < 0.5, f"pull took {elapsed:.2f}s: it waited on the lock"
        backup = reply["backup_access_code"]
        assert backup["status"] == "set"
        assert on_lock(lock, backup)

        await lock.control({"silent": False, "online": True})
        await site.settled()
        await site.advance(PAST_BACKOFF)
        assert_sound_pool(lock, await pooled(site), 3)
        assert on_lock(lock, await get_code(site, backup["access_code_id"]))


async def test_repeat_pulls_return_the_same_backup(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        guest, first = await stay_with_backup(site)
        for _ in range(2):
            again = ok(await pull(site, guest["access_code_id"]))
            assert_same_backup(again, first)
        await site.settled()
        pulled = await events(
            site, "access_code.backup_access_code_pulled", access_code_id=guest["access_code_id"]
        )
        assert len(pulled) == 1
        assert counts(await props(site)) == (3, 1)
        assert len(await pooled(site)) == 3  # one refill, not one per request


async def test_pull_after_restart_returns_the_same_backup(make_config: ConfigFactory) -> None:
    config = pool_config(make_config)
    clock = ManualClock()
    async with running_simulator(config) as sim:
        async with gateway_site(config, clock, sim) as site:
            guest, first = await stay_with_backup(site)
        async with gateway_site(config, clock, sim) as site:
            reply = ok(await pull(site, guest["access_code_id"]))
            assert_same_backup(reply, first)
            await site.settled()
            assert on_lock(site.lock(FRONT), await get_code(site, first["access_code_id"]))
            pulled = await events(site, "access_code.backup_access_code_pulled")
            assert len(pulled) == 1
            assert counts(await props(site)) == (3, 1)


async def test_concurrent_pulls_for_one_code_get_one_backup(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        guest = await settled_stay(site)
        replies = await asyncio.gather(*(pull(site, guest["access_code_id"]) for _ in range(5)))
        backups = {ok(r)["backup_access_code"]["access_code_id"] for r in replies}
        assert len(backups) == 1
        assert len({r["backup_access_code"]["code"] for r in replies}) == 1
        await site.settled()
        pulled = await events(site, "access_code.backup_access_code_pulled")
        assert len(pulled) == 1
        assert counts(await props(site)) == (3, 1)
        backup_rows = [c for c in await listing(site, include_pool=True) if c["is_backup"]]
        assert len(backup_rows) == 4  # three pooled and the one pulled, never two pulled


async def test_two_codes_pulling_at_once_get_different_backups(
    make_config: ConfigFactory,
) -> None:
    async with running_site(pool_config(make_config, threshold=5)) as site:
        lock = site.lock(FRONT)
        a = await create_stay(site, name="A")
        b = await create_stay(site, name="B")
        await site.settled()
        reply_a, reply_b = await asyncio.gather(
            pull(site, a["access_code_id"]), pull(site, b["access_code_id"])
        )
        backup_a, backup_b = ok(reply_a)["backup_access_code"], ok(reply_b)["backup_access_code"]
        assert backup_a["access_code_id"] != backup_b["access_code_id"]
        assert backup_a["code"] != backup_b["code"]
        assert reply_a["access_code"]["pulled_backup_access_code_id"] == backup_a["access_code_id"]
        assert reply_b["access_code"]["pulled_backup_access_code_id"] == backup_b["access_code_id"]
        await site.settled()
        assert on_lock(lock, backup_a)
        assert on_lock(lock, backup_b)
        assert counts(await props(site)) == (3, 2)


async def test_pull_refuses_an_ongoing_code(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        cleaner = await create_ongoing(site)
        await site.settled()
        await refused_pull(site, cleaner, "access_code_not_time_bound")
        await site.settled()
        found = await get_code(site, cleaner["access_code_id"])
        assert_not_pulled(found)
        assert (await props(site))["backup_codes_available"] == 3
        assert await events(site, "access_code.backup_access_code_pulled") == []


async def test_pull_from_an_empty_pool_is_refused(make_config: ConfigFactory) -> None:
    tiny_pool = pool_config(make_config, size=1, threshold=5)
    async with running_site(tiny_pool) as site:
        lock = site.lock(FRONT)
        a = await create_stay(site, name="A")
        b = await create_stay(site, name="B")
        await site.settled()
        await lock.control({"fail_next": FOREVER})
        ok(await pull(site, a["access_code_id"]))
        await site.settled()
        await refused_pull(site, b)
        found = await get_code(site, b["access_code_id"])
        assert_not_pulled(found)
        # A's backup is still A's.
        assert ok(await pull(site, a["access_code_id"]))["backup_access_code"]["is_backup"]


async def test_pull_without_a_pool_is_refused(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config, enabled=False)) as site:
        guest = await settled_stay(site)
        await refused_pull(site, guest)


# -- 5. end of life -----------------------------------------------------------------------------


async def test_pulled_backup_leaves_the_lock_when_the_stay_ends(
    make_config: ConfigFactory,
) -> None:
    async with running_site(pool_config(make_config)) as site:
        lock = site.lock(FRONT)
        guest, backup = await stay_with_backup(site, hours=2)

        await site.advance(3600)
        assert on_lock(lock, await get_code(site, backup["access_code_id"]))
        assert (await props(site))["active_backup_codes"] == 1

        await site.advance(3601)
        assert lock.try_code(guest["code"]) is None
        await assert_removed(site, backup)
        assert counts(await props(site)) == (3, 0)
        assert_sound_pool(lock, await pooled(site), 3)


async def test_pulled_backup_follows_a_changed_end(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        lock = site.lock(FRONT)
        guest = await settled_stay(site, hours=2)
        backup = ok(await pull(site, guest["access_code_id"]))["backup_access_code"]
        later = at(site, 4 * 3600)
        ok(
            await site.api.call(
                "access_codes/update", access_code_id=guest["access_code_id"], ends_at=later
            )
        )
        assert (await get_code(site, backup["access_code_id"]))["ends_at"] == later
        await site.advance(2 * 3600 + 1)
        assert on_lock(lock, await get_code(site, backup["access_code_id"]))
        await site.advance(2 * 3600)
        assert lock.try_code(backup["code"]) is None


async def test_pulled_backup_leaves_the_lock_when_the_original_is_deleted(
    make_config: ConfigFactory,
) -> None:
    async with running_site(pool_config(make_config)) as site:
        lock = site.lock(FRONT)
        guest, backup = await stay_with_backup(site)
        assert on_lock(lock, backup)

        ok(await site.api.call("access_codes/delete", access_code_id=guest["access_code_id"]))
        assert (await props(site))["active_backup_codes"] == 0
        await site.settled()
        assert lock.try_code(guest["code"]) is None
        await assert_unknown(site, guest)
        await assert_removed(site, backup)
        assert_sound_pool(lock, await pooled(site), 3)  # the pool itself is untouched


async def test_unmanaging_removes_every_backup_and_nothing_else(
    make_config: ConfigFactory,
) -> None:
    config = pool_config(make_config, initial_codes={"8": "2468"})
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        cleaner = await create_ongoing(site)
        guest, backup = await stay_with_backup(site)
        backups = [*await pooled(site), backup]
        backup_pins = {b["code"] for b in backups}
        assert len(backup_pins) == 4
        kept = {
            s: pin
            for s, pin in lock.slots.items()
            if pin in {cleaner["code"], guest["code"], "2468"}
        }
        assert len(kept) == 3

        ok(await site.api.call("devices/update", device_id=FRONT, is_managed=False))
        await site.settled()
        assert lock.slots == kept  # the other codes stay exactly where they were
        assert not backup_pins & set(lock.slots.values())
        assert counts(await props(site)) == (0, 0)
        retained = await retained_device(site)
        assert retained["is_managed"] is False
        assert "empty_backup_access_code_pool" not in error_codes(retained)
        # The guest's backup is gone, so is the link to it; no backup is to be had meanwhile.
        found_guest = await get_code(site, guest["access_code_id"])
        assert found_guest["pulled_backup_access_code_id"] is None
        assert found_guest["is_backup_access_code_available"] is False
        assert (await pull(site, guest["access_code_id"]))["ok"] is False

        # Managed again: the pool fills again, with fresh backups.
        ok(await site.api.call("devices/update", device_id=FRONT, is_managed=True))
        await site.settled()
        pool = await pooled(site)
        assert_sound_pool(lock, pool, 3)
        # New codes. (Their random PINs may by chance repeat a removed one's: one in a few
        # thousand; the PINs' own rules are tested with generate_code.)
        assert not {b["access_code_id"] for b in backups} & {b["access_code_id"] for b in pool}
        assert lock.try_code(cleaner["code"]) is not None
        assert lock.try_code(guest["code"]) is not None
        assert (await props(site))["backup_codes_available"] == 3
        # The guest can be helped again, with a fresh backup.
        again = ok(await pull(site, guest["access_code_id"]))["backup_access_code"]
        assert again["access_code_id"] != backup["access_code_id"]
        assert on_lock(lock, again)


# -- 7. the story -------------------------------------------------------------------------------


async def test_the_story_end_to_end(make_config: ConfigFactory) -> None:
    config = pool_config(make_config)
    max_attempts = config.timing.max_attempts
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        stream = await event_stream(site)
        assert (await props(site))["backup_codes_available"] == 3

        # A stay is booked; when it starts, the lock's radio drops every try.
        await lock.control({"fail_next": max_attempts, "error": "busy"})
        guest = await create_stay(site, start_in=3600, hours=49, name="Guest: A. Jensen")
        assert guest["status"] == "unset"
        await site.advance(3600)
        failed = await wait_for_json(stream, is_event("access_code.failed_to_set_on_device"))
        assert failed["access_code_id"] == guest["access_code_id"]
        guest = await get_code(site, guest["access_code_id"])
        assert "failed_to_set_on_device" in error_codes(guest)
        assert guest["status"] == "setting"
        assert lock.try_code(guest["code"]) is None
        assert guest["is_backup_access_code_available"] is True

        # The guest is at the door: a backup, at once, that opens it.
        reply = ok(await pull(site, guest["access_code_id"]))
        backup = reply["backup_access_code"]
        assert "using_backup_access_code" in warning_codes(reply["access_code"])
        assert lock.try_code(backup["code"]) == backup["slot"]
        control = simulator_settings(config).control_topic
        keypad = await site.api.subscribe(f"{control}/{FRONT}/keypad")
        await lock.control({"enter": backup["code"]})
        assert (await next_json(keypad))["code_accepted"] is True

        # The pool refills behind it.
        await site.settled()
        assert counts(await props(site)) == (3, 1)
        assert_sound_pool(lock, await pooled(site), 3)

        # The stay ends: the backup no longer opens the door.
        await site.advance(48 * 3600)
        assert lock.try_code(backup["code"]) is None
        assert counts(await props(site)) == (3, 0)
