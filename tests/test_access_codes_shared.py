"""One PIN on several doors (contract section 11): ``common_code_key`` on ``access_codes/create``,
``access_codes/create_multiple`` and ``access_codes/update_multiple``.

What a property manager notices: the same PIN in a slot of each door's lock, a generated PIN that
every door accepts and nobody else holds there, all-or-nothing refusals that leave no code and no
event behind, and each door's code going on its lock on its own, whatever the other door does.
"""

from __future__ import annotations

from typing import Any

from gateway.model import Json
from tests.access_codes_helpers import Refusal, codes_of, misjudged, refused
from tests.conftest import ConfigFactory, codes_on_lock
from tests.harness import (
    Recorder,
    Site,
    barrier,
    create,
    get_code,
    is_event,
    ok,
    running_site,
    window,
)
from tests.reconcile_helpers import assert_set

DOORS = ["front_door", "back_door"]


def doors(front: list[int] | None = None, back: list[int] | None = None) -> list[dict[str, Any]]:
    """The two native locks of the default site, with the PIN lengths each accepts."""
    found: list[dict[str, Any]] = []
    for device_id, lengths in (("front_door", front), ("back_door", back)):
        found.append({"device_id": device_id, "name": device_id, "driver": "native"})
        if lengths is not None:
            found[-1]["code_lengths"] = lengths
    return found


async def create_multiple(site: Site, **params: Any) -> list[Json]:
    reply = ok(await site.api.call("access_codes/create_multiple", **params))
    codes: list[Json] = reply["access_codes"]
    return codes


async def nothing_created(site: Site, events: Recorder) -> None:
    """No code on any door, and no event about one: the refused request left no trace."""
    await barrier(site)
    for device_id in DOORS:
        assert await codes_of(site, device_id) == []
    assert [e for e in events.pull() if e["event_type"].startswith("access_code.")] == []


# -- one PIN, given or generated --------------------------------------------------------------


async def test_a_given_pin_lands_on_every_door(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        codes = await create_multiple(
            site, device_ids=DOORS, code="4829", name="Guest", common_code_key="booking-17"
        )
        assert [c["device_id"] for c in codes] == DOORS  # in the order of device_ids
        assert {(c["code"], c["common_code_key"], c["name"]) for c in codes} == {
            ("4829", "booking-17", "Guest")
        }
        await barrier(site)
        for code in codes:
            await assert_set(site, code["access_code_id"])
        assert list(site.lock("front_door").slots.values()) == ["4829"]
        assert list(site.lock("back_door").slots.values()) == ["4829"]


async def test_without_a_key_the_doors_are_linked_by_a_fresh_one(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        codes = await create_multiple(site, device_ids=["back_door", "front_door"])
        assert [c["device_id"] for c in codes] == ["back_door", "front_door"]
        keys = {c["common_code_key"] for c in codes}
        pins = {c["code"] for c in codes}
        assert len(keys) == len(pins) == 1
        assert None not in keys
        (key,) = keys
        reply = ok(
            await site.api.call("access_codes/update_multiple", common_code_key=key, name="Ann")
        )
        assert [c["name"] for c in reply["access_codes"]] == ["Ann", "Ann"]


async def test_a_generated_pin_has_a_length_every_door_accepts(
    make_config: ConfigFactory,
) -> None:
    config = make_config(devices=doors(front=[4, 6], back=[6, 8]))
    async with running_site(config) as site:
        codes = await create_multiple(site, device_ids=DOORS)
        (pin,) = {c["code"] for c in codes}
        assert len(pin) == 6
        await barrier(site)
        assert list(site.lock("front_door").slots.values()) == [pin]
        assert list(site.lock("back_door").slots.values()) == [pin]
        # A length the doors do not share is refused as the single create refuses it.
        error = await refused(
            site, "access_codes/create_multiple", device_ids=DOORS, preferred_code_length=4
        )
        assert error["type"] == "code_constraints_violated"
        assert "preferred_code_length" in error["message"]


async def test_a_generated_pin_is_free_on_every_door(make_config: ConfigFactory) -> None:
    """Two-digit locks nearly full of PINs the gateway did not put there: a shared PIN taken on
    either door would be a duplicate there, so each one generated must be free on both."""
    free = [f"{n:02d}" for n in range(100) if not _trivial_two_digit(f"{n:02d}")]
    front, back = free[:30], free[30:60]
    simulator = {
        "locks": {
            "front_door": {"initial_codes": dict(enumerate(front, start=1))},
            "back_door": {"initial_codes": dict(enumerate(back, start=1))},
        }
    }
    config = make_config(devices=doors(front=[2, 2], back=[2, 2]), simulator=simulator)
    async with running_site(config) as site:
        await barrier(site)  # the gateway has read both locks
        handed_out: list[str] = []
        for _ in range(5):
            (pin,) = {c["code"] for c in await create_multiple(site, device_ids=DOORS)}
            assert pin in free[60:]
            assert pin not in handed_out
            handed_out.append(pin)


def _trivial_two_digit(pin: str) -> bool:
    a, b = int(pin[0]), int(pin[1])
    return (b - a) % 10 in (0, 1, 9)


async def test_a_repeated_create_multiple_creates_once(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        params: dict[str, Any] = {"device_ids": DOORS, "idempotency_key": "booking-19"}
        first = await create_multiple(site, **params)
        again = await create_multiple(site, **params)
        assert again == first  # the generated key and PIN included
        for device_id in DOORS:
            assert len(await codes_of(site, device_id)) == 1


# -- a door that cannot take the shared PIN ---------------------------------------------------


async def test_throw_creates_nothing_when_one_door_cannot_take_the_pin(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=doors(back=[4, 6]),
        simulator=codes_on_lock({3: "4829"}, device_id="back_door"),
    )
    async with running_site(config) as site:
        events = await Recorder.events(site)
        await barrier(site)
        taken = await refused(site, "access_codes/create_multiple", device_ids=DOORS, code="4829")
        assert taken["type"] == "duplicate_access_code"
        assert "common_code_key" in taken["message"]
        assert "back_door" in taken["message"]
        too_long = await refused(
            site,
            "access_codes/create_multiple",
            device_ids=DOORS,
            code="5820137",
            behavior_when_code_cannot_be_shared="throw",
        )
        assert too_long["type"] == "code_constraints_violated"
        assert "common_code_key" in too_long["message"]
        await nothing_created(site, events)
        assert site.lock("front_door").slots == {}


async def test_create_random_code_gives_that_door_a_pin_of_its_own(
    make_config: ConfigFactory,
) -> None:
    config = make_config(simulator=codes_on_lock({3: "4829"}, device_id="back_door"))
    async with running_site(config) as site:
        await barrier(site)
        front, back = await create_multiple(
            site,
            device_ids=DOORS,
            code="4829",
            common_code_key="booking-18",
            behavior_when_code_cannot_be_shared="create_random_code",
        )
        assert (front["code"], front["common_code_key"]) == ("4829", "booking-18")
        # Not the key's PIN, so not the key's code: update_multiple leaves it alone.
        assert back["common_code_key"] is None
        assert back["code"] != "4829"
        await barrier(site)
        await assert_set(site, front["access_code_id"])
        await assert_set(site, back["access_code_id"])
        assert sorted(site.lock("back_door").slots.values()) == sorted(["4829", back["code"]])


# -- the key used again -----------------------------------------------------------------------


async def test_a_later_create_with_the_key_takes_its_pin(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[
            *doors(),
            {"device_id": "shed", "name": "Shed", "driver": "native", "code_lengths": [6, 8]},
        ],
        simulator=codes_on_lock({1: "7305"}, device_id="back_door"),
    )
    async with running_site(config) as site:
        await barrier(site)
        first = await create(site, device_id="front_door", common_code_key="family")
        pin = first["code"]
        assert first["common_code_key"] == "family"
        error = await refused(
            site,
            "access_codes/create",
            device_id="back_door",
            common_code_key="family",
            code="0000" if pin != "0000" else "1111",
        )
        assert error["type"] == "invalid_input"
        assert error["message"].startswith("code:")
        wrong_length = await refused(
            site, "access_codes/create", device_id="shed", common_code_key="family"
        )
        assert wrong_length["type"] == "code_constraints_violated"
        assert "common_code_key" in wrong_length["message"]
        again = await refused(
            site, "access_codes/create", device_id="front_door", common_code_key="family"
        )
        assert again["type"] == "duplicate_access_code"
        assert "common_code_key" in again["message"]

        second = await create(site, device_id="back_door", common_code_key="family")
        assert (second["code"], second["common_code_key"]) == (pin, "family")
        await barrier(site)
        assert pin in site.lock("back_door").slots.values()


async def test_the_key_of_a_pin_taken_on_the_door_is_refused(
    make_config: ConfigFactory,
) -> None:
    config = make_config(simulator=codes_on_lock({1: "7305"}, device_id="back_door"))
    async with running_site(config) as site:
        await barrier(site)
        await create(site, device_id="front_door", common_code_key="k", code="7305")
        error = await refused(
            site, "access_codes/create", device_id="back_door", common_code_key="k"
        )
        assert error["type"] == "duplicate_access_code"
        assert "common_code_key" in error["message"]
        assert await codes_of(site, "back_door") == []


# -- update_multiple --------------------------------------------------------------------------


async def test_update_multiple_moves_every_door_to_the_new_pin(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        codes = await create_multiple(site, device_ids=DOORS, code="4829", common_code_key="g")
        await barrier(site)
        for lock in DOORS:
            await site.lock(lock).control({"silent": True})
        reply = ok(
            await site.api.call(
                "access_codes/update_multiple", common_code_key="g", code="6154", name="Bea"
            )
        )
        updated = reply["access_codes"]
        assert [c["access_code_id"] for c in updated] == [c["access_code_id"] for c in codes]
        for code in updated:
            assert (code["code"], code["name"], code["common_code_key"]) == ("6154", "Bea", "g")
            (mutation,) = code["pending_mutations"]
            assert mutation["mutation_code"] == "updating_code"
            assert (mutation["from"], mutation["to"]) == ({"code": "4829"}, {"code": "6154"})
        for lock in DOORS:
            await site.lock(lock).control({"silent": False})
        await barrier(site)
        for code in codes:
            now = await assert_set(site, code["access_code_id"])
            assert now["pending_mutations"] == []
        for lock in DOORS:
            assert list(site.lock(lock).slots.values()) == ["6154"]


async def test_update_multiple_changes_nothing_when_one_door_refuses(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=doors(back=[4, 4]),
        simulator=codes_on_lock({5: "3071"}, device_id="front_door"),
    )
    async with running_site(config) as site:
        codes = await create_multiple(site, device_ids=DOORS, code="4829", common_code_key="g")
        await barrier(site)
        events = await Recorder.events(site)
        window = {"starts_at": "2040-01-01T00:00:00Z", "ends_at": "2040-01-02T00:00:00Z"}
        cases: list[Refusal] = [
            ({"code": "3071"}, "duplicate_access_code", "front_door"),
            ({"code": "48291"}, "code_constraints_violated", "back_door"),
            ({"code": "48x1"}, "invalid_input", "code"),
            ({"starts_at": window["starts_at"]}, "invalid_input", "starts_at"),
            ({"type": "ongoing"}, "invalid_input", "type"),
            ({"common_code_key": "h", "name": "x"}, "access_code_not_found", "common_code_key"),
            ({"common_code_key": ""}, "invalid_input", "common_code_key"),
        ]
        fixed = {"common_code_key": "g"}
        wrong = [
            (params, reply)
            for params, error_type, field in cases
            for reply in [
                await site.api.call("access_codes/update_multiple", **{**fixed, **params})
            ]
            if reply["ok"]
            or reply["error"]["type"] != error_type
            or field not in reply["error"]["message"]
        ]
        assert wrong == []
        await barrier(site)
        for code in codes:
            assert (await get_code(site, code["access_code_id"]))["code"] == "4829"
        assert events.pull() == []


async def test_a_single_update_cannot_split_a_shared_pin(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        front, back = await create_multiple(
            site, device_ids=DOORS, code="4829", common_code_key="g"
        )
        error = await refused(
            site, "access_codes/update", access_code_id=front["access_code_id"], code="6154"
        )
        assert error["type"] == "invalid_input"
        assert error["message"].startswith("code:")
        assert "update_multiple" in error["message"]
        # What is not the PIN is each door's own.
        renamed = ok(
            await site.api.call(
                "access_codes/update", access_code_id=back["access_code_id"], name="Back"
            )
        )["access_code"]
        assert (renamed["name"], renamed["code"]) == ("Back", "4829")
        assert (await get_code(site, front["access_code_id"]))["name"] is None


# -- each door on its own ---------------------------------------------------------------------


async def test_a_failing_door_does_not_hold_up_the_other(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        await site.lock("back_door").control({"fail_next": 3})  # max_attempts
        front, back = await create_multiple(site, device_ids=DOORS, code="4829")
        await barrier(site)
        await assert_set(site, front["access_code_id"])
        assert list(site.lock("front_door").slots.values()) == ["4829"]
        back_set = is_event("access_code.set_on_device", access_code_id=back["access_code_id"])
        assert events.count(back_set) == 0
        failed = is_event("access_code.failed_to_set_on_device")
        assert [e["access_code_id"] for e in events.pull() if failed(e)] == [back["access_code_id"]]
        assert (await get_code(site, back["access_code_id"]))["status"] != "set"
        assert site.lock("back_door").slots == {}
        await site.advance(60)  # the back door's own retries
        await assert_set(site, back["access_code_id"])
        assert list(site.lock("back_door").slots.values()) == ["4829"]
        assert events.count(back_set) == 1


async def test_each_door_pulls_from_its_own_pool(make_config: ConfigFactory) -> None:
    pool = {"enabled": True, "size": 2}
    devices = [{**d, "slots": 8, "backup_pool": pool} for d in doors()]
    config = make_config(devices=devices, backup_pool={"size": 2})
    async with running_site(config) as site:
        front, back = await create_multiple(
            site, device_ids=DOORS, code="4829", **window(site, 0, 48 * 3600)
        )
        await barrier(site)
        reply = ok(
            await site.api.call(
                "access_codes/pull_backup_access_code", access_code_id=front["access_code_id"]
            )
        )
        backup = reply["backup_access_code"]
        assert backup["device_id"] == "front_door"
        assert backup["code"] in site.lock("front_door").slots.values()
        assert backup["code"] != "4829"
        untouched = await get_code(site, back["access_code_id"])
        assert untouched["pulled_backup_access_code_id"] is None
        assert untouched["warnings"] == []


async def test_the_key_survives_a_restart(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[*doors(), {"device_id": "shed", "name": "Shed", "driver": "native"}]
    )
    async with running_site(config) as site:
        codes = await create_multiple(site, device_ids=DOORS, code="4829", common_code_key="g")
    async with running_site(config) as site:
        reply = ok(
            await site.api.call("access_codes/update_multiple", common_code_key="g", code="6154")
        )
        assert [c["access_code_id"] for c in reply["access_codes"]] == [
            c["access_code_id"] for c in codes
        ]
        later = await create(site, device_id="shed", common_code_key="g")
        assert later["code"] == "6154"


# -- bad input --------------------------------------------------------------------------------


async def test_bad_input_creates_nothing(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        ok(await site.api.call("devices/update", device_id="back_door", is_managed=False))
        cases: list[Refusal] = [
            ({"device_ids": DOORS, "common_code_key": ""}, "invalid_input", "common_code_key"),
            (
                {"device_ids": DOORS, "common_code_key": "k" * 257},
                "invalid_input",
                "common_code_key",
            ),
            ({"device_ids": []}, "invalid_input", "device_ids"),
            ({"device_ids": [f"d{i}" for i in range(101)]}, "invalid_input", "device_ids"),
            ({"device_ids": ["front_door", "front_door"]}, "invalid_input", "device_ids[1]"),
            ({"device_ids": "front_door"}, "invalid_input", "device_ids"),
            ({}, "invalid_input", "device_ids"),
            (
                {"device_ids": ["front_door"], "device_id": "front_door"},
                "invalid_input",
                "device_id",
            ),
            (
                {"device_ids": ["front_door"], "behavior_when_code_cannot_be_shared": "retry"},
                "invalid_input",
                "behavior_when_code_cannot_be_shared",
            ),
            ({"device_ids": ["front_door"], "code": "12a4"}, "invalid_input", "code"),
            ({"device_ids": ["front_door", "attic"]}, "device_not_found", "attic"),
            ({"device_ids": ["front_door", "back_door"]}, "device_not_managed", "back_door"),
        ]
        assert await misjudged(site, "access_codes/create_multiple", cases) == []
        for params in ({"common_code_key": ""}, {"common_code_key": "k" * 257}):
            error = await refused(site, "access_codes/create", device_id="front_door", **params)
            assert error["type"] == "invalid_input"
            assert "common_code_key" in error["message"]
        await barrier(site)
        assert await codes_of(site, "front_door") == []
        assert [e for e in events.pull() if e["event_type"].startswith("access_code.")] == []
