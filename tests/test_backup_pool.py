"""The backup access code pool (contract sections 7 and 9, issue 4), proven end to end.

Every test runs the real gateway, its SQLite database, a real mosquitto and the lock simulator
with its faults; the calendar is a ManualClock the tests move. Nothing is mocked: what is
asserted is what a client sees over MQTT (replies, retained device objects, events) and what a
guest would find at the keypad (the simulated lock's slot table).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest

from drivers.sim import SimulatedLock, Simulator
from gateway.clock import ManualClock
from gateway.config import Config
from gateway.model import Json
from tests.conftest import ConfigFactory, codes_on_lock
from tests.harness import (
    Site,
    api_client,
    at,
    create,
    device,
    error_codes,
    get_code,
    is_event,
    next_json,
    ok,
    running_gateway,
    running_simulator,
    running_site,
    wait_for_json,
    warning_codes,
    window,
)

FRONT = "front_door"
BACKUP_NAME = re.compile(r"^Backup [0-9a-f]{4}$")
EPOCH = "2000-01-01T00:00:00Z"
#: A lock that cannot take a single new code for the rest of the test.
FOREVER = 100_000
#: Longer than any retry backoff (its ceiling is 600 s), far shorter than any stay here.
PAST_BACKOFF = 700.0


# -- site set-up --------------------------------------------------------------------------------


def pool_config(
    make_config: ConfigFactory,
    *,
    slots: int = 8,
    size: int = 3,
    enabled: bool = True,
    initial_codes: dict[str, str] | None = None,
    threshold: int = 2,
    fill_grace: str = "30s",
    timing: dict[str, Any] | None = None,
    extra_devices: list[dict[str, Any]] | None = None,
) -> Config:
    """One native front door with a pool section, plus whatever else a test needs."""
    front = {
        "device_id": FRONT,
        "name": "Front door",
        "driver": "native",
        "slots": slots,
        "backup_pool": {"enabled": enabled, "size": size},
    }
    overrides: dict[str, Any] = {
        "devices": [front, *(extra_devices or [])],
        "backup_pool": {"size": size, "many_active_threshold": threshold, "fill_grace": fill_grace},
    }
    if initial_codes:
        overrides["simulator"] = codes_on_lock(initial_codes)
    if timing:
        overrides["timing"] = timing
    return make_config(**overrides)


@asynccontextmanager
async def gateway_site(config: Config, clock: ManualClock, sim: Simulator) -> AsyncIterator[Site]:
    """A gateway (and API client) against an already running simulator: restartable alone."""
    async with running_gateway(config, clock) as gateway, api_client(config) as api:
        site = Site(config, clock, gateway, api, sim)
        await site.settled()
        yield site


# -- small helpers ------------------------------------------------------------------------------


def refused(reply: Json, error_type: str, field: str) -> None:
    assert reply.get("ok") is False, reply
    assert reply["error"]["type"] == error_type, reply
    assert field in reply["error"]["message"], reply


async def enable_pool(site: Site) -> Json:
    """Switch the front door's pool on through the API, which must accept it."""
    return ok(
        await site.api.call("devices/update", device_id=FRONT, backup_access_code_pool_enabled=True)
    )


async def props(site: Site, device_id: str = FRONT) -> Json:
    found: Json = (await device(site, device_id))["properties"]
    return found


async def retained_device(site: Site, device_id: str = FRONT) -> Json:
    """The device object as a newcomer reads it from the retained topic."""
    queue = await site.api.subscribe(f"{site.config.prefix}/devices/{device_id}")
    found: Json = await next_json(queue)
    return found


async def available(site: Site, code: Json) -> bool:
    """``is_backup_access_code_available`` of ``code`` as the gateway answers it now."""
    flag: bool = (await get_code(site, code["access_code_id"]))["is_backup_access_code_available"]
    return flag


async def listing(site: Site, *, include_pool: bool = False, device_id: str = FRONT) -> list[Json]:
    params: Json = {"device_id": device_id}
    if include_pool:
        params["include_backup_pool"] = True
    found: list[Json] = ok(await site.api.call("access_codes/list", **params))["access_codes"]
    return found


async def pooled(site: Site, device_id: str = FRONT) -> list[Json]:
    """Unpulled backups: listed only with include_backup_pool, ongoing, no window."""
    return [
        c
        for c in await listing(site, include_pool=True, device_id=device_id)
        if c["is_backup"] and c["type"] == "ongoing"
    ]


async def events(site: Site, *types: str, **filters: str) -> list[Json]:
    params: Json = {"since": EPOCH, "limit": 1000, **filters}
    if types:
        params["event_types"] = list(types)
    found: list[Json] = ok(await site.api.call("events/list", **params))["events"]
    return found


POOL_PROBLEMS = frozenset(
    {
        "empty_backup_access_code_pool",
        "partial_backup_access_code_pool",
        "many_active_backup_codes",
    }
)


async def pool_problems_raised(site: Site) -> list[str]:
    """Every pool problem raised on the front door so far, in order."""
    raised = await events(site, "device.warning_added", "device.error_added", device_id=FRONT)
    return [
        code
        for e in raised
        if (code := e.get("warning_code") or e.get("error_code")) in POOL_PROBLEMS
    ]


async def event_stream(site: Site) -> asyncio.Queue[aiomqtt.Message]:
    return await site.api.subscribe(f"{site.config.prefix}/events/#")


async def front_door_event(
    stream: asyncio.Queue[aiomqtt.Message], event_type: str, **fields: str
) -> Json:
    """The next event on ``stream`` of ``event_type`` with ``fields``; it is the front door's."""
    event: Json = await wait_for_json(stream, is_event(event_type, **fields))
    assert event["device_id"] == FRONT
    return event


async def create_stay(
    site: Site,
    *,
    hours: float = 48.0,
    start_in: float = 0.0,
    name: str = "Guest",
    device_id: str = FRONT,
    **extra: Any,
) -> Json:
    """A time_bound code from ``start_in`` seconds from now, lasting until ``hours`` from now."""
    return await create(
        site, device_id=device_id, name=name, **window(site, start_in, hours * 3600), **extra
    )


async def settled_stay(site: Site, **stay: Any) -> Json:
    """:func:`create_stay`, then the gateway settled."""
    guest = await create_stay(site, **stay)
    await site.settled()
    return guest


async def stay_with_backup(site: Site, **stay: Any) -> tuple[Json, Json]:
    """A settled stay (see :func:`create_stay`) and the backup pulled for it, settled too."""
    guest = await settled_stay(site, **stay)
    backup = ok(await pull(site, guest["access_code_id"]))["backup_access_code"]
    await site.settled()
    return guest, backup


async def create_ongoing(site: Site, *, name: str = "Cleaner", device_id: str = FRONT) -> Json:
    return await create(site, device_id=device_id, name=name)


async def pull(site: Site, access_code_id: str) -> Json:
    return await site.api.call(
        "access_codes/pull_backup_access_code", access_code_id=access_code_id
    )


async def refused_pull(
    site: Site, code: Json, error_type: str = "no_backup_access_code_available"
) -> None:
    refused(await pull(site, code["access_code_id"]), error_type, "access_code_id")


async def refill_against(site: Site, fault: Json) -> Json:
    """A stay, and a backup pulled for it once the front door has ``fault``: the refill that
    follows runs into it. The front door, as the gateway then describes it."""
    guest = await settled_stay(site)
    await site.lock(FRONT).control(fault)
    ok(await pull(site, guest["access_code_id"]))
    await site.settled()
    return await device(site)


def counts(properties: Json) -> tuple[int, int]:
    """``backup_codes_available`` and ``active_backup_codes`` of a device's properties."""
    return properties["backup_codes_available"], properties["active_backup_codes"]


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


def on_lock(lock: SimulatedLock, code: Json) -> bool:
    """The guest's PIN opens the door, from the slot the gateway says it is in."""
    return code["slot"] is not None and lock.try_code(code["code"]) == code["slot"]


def assert_sound_pool(lock: SimulatedLock, pool: list[Json], size: int) -> None:
    """``size`` backups, each a set ongoing code with a fresh PIN, really on the lock."""
    assert len(pool) == size
    for backup in pool:
        assert backup["is_backup"] is True
        assert backup["type"] == "ongoing"
        assert backup["starts_at"] is None
        assert backup["ends_at"] is None
        assert backup["status"] == "set"
        assert backup["is_managed"] is True
        assert backup["pulled_backup_access_code_id"] is None
        assert BACKUP_NAME.match(backup["name"] or ""), backup["name"]
        assert on_lock(lock, backup)
    # No PIN twice on the lock: every backup differs from every other slot.
    assert len(set(lock.slots.values())) == len(lock.slots)


# -- 1. support and enabling --------------------------------------------------------------------


async def test_support_needs_two_slots(make_config: ConfigFactory) -> None:
    tiny = {"device_id": "shed", "name": "Shed", "driver": "native", "slots": 1}
    config = pool_config(make_config, enabled=False, extra_devices=[tiny])
    async with running_site(config) as site:
        assert (await props(site))["supports_backup_access_code_pool"] is True
        shed = await props(site, "shed")
        assert shed["supports_backup_access_code_pool"] is False
        assert shed["max_active_codes_supported"] == 1

        reply = await site.api.call(
            "access_codes/create",
            device_id="shed",
            name="Guest",
            **window(site, 0, 2 * 3600),
            use_backup_access_code_pool=True,
        )
        refused(reply, "backup_pool_not_supported", "use_backup_access_code_pool")
        # Refused means nothing happened: no code, no pool.
        assert await listing(site, include_pool=True, device_id="shed") == []
        reply = await site.api.call(
            "devices/update", device_id="shed", backup_access_code_pool_enabled=True
        )
        refused(reply, "backup_pool_not_supported", "backup_access_code_pool_enabled")
        await site.settled()
        shed = await props(site, "shed")
        assert shed["backup_access_code_pool_enabled"] is False
        assert shed["backup_codes_available"] == 0
        assert site.lock("shed").slots == {}


async def test_create_with_use_backup_pool_enables_and_fills_it(
    make_config: ConfigFactory,
) -> None:
    config = pool_config(make_config, enabled=False, initial_codes={"2": "2468"})
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        before = await props(site)
        assert before["backup_access_code_pool_enabled"] is False
        assert before["backup_codes_available"] == 0
        assert await pooled(site) == []

        guest = await create_stay(site, use_backup_access_code_pool=True)
        # Committed at once; nothing is on the lock yet, so nothing is available yet.
        assert (await props(site))["backup_access_code_pool_enabled"] is True
        assert guest["is_backup_access_code_available"] is False

        await site.settled()
        pool = await pooled(site)
        assert_sound_pool(lock, pool, 3)
        pins = {b["code"] for b in pool}
        assert guest["code"] not in pins
        assert "2468" not in pins  # nor the PIN someone typed in at the keypad
        assert lock.slots[2] == "2468"  # which stays where it was
        slots = {b["slot"] for b in pool}
        assert len(slots) == 3
        assert 2 not in slots

        now_props = await props(site)
        assert now_props["backup_codes_available"] == 3
        assert now_props["backup_pool_size"] == 3
        assert now_props["active_backup_codes"] == 0
        assert await available(site, guest) is True
        retained = (await retained_device(site))["properties"]
        assert retained["backup_access_code_pool_enabled"] is True
        assert retained["backup_codes_available"] == 3


async def test_config_enables_the_pool_with_its_own_size(make_config: ConfigFactory) -> None:
    config = pool_config(make_config, size=2)
    async with running_site(config) as site:
        found = await props(site)
        assert found["backup_access_code_pool_enabled"] is True
        assert found["backup_pool_size"] == 2
        assert found["backup_codes_available"] == 2
        assert_sound_pool(site.lock(FRONT), await pooled(site), 2)


async def test_devices_update_enables_the_pool(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config, enabled=False)) as site:
        reply = await enable_pool(site)
        assert reply["device"]["properties"]["backup_access_code_pool_enabled"] is True
        await site.settled()
        assert_sound_pool(site.lock(FRONT), await pooled(site), 3)


async def test_pool_cannot_be_disabled(make_config: ConfigFactory) -> None:
    """Neither by the API nor by a config file that no longer enables it."""
    config = pool_config(make_config, enabled=False)
    clock = ManualClock()
    async with running_simulator(config) as sim:
        async with gateway_site(config, clock, sim) as site:
            guest = await settled_stay(site, use_backup_access_code_pool=True)
            reply = await site.api.call(
                "devices/update", device_id=FRONT, backup_access_code_pool_enabled=False
            )
            refused(reply, "backup_pool_cannot_be_disabled", "backup_access_code_pool_enabled")
            # Asking for what is already so is fine.
            await enable_pool(site)
            assert (await props(site))["backup_access_code_pool_enabled"] is True
            pins = {b["code"] for b in await pooled(site)}
        # The config says enabled: false; the pool enabled by the API stays.
        async with gateway_site(config, clock, sim) as site:
            found = await props(site)
            assert found["backup_access_code_pool_enabled"] is True
            assert found["backup_codes_available"] == 3
            assert {b["code"] for b in await pooled(site)} == pins
            assert await available(site, guest) is True


# -- 2. pool codes in listings ------------------------------------------------------------------


async def test_list_leaves_unpulled_backups_out(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        cleaner = await create_ongoing(site)
        guest = await settled_stay(site)

        assert {c["access_code_id"] for c in await listing(site)} == {
            cleaner["access_code_id"],
            guest["access_code_id"],
        }
        everything = await listing(site, include_pool=True)
        assert len(everything) == 5
        pool_ids = [c["access_code_id"] for c in everything if c["is_backup"]]
        assert len(pool_ids) == 3
        # Named by id, a pool code is still left out unless asked for.
        by_ids = await site.api.call("access_codes/list", access_code_ids=pool_ids)
        assert ok(by_ids)["access_codes"] == []
        by_ids = await site.api.call(
            "access_codes/list", access_code_ids=pool_ids, include_backup_pool=True
        )
        assert len(ok(by_ids)["access_codes"]) == 3

        # Once pulled, a backup is the guest's code and is listed like any other.
        backup = ok(await pull(site, guest["access_code_id"]))["backup_access_code"]
        listed = {c["access_code_id"] for c in await listing(site)}
        assert backup["access_code_id"] in listed
        await site.settled()
        assert len(await listing(site)) == 3
        assert len(await listing(site, include_pool=True)) == 6


# -- 3. is_backup_access_code_available ---------------------------------------------------------


async def test_availability_is_exact_at_every_moment(make_config: ConfigFactory) -> None:
    config = pool_config(make_config, size=1, enabled=False, threshold=5)
    async with running_site(config) as site:
        lock = site.lock(FRONT)
        a = await create_stay(site, name="A")
        b = await create_stay(site, name="B")
        await site.settled()
        # No pool at all.
        assert await available(site, a) is False

        # Pool enabled, but its backup cannot reach the lock: still nothing available.
        await lock.control({"online": False})
        await wait_for_json(
            await site.api.subscribe(f"{config.prefix}/devices/{FRONT}"),
            lambda d: d["properties"]["online"] is False,
        )
        await enable_pool(site)
        await site.settled()
        assert await available(site, a) is False
        assert (await props(site))["backup_codes_available"] == 0
        await refused_pull(site, a)

        # The lock returns and the backup is set: available to every code of the device.
        await lock.control({"online": True})
        await site.settled()
        for code in (a, b):
            found = await get_code(site, code["access_code_id"])
            assert found["is_backup_access_code_available"] is True
        assert counts((await retained_device(site))["properties"]) == (1, 0)

        # The lock stops taking codes; A pulls the only backup and the pool cannot refill.
        await lock.control({"fail_next": FOREVER})
        ok(await pull(site, a["access_code_id"]))
        await site.settled()
        assert await available(site, a) is True
        assert await available(site, b) is False
        assert counts(await props(site)) == (0, 1)
        assert counts((await retained_device(site))["properties"]) == (0, 1)
        # In the listing too, each code answers for itself.
        flags = {
            c["access_code_id"]: c["is_backup_access_code_available"] for c in await listing(site)
        }
        assert flags[a["access_code_id"]] is True
        assert flags[b["access_code_id"]] is False

        # The lock recovers; the refill makes a backup available to B again.
        await lock.control({"reset": True, "fail_next": 0})
        await site.advance(PAST_BACKOFF)
        assert await available(site, b) is True
        assert counts((await retained_device(site))["properties"]) == (1, 1)


# -- 4. pulling ---------------------------------------------------------------------------------


async def test_pull_hands_out_a_backup_and_refills(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        lock = site.lock(FRONT)
        stream = await event_stream(site)
        guest = await settled_stay(site, hours=30)
        pool_before = {b["access_code_id"] for b in await pooled(site)}
        pulled_at = at(site, 0)

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
        backup_pins = {b["code"] for b in await pooled(site)} | {backup["code"]}
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
        assert not backup_pins & {b["code"] for b in pool}
        assert lock.try_code(cleaner["code"]) is not None
        assert lock.try_code(guest["code"]) is not None
        assert (await props(site))["backup_codes_available"] == 3
        # The guest can be helped again, with a fresh backup.
        again = ok(await pull(site, guest["access_code_id"]))["backup_access_code"]
        assert again["access_code_id"] != backup["access_code_id"]
        assert on_lock(lock, again)


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
        keypad = await site.api.subscribe(f"{config.simulator.control_topic}/{FRONT}/keypad")
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
