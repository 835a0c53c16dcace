"""Shared by the ``test_backup_pool_*`` files: a front door with a backup pool section, a
gateway restartable against a running simulator, and helpers that create stays, pull backups and
read back what a client sees (device properties, listings, events, pool problems).

Everything runs for real: the gateway, its SQLite database, a real mosquitto and the lock
simulator with its faults; the calendar is a ManualClock the tests move.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

from drivers.sim import SimulatedLock, Simulator
from gateway.clock import Clock
from gateway.config import Config
from gateway.model import Json
from tests.conftest import ConfigFactory, codes_on_lock
from tests.harness import (
    Site,
    api_client,
    create,
    device,
    get_code,
    next_json,
    ok,
    running_gateway,
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
async def gateway_site(config: Config, clock: Clock, sim: Simulator) -> AsyncIterator[Site]:
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


def counts(properties: Json) -> tuple[int, int]:
    """``backup_codes_available`` and ``active_backup_codes`` of a device's properties."""
    return properties["backup_codes_available"], properties["active_backup_codes"]


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
