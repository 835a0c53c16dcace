"""``access_codes/update`` and ``delete``: the replies and their refusals, unknown and malformed
ids, and idempotent requests (a repeated create, update or delete does it once).

What lands on the lock, and when, is the business of the ``test_reconcile_*`` files; here it is
what a caller of the API sees in the replies, against the real gateway and locks.
"""

from __future__ import annotations

import asyncio
import uuid

from tests.access_codes_helpers import Refusal, codes_of, misjudged, refused
from tests.conftest import ConfigFactory
from tests.harness import Recorder, at, barrier, create, get_code, new_code, running_site

# -- update and delete ------------------------------------------------------------------------


async def test_update_name_window_and_type(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        cid = await new_code(site, "2580", name="Carol")
        reply = await site.api.call(
            "access_codes/update", access_code_id=cid, name="Carol B.", request_id="u"
        )
        assert reply["ok"] is True
        assert reply["request_id"] == "u"
        assert reply["access_code"]["name"] == "Carol B."
        assert reply["access_code"]["code"] == "2580"

        starts, ends = at(site, 3600), at(site, 7200)
        reply = await site.api.call(
            "access_codes/update", access_code_id=cid, starts_at=starts, ends_at=ends
        )
        updated = reply["access_code"]
        assert (updated["type"], updated["starts_at"], updated["ends_at"]) == (
            "time_bound",
            starts,
            ends,
        )
        # Only one end of the window: the other is kept.
        later = at(site, 9000)
        reply = await site.api.call("access_codes/update", access_code_id=cid, ends_at=later)
        assert (reply["access_code"]["starts_at"], reply["access_code"]["ends_at"]) == (
            starts,
            later,
        )
        reply = await site.api.call("access_codes/update", access_code_id=cid, type="ongoing")
        updated = reply["access_code"]
        assert (updated["type"], updated["starts_at"], updated["ends_at"]) == (
            "ongoing",
            None,
            None,
        )
        got = await get_code(site, cid)
        assert got["type"] == "ongoing"
        assert got["name"] == "Carol B."


async def test_update_refusals(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        cid = await new_code(site, "2580")
        await new_code(site, "3690")
        cases: list[Refusal] = [
            ({"code": "3690"}, "duplicate_access_code", "code"),
            ({"code": "123"}, "code_constraints_violated", "code"),
            ({"code": "12x4"}, "invalid_input", "code"),
            ({"code": 2581}, "invalid_input", "code"),
            ({"ends_at": at(site, -1)}, "invalid_input", "starts_at"),  # no starts_at
            ({"starts_at": at(site, 10), "ends_at": at(site, -1)}, "invalid_input", "ends_at"),
            ({"starts_at": at(site, 20), "ends_at": at(site, 10)}, "invalid_input", "ends_at"),
            ({"type": "ongoing", "ends_at": at(site, 10)}, "invalid_input", "type"),
            ({"type": "time_bound"}, "invalid_input", "type"),
            ({"type": "forever"}, "invalid_input", "type"),
            ({"name": 5}, "invalid_input", "name"),
            ({"device_id": "back_door"}, "invalid_input", "device_id"),
        ]
        assert await misjudged(site, "access_codes/update", cases, access_code_id=cid) == []
        error = await refused(site, "access_codes/update", name="x")
        assert error["type"] == "invalid_input"
        assert "access_code_id" in error["message"]
        # Nothing changed on the way.
        got = await get_code(site, cid)
        assert (got["code"], got["type"], got["name"]) == ("2580", "ongoing", None)
        # Keeping one's own PIN is no clash.
        reply = await site.api.call("access_codes/update", access_code_id=cid, code="2580")
        assert reply["ok"] is True


async def test_delete_replies_and_the_code_is_gone(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        cid = await new_code(site, "8642")
        await site.settled()
        reply = await site.api.call("access_codes/delete", access_code_id=cid, request_id="d")
        assert reply == {"ok": True, "request_id": "d"}
        await site.settled()
        error = await refused(site, "access_codes/get", access_code_id=cid)
        assert error["type"] == "access_code_not_found"
        assert "access_code_id" in error["message"]
        assert await codes_of(site, "front_door") == []
        error = await refused(site, "access_codes/delete", access_code_id=cid)
        assert error["type"] == "access_code_not_found"
        # Once off the lock, its PIN is free again.
        again = await create(site, device_id="front_door", code="8642")
        assert again["access_code_id"] != cid


async def test_unknown_and_malformed_ids(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        nobody = str(uuid.uuid4())
        for endpoint, extra in [
            ("access_codes/get", {}),
            ("access_codes/update", {"name": "x"}),
            ("access_codes/delete", {}),
        ]:
            error = await refused(site, endpoint, access_code_id=nobody, **extra)
            assert error["type"] == "access_code_not_found", endpoint
            assert "access_code_id" in error["message"]
            error = await refused(site, endpoint, access_code_id="1234", **extra)
            assert error["type"] == "invalid_input", endpoint
            assert "access_code_id" in error["message"]
            error = await refused(site, endpoint, access_code_id=7, **extra)
            assert error["type"] == "invalid_input", endpoint
        for endpoint, extra in [
            ("access_codes/create", {"code": "1357"}),
            ("access_codes/generate_code", {}),
            ("access_codes/unmanaged/list", {}),
            ("access_codes/list", {}),
        ]:
            error = await refused(site, endpoint, device_id="garage", **extra)
            assert error["type"] == "device_not_found", endpoint
            assert "garage" in error["message"]
            error = await refused(site, endpoint, device_id="no/slash", **extra)
            assert error["type"] == "invalid_input", endpoint
        error = await refused(site, "access_codes/delete")
        assert error["type"] == "invalid_input"


# -- idempotency ------------------------------------------------------------------------------


async def test_idempotent_create_makes_one_code(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        events = await Recorder.of(site, f"{config.prefix}/events/access_code.created")
        first = await site.api.call(
            "access_codes/create", device_id="front_door", name="Dora", idempotency_key="k-1"
        )
        assert first["ok"] is True
        again = await site.api.call(
            "access_codes/create", device_id="front_door", name="Dora", idempotency_key="k-1"
        )
        assert again["access_code"] == first["access_code"]  # the generated PIN too
        concurrent = await asyncio.gather(
            *(
                site.api.call(
                    "access_codes/create",
                    device_id="back_door",
                    name="Eve",
                    idempotency_key="k-2",
                )
                for _ in range(4)
            )
        )
        assert len({r["access_code"]["access_code_id"] for r in concurrent}) == 1
        # A new key is a new code.
        other = await site.api.call(
            "access_codes/create", device_id="front_door", name="Dora", idempotency_key="k-3"
        )
        assert other["access_code"]["access_code_id"] != first["access_code"]["access_code_id"]
        await barrier(site)
        assert len(await codes_of(site, "front_door")) == 2
        assert len(await codes_of(site, "back_door")) == 1
        created = events.pull()
        assert len(created) == 3
        assert created[0]["access_code_id"] == first["access_code"]["access_code_id"]


async def test_idempotent_update_and_delete(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        cid = await new_code(site, "7733", name="Finn")
        first = await site.api.call(
            "access_codes/update", access_code_id=cid, name="Finn 2", idempotency_key="u-1"
        )
        await site.api.call("access_codes/update", access_code_id=cid, name="Finn 3")
        again = await site.api.call(
            "access_codes/update", access_code_id=cid, name="Finn 2", idempotency_key="u-1"
        )
        assert again == first
        got = await get_code(site, cid)
        assert got["name"] == "Finn 3"  # the redelivery did not undo the later change
        await site.settled()
        deleted = await site.api.call(
            "access_codes/delete", access_code_id=cid, idempotency_key="d-1"
        )
        assert deleted["ok"] is True
        await site.settled()
        # The code is gone, but a redelivered delete gets the first (successful) reply.
        assert (
            await site.api.call("access_codes/delete", access_code_id=cid, idempotency_key="d-1")
            == deleted
        )
