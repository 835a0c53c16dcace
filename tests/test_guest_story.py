"""Issue 11's whole story in one test, as a property manager lives it: a guest with one shared PIN
on two doors, the front door failing to take it, a backup pulled, the guest opening both doors,
and each code's timeline telling all of it."""

from __future__ import annotations

from gateway.model import Json
from tests.backup_pool_helpers import FRONT, pool_config, pull
from tests.conftest import ConfigFactory
from tests.harness import Recorder, is_event, ok, running_site, window

FLAT = "flat_door"


def story(timeline: list[Json]) -> list[tuple[str, str]]:
    return [(e["event_type"], e["access_code_id"]) for e in timeline]


async def test_one_guest_two_doors_a_failing_lock_a_backup_and_the_whole_story(
    make_config: ConfigFactory,
) -> None:
    flat = {"device_id": FLAT, "name": "Flat 3", "driver": "native", "slots": 8}
    config = pool_config(make_config, extra_devices=[flat], timing={"max_attempts": 2})
    async with running_site(config) as site:
        front_lock, flat_lock = site.lock(FRONT), site.lock(FLAT)
        events = await Recorder.events(site)
        # The front door's radio drops every write from now on; the flat door works.
        await front_lock.control({"fail_next": 1000, "error": "busy"})

        reply = ok(
            await site.api.call(
                "access_codes/create_multiple",
                device_ids=[FRONT, FLAT],
                name="Guest: A. Jensen",
                common_code_key="booking-4711",
                **window(site, 0, 2 * 86400),
            )
        )
        front, at_flat = reply["access_codes"]
        pin = front["code"]
        assert at_flat["code"] == pin
        assert front["common_code_key"] == "booking-4711"
        await site.advance(1)
        await site.settled()

        # The flat door holds the shared PIN; the front door does not, and says so.
        assert pin in flat_lock.slots.values()
        assert pin not in front_lock.slots.values()
        front = ok(await site.api.call("access_codes/get", access_code_id=front["access_code_id"]))[
            "access_code"
        ]
        assert "failed_to_set_on_device" in {e["error_code"] for e in front["errors"]}
        assert front["is_backup_access_code_available"] is True

        # The guest calls from the front door: a backup, answered from the store.
        backup = ok(await pull(site, front["access_code_id"]))["backup_access_code"]
        assert backup["code"] in front_lock.slots.values()

        # The guest opens both doors.
        await front_lock.control({"enter": backup["code"]})
        (opened_front,) = await events.wait(
            is_event("lock.unlocked", device_id=FRONT, access_code_id=backup["access_code_id"])
        )
        await flat_lock.control({"enter": pin})
        (opened_flat,) = await events.wait(
            is_event("lock.unlocked", device_id=FLAT, access_code_id=at_flat["access_code_id"])
        )
        for opened, slot in ((opened_front, backup["slot"]), (opened_flat, None)):
            assert opened["method"] == "keycode"
            assert opened["access_code_is_managed"] is True
            assert slot is None or opened["slot"] == slot

        # The front door's code tells its story, backup included; the flat door's its own.
        front_story = story(
            ok(
                await site.api.call(
                    "access_codes/get_timeline", access_code_id=front["access_code_id"]
                )
            )["timeline"]
        )
        fid, bid = front["access_code_id"], backup["access_code_id"]
        for step in (
            ("access_code.created", fid),
            ("access_code.failed_to_set_on_device", fid),
            ("access_code.backup_access_code_pulled", fid),
            ("lock.unlocked", bid),
        ):
            assert step in front_story, (step, front_story)
        assert front_story.index(("access_code.backup_access_code_pulled", fid)) < (
            front_story.index(("lock.unlocked", bid))
        )
        flat_story = story(
            ok(
                await site.api.call(
                    "access_codes/get_timeline", access_code_id=at_flat["access_code_id"]
                )
            )["timeline"]
        )
        aid = at_flat["access_code_id"]
        assert [kind for kind, _ in flat_story if kind != "access_code.changed"][:3] == [
            "access_code.created",
            "access_code.set_on_device",
            "lock.unlocked",
        ]
        assert {cid for _, cid in flat_story} == {aid}
