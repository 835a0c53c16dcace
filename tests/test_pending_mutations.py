"""``pending_mutations`` (contract section 11): what the gateway still has to do on the lock for
a code, true at every moment — while the lock is away, and empty once the lock matches."""

from __future__ import annotations

from typing import Any

from gateway.model import Json
from tests.conftest import ConfigFactory
from tests.contract import MUTATION_CODES, MUTATIONS_WITH_CHANGE
from tests.harness import Site, create, get_code, ok, running_site, window


def pending(code: Json) -> list[tuple[str, Any, Any]]:
    """Each mutation as (code, from, to); checks the shape the contract gives."""
    found = []
    for m in code["pending_mutations"]:
        assert m["mutation_code"] in MUTATION_CODES
        assert isinstance(m["created_at"], str)
        assert ("from" in m) == ("to" in m) == (m["mutation_code"] in MUTATIONS_WITH_CHANGE)
        found.append((m["mutation_code"], m.get("from"), m.get("to")))
    return found


async def away(site: Site) -> None:
    await site.lock("front_door").control({"online": False})
    await site.settled()


async def back(site: Site) -> None:
    await site.lock("front_door").control({"online": True})
    await site.settled()


async def test_a_new_code_is_creating_until_it_is_on_the_lock(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        await away(site)
        code = await create(site, device_id="front_door", code="4821")
        assert pending(code) == [("creating", None, None)]
        assert code["pending_mutations"][0]["created_at"] == code["created_at"]
        assert pending(await get_code(site, code["access_code_id"])) == [("creating", None, None)]
        await back(site)
        now = await get_code(site, code["access_code_id"])
        assert now["status"] == "set"
        assert pending(now) == []


async def test_a_new_pin_is_pending_from_the_old_to_the_new(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        cid = (await create(site, device_id="front_door", code="4821"))["access_code_id"]
        await site.settled()
        await away(site)
        reply = ok(await site.api.call("access_codes/update", access_code_id=cid, code="5932"))
        assert pending(reply["access_code"]) == [
            ("updating_code", {"code": "4821"}, {"code": "5932"})
        ]
        # A second change while the lock is still away: from what the lock holds, to the last.
        ok(await site.api.call("access_codes/update", access_code_id=cid, code="6043"))
        assert pending(await get_code(site, cid)) == [
            ("updating_code", {"code": "4821"}, {"code": "6043"})
        ]
        await back(site)
        assert "6043" in site.lock("front_door").slots.values()
        assert pending(await get_code(site, cid)) == []


async def test_an_update_undone_before_the_lock_saw_it_is_not_pending(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        cid = (await create(site, device_id="front_door", code="4821"))["access_code_id"]
        await site.settled()
        await away(site)
        ok(await site.api.call("access_codes/update", access_code_id=cid, code="5932"))
        ok(await site.api.call("access_codes/update", access_code_id=cid, code="4821"))
        assert pending(await get_code(site, cid)) == []


async def test_a_window_moved_away_is_pending_until_the_code_is_off(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        before = window(site, -60, 3600)
        code = await create(site, device_id="front_door", code="4821", **before)
        cid = code["access_code_id"]
        await site.settled()
        assert (await get_code(site, cid))["status"] == "set"
        # Stretching the window changes nothing on the lock: nothing is pending.
        longer = {"ends_at": window(site, 0, 7200)["ends_at"]}
        reply = ok(await site.api.call("access_codes/update", access_code_id=cid, **longer))
        assert pending(reply["access_code"]) == []
        await away(site)
        later = window(site, 1800, 7200)
        reply = ok(await site.api.call("access_codes/update", access_code_id=cid, **later))
        assert pending(reply["access_code"]) == [
            (
                "updating_time_frame",
                {"starts_at": before["starts_at"], "ends_at": longer["ends_at"]},
                later,
            )
        ]
        await back(site)
        now = await get_code(site, cid)
        assert (now["status"], pending(now)) == ("unset", [])
        assert "4821" not in site.lock("front_door").slots.values()


async def test_a_deleted_code_is_deleting_until_it_is_gone(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        cid = (await create(site, device_id="front_door", code="4821"))["access_code_id"]
        await site.settled()
        await away(site)
        ok(await site.api.call("access_codes/delete", access_code_id=cid))
        assert pending(await get_code(site, cid)) == [("deleting", None, None)]
        await back(site)
        gone = await site.api.call("access_codes/get", access_code_id=cid)
        assert gone["error"]["type"] == "access_code_not_found"


async def test_a_code_waiting_for_its_window_has_nothing_pending(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        code = await create(site, device_id="front_door", code="4821", **window(site, 7200, 9000))
        await site.settled()
        now = await get_code(site, code["access_code_id"])
        assert (now["status"], pending(now)) == ("unset", [])
