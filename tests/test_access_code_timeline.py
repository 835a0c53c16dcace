"""``access_codes/get_timeline`` (contract section 11): a code's story from the stored events,
its pulled backup's included, oldest first, also after the code is deleted."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.model import Json
from tests.backup_pool_helpers import pool_config, refused, stay_with_backup
from tests.conftest import ConfigFactory
from tests.harness import Site, ok, running_site


async def timeline(site: Site, access_code_id: str, **params: Any) -> Json:
    return await site.api.call(
        "access_codes/get_timeline", access_code_id=access_code_id, **params
    )


def told(events: list[Json]) -> list[tuple[str, str]]:
    return [(e["event_type"], e["access_code_id"]) for e in events]


async def test_a_guests_story_shows_its_backup_and_outlives_the_code(
    make_config: ConfigFactory,
) -> None:
    async with running_site(pool_config(make_config)) as site:
        guest, backup = await stay_with_backup(site, hours=30)
        gid, bid = guest["access_code_id"], backup["access_code_id"]
        ok(await site.api.call("access_codes/delete", access_code_id=gid))
        await site.settled()
        assert (await site.api.call("access_codes/get", access_code_id=gid))["ok"] is False

        story = ok(await timeline(site, gid))["timeline"]
        steps = told(story)
        own = [kind for kind, cid in steps if cid == gid]
        assert own[0] == "access_code.created"
        assert "access_code.set_on_device" in own
        assert own[-1] == "access_code.deleted"
        pulled = steps.index(("access_code.backup_access_code_pulled", gid))
        assert story[pulled]["backup_access_code_id"] == bid
        # The backup's own events (from its time in the pool on) belong to the guest's story,
        # and nothing else does.
        assert ("access_code.set_on_device", bid) in steps
        assert {cid for _, cid in steps} == {gid, bid}
        # Oldest first, as stored: the same order events/list gives.
        every = ok(
            await site.api.call("events/list", since="2000-01-01T00:00:00Z", limit=1000)
        )["events"]
        in_order = [e["event_id"] for e in every if e.get("access_code_id") in (gid, bid)]
        assert [e["event_id"] for e in story] == in_order


async def test_the_limit_keeps_the_oldest_and_is_bounded(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        guest, _ = await stay_with_backup(site, hours=30)
        gid = guest["access_code_id"]
        whole = ok(await timeline(site, gid))["timeline"]
        assert len(whole) >= 3
        first_two = ok(await timeline(site, gid, limit=2))["timeline"]
        assert first_two == whole[:2]
        for limit in (0, 201, "5", True):
            refused(await timeline(site, gid, limit=limit), "invalid_input", "limit")


async def test_a_code_never_heard_of_has_no_timeline(make_config: ConfigFactory) -> None:
    async with running_site(pool_config(make_config)) as site:
        refused(await timeline(site, str(uuid.uuid4())), "access_code_not_found", "access_code_id")
        refused(await timeline(site, "not-a-uuid"), "invalid_input", "access_code_id")
