"""The backup access code pool (contract sections 7 and 9, issue 4): which locks support it, how
it is enabled (and that it cannot be disabled), unpulled backups left out of listings, and
``is_backup_access_code_available`` exact at every moment.

Runs the real gateway, a real mosquitto and the lock simulator (see
:mod:`tests.backup_pool_helpers`). Nothing is mocked: what is asserted is what a client sees over
MQTT and what a guest would find at the keypad.
"""

from __future__ import annotations

from gateway.clock import ManualClock
from tests.backup_pool_helpers import (
    FOREVER,
    FRONT,
    PAST_BACKOFF,
    assert_sound_pool,
    available,
    counts,
    create_ongoing,
    create_stay,
    enable_pool,
    gateway_site,
    listing,
    pool_config,
    pooled,
    props,
    pull,
    refused,
    refused_pull,
    retained_device,
    settled_stay,
)
from tests.conftest import ConfigFactory
from tests.harness import get_code, ok, running_simulator, running_site, wait_for_json, window

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
