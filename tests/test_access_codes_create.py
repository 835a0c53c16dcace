"""``access_codes/create``, ``get`` and ``list``: the replies, every refusal at create (fields,
code lengths, duplicates, unmanaged devices), generated codes, and the list of unmanaged codes.

What lands on the lock, and when, is the business of the ``test_reconcile_*`` files; here it is
what a caller of the API sees in the replies, against the real gateway and locks.
"""

from __future__ import annotations

import itertools
import uuid

from gateway.clock import isoformat
from tests.access_codes_helpers import Refusal, codes_of, misjudged, refused
from tests.conftest import ConfigFactory, codes_on_lock
from tests.contract import ACCESS_CODE_KEYS
from tests.harness import at, create, get_code, new_code, running_site

#: Two-digit PINs nobody should be handed: one digit repeated, or a run up or down (mod 10).
TRIVIAL_TWO_DIGIT = {f"{a}{a}" for a in range(10)} | {
    f"{a}{(a + step) % 10}" for a in range(10) for step in (1, 9)
}


def is_trivial(pin: str) -> bool:
    digits = [int(c) for c in pin]
    steps = {(b - a) % 10 for a, b in itertools.pairwise(digits)}
    return len(steps) <= 1 and steps <= {0, 1, 9}


# -- create, get, list ------------------------------------------------------------------------


async def test_create_replies_with_the_whole_object(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        reply = await site.api.call(
            "access_codes/create",
            request_id="c-1",
            device_id="front_door",
            name="Alice",
            code="0482",
        )
        assert reply["ok"] is True
        assert reply["request_id"] == "c-1"
        code = reply["access_code"]
        assert set(code) == ACCESS_CODE_KEYS
        uuid.UUID(code["access_code_id"])
        assert code["device_id"] == "front_door"
        assert code["name"] == "Alice"
        assert code["code"] == "0482"  # a string: the leading zero is kept
        assert code["type"] == "ongoing"
        assert code["starts_at"] is None
        assert code["ends_at"] is None
        assert code["status"] == "unset"  # answered before the lock was touched
        assert code["created_at"] == isoformat(site.clock.now())
        assert code["errors"] == []
        assert code["warnings"] == []
        assert code["is_managed"] is True
        assert code["is_backup"] is False
        assert code["is_backup_access_code_available"] is False
        assert code["pulled_backup_access_code_id"] is None
        assert code["is_external_modification_allowed"] is False
        assert code["slot"] is None


async def test_create_time_bound_normalises_the_window(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        code = await create(
            site,
            device_id="front_door",
            code="5173",
            starts_at="2030-01-02T14:00:00+02:00",
            ends_at="2030-01-03T10:00:00.250Z",
            allow_external_modification=True,
        )
        assert code["type"] == "time_bound"
        assert code["starts_at"] == "2030-01-02T12:00:00.000Z"
        assert code["ends_at"] == "2030-01-03T10:00:00.250Z"
        assert code["name"] is None
        assert code["is_external_modification_allowed"] is True
        # A window that already started is fine as long as it has not ended.
        started = await create(
            site,
            device_id="front_door",
            code="5174",
            starts_at=at(site, -3600),
            ends_at=at(site, 60),
        )
        assert started["type"] == "time_bound"


async def test_get_by_id_and_by_device_and_pin(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        code = await create(site, device_id="front_door", name="Bob", code="7351")
        await create(site, device_id="back_door", name="Other lock", code="7351")
        await site.settled()
        by_id = await site.api.call(
            "access_codes/get", access_code_id=code["access_code_id"], request_id=9
        )
        assert by_id["ok"] is True
        assert by_id["request_id"] == 9
        assert by_id["access_code"]["access_code_id"] == code["access_code_id"]
        assert by_id["access_code"]["status"] == "set"
        # Ids are uuids: upper case is the same id.
        upper = await site.api.call(
            "access_codes/get", access_code_id=code["access_code_id"].upper()
        )
        assert upper["access_code"] == by_id["access_code"]
        by_pin = await site.api.call("access_codes/get", device_id="front_door", code="7351")
        assert by_pin["access_code"] == by_id["access_code"]
        other = await site.api.call("access_codes/get", device_id="back_door", code="7351")
        assert other["access_code"]["name"] == "Other lock"

        error = await refused(site, "access_codes/get", device_id="front_door", code="7352")
        assert error["type"] == "access_code_not_found"
        assert "code" in error["message"]
        error = await refused(site, "access_codes/get", device_id="nowhere", code="7351")
        assert error["type"] == "device_not_found"
        error = await refused(site, "access_codes/get", device_id="front_door")
        assert error["type"] == "invalid_input"
        error = await refused(site, "access_codes/get")
        assert error["type"] == "invalid_input"
        error = await refused(
            site,
            "access_codes/get",
            access_code_id=code["access_code_id"],
            device_id="front_door",
            code="7351",
        )
        assert error["type"] == "invalid_input"


async def test_list_by_device_and_by_ids(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        first = await create(site, device_id="front_door", name="first", code="4711")
        second = await create(site, device_id="front_door", name="second", code="4712")
        elsewhere = await create(site, device_id="back_door", name="elsewhere", code="4713")
        front = await codes_of(site, "front_door")
        assert [c["access_code_id"] for c in front] == [
            first["access_code_id"],
            second["access_code_id"],
        ]
        assert all(set(c) == ACCESS_CODE_KEYS for c in front)
        assert [c["name"] for c in await codes_of(site, "back_door")] == ["elsewhere"]

        reply = await site.api.call(
            "access_codes/list",
            access_code_ids=[
                elsewhere["access_code_id"],
                first["access_code_id"],
                str(uuid.uuid4()),
            ],
        )
        assert reply["ok"] is True
        assert {c["access_code_id"] for c in reply["access_codes"]} == {
            first["access_code_id"],
            elsewhere["access_code_id"],
        }
        reply = await site.api.call("access_codes/list", access_code_ids=[])
        assert reply["access_codes"] == []

        error = await refused(site, "access_codes/list")
        assert error["type"] == "invalid_input"
        assert "device_id" in error["message"]
        error = await refused(
            site,
            "access_codes/list",
            device_id="front_door",
            access_code_ids=[first["access_code_id"]],
        )
        assert error["type"] == "invalid_input"
        error = await refused(site, "access_codes/list", device_id="cellar")
        assert error["type"] == "device_not_found"
        error = await refused(site, "access_codes/list", access_code_ids=["not-a-uuid"])
        assert error["type"] == "invalid_input"
        assert "access_code_ids[0]" in error["message"]
        error = await refused(site, "access_codes/list", access_code_ids="x")
        assert error["type"] == "invalid_input"


# -- validation at create ---------------------------------------------------------------------


async def test_create_refusals_name_the_field_and_change_nothing(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        await create(site, device_id="front_door", code="9182")
        cases: list[Refusal] = [
            ({"starts_at": at(site, 60)}, "invalid_input", "ends_at"),
            ({"ends_at": at(site, 60)}, "invalid_input", "starts_at"),
            ({"starts_at": at(site, -120), "ends_at": at(site, -60)}, "invalid_input", "ends_at"),
            ({"starts_at": at(site, -120), "ends_at": at(site, 0)}, "invalid_input", "ends_at"),
            ({"starts_at": at(site, 120), "ends_at": at(site, 60)}, "invalid_input", "ends_at"),
            ({"starts_at": at(site, 60), "ends_at": at(site, 60)}, "invalid_input", "ends_at"),
            ({"starts_at": "tomorrow", "ends_at": at(site, 60)}, "invalid_input", "starts_at"),
            (
                {"starts_at": "2030-01-02T12:00:00", "ends_at": "2030-01-03T12:00:00Z"},
                "invalid_input",
                "starts_at",
            ),
            ({"starts_at": 1893499200, "ends_at": at(site, 60)}, "invalid_input", "starts_at"),
            ({"code": "12a4"}, "invalid_input", "code"),
            ({"code": " 1234"}, "invalid_input", "code"),
            ({"code": "12-34"}, "invalid_input", "code"),
            ({"code": "١٢٣٤"}, "invalid_input", "code"),  # Arabic-Indic digits
            ({"code": ""}, "invalid_input", "code"),
            ({"code": 4821}, "invalid_input", "code"),
            ({"code": None}, "invalid_input", "code"),
            ({"code": "123"}, "code_constraints_violated", "code"),
            ({"code": "123456789"}, "code_constraints_violated", "code"),
            ({"code": "9182"}, "duplicate_access_code", "code"),
            ({"preferred_code_length": 3}, "code_constraints_violated", "preferred_code_length"),
            ({"preferred_code_length": 9}, "code_constraints_violated", "preferred_code_length"),
            ({"preferred_code_length": "6"}, "invalid_input", "preferred_code_length"),
            ({"name": 12}, "invalid_input", "name"),
            ({"name": "n" * 201}, "invalid_input", "name"),
            (
                {"allow_external_modification": "yes"},
                "invalid_input",
                "allow_external_modification",
            ),
            ({"use_backup_access_code_pool": 1}, "invalid_input", "use_backup_access_code_pool"),
            ({"colour": "red"}, "invalid_input", "colour"),
        ]
        assert await misjudged(site, "access_codes/create", cases, device_id="front_door") == []
        error = await refused(site, "access_codes/create", code="5555")
        assert error["type"] == "invalid_input"
        assert "device_id" in error["message"]
        assert len(await codes_of(site, "front_door")) == 1
        assert await codes_of(site, "back_door") == []


async def test_code_lengths_follow_the_device(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[
            {"device_id": "front_door", "driver": "native", "code_lengths": [6, 6]},
            {"device_id": "back_door", "driver": "native", "code_lengths": [4, 5]},
        ]
    )
    async with running_site(config) as site:
        for pin in ("1357", "13579", "1357924"):
            error = await refused(site, "access_codes/create", device_id="front_door", code=pin)
            assert error["type"] == "code_constraints_violated"
            assert "code" in error["message"]
        assert (await create(site, device_id="front_door", code="135792"))["code"] == "135792"
        error = await refused(site, "access_codes/create", device_id="back_door", code="135792")
        assert error["type"] == "code_constraints_violated"
        assert (await create(site, device_id="back_door", code="13579"))["code"] == "13579"
        device = (await site.api.call("devices/get", device_id="front_door"))["device"]
        assert device["properties"]["supported_code_lengths"] == [6]
        for _ in range(5):
            reply = await site.api.call("access_codes/generate_code", device_id="front_door")
            assert len(reply["generated_code"]["code"]) == 6
            reply = await site.api.call("access_codes/generate_code", device_id="back_door")
            assert len(reply["generated_code"]["code"]) in (4, 5)
        made = await create(site, device_id="front_door")
        assert len(made["code"]) == 6
        error = await refused(
            site, "access_codes/create", device_id="front_door", preferred_code_length=4
        )
        assert error["type"] == "code_constraints_violated"
        assert "preferred_code_length" in error["message"]


async def test_duplicates_of_managed_codes_and_of_pins_on_the_lock(
    make_config: ConfigFactory,
) -> None:
    config = make_config(simulator=codes_on_lock({3: "2468", 7: "13579"}))
    async with running_site(config) as site:
        first = await create(site, device_id="front_door", code="1122")
        for pin in ("1122", "2468", "13579"):
            error = await refused(site, "access_codes/create", device_id="front_door", code=pin)
            assert error["type"] == "duplicate_access_code", pin
            assert "code" in error["message"]
        error = await refused(
            site, "access_codes/update", access_code_id=first["access_code_id"], code="2468"
        )
        assert error["type"] == "duplicate_access_code"
        # Another lock is another namespace.
        for pin in ("1122", "2468"):
            assert (await create(site, device_id="back_door", code=pin))["code"] == pin
        # A prefix or extension of a taken PIN is a different PIN.
        assert (await create(site, device_id="front_door", code="11223"))["code"] == "11223"
        assert len(await codes_of(site, "front_door")) == 2


async def test_device_not_managed(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        cid = await new_code(site, "6174")
        await site.settled()
        reply = await site.api.call("devices/update", device_id="front_door", is_managed=False)
        assert reply["device"]["is_managed"] is False
        error = await refused(site, "access_codes/create", device_id="front_door", code="6175")
        assert error["type"] == "device_not_managed"
        assert "device_id" in error["message"]
        error = await refused(site, "access_codes/update", access_code_id=cid, name="x")
        assert error["type"] == "device_not_managed"
        error = await refused(site, "access_codes/delete", access_code_id=cid)
        assert error["type"] == "device_not_managed"
        # Reading still works: the codes are there, as they were.
        got = await get_code(site, cid)
        assert (got["status"], got["name"]) == ("set", None)
        assert [c["access_code_id"] for c in await codes_of(site, "front_door")] == [cid]
        # The other lock is not affected.
        assert (await create(site, device_id="back_door", code="6175"))["code"] == "6175"


# -- generated codes --------------------------------------------------------------------------


async def test_generate_code_fits_and_collides_with_nothing(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        reply = await site.api.call(
            "access_codes/generate_code", device_id="front_door", request_id="g"
        )
        assert reply["ok"] is True
        assert reply["request_id"] == "g"
        assert set(reply["generated_code"]) == {"device_id", "code"}
        assert reply["generated_code"]["device_id"] == "front_door"
        seen = set()
        for _ in range(20):
            pin = (await site.api.call("access_codes/generate_code", device_id="front_door"))[
                "generated_code"
            ]["code"]
            assert isinstance(pin, str)
            assert pin.isascii()
            assert pin.isdigit()
            assert len(pin) == 4  # the shortest the lock takes, but no shorter than 4
            assert not is_trivial(pin), pin
            seen.add(pin)
        assert len(seen) > 10  # random, not a counter
        # Generating reserves nothing: the code is not stored.
        assert await codes_of(site, "front_door") == []
        made = await create(site, device_id="front_door", name="generated")
        assert len(made["code"]) == 4
        assert not is_trivial(made["code"])
        six = await create(site, device_id="front_door", preferred_code_length=6)
        assert len(six["code"]) == 6
        eight = await create(site, device_id="front_door", preferred_code_length=8)
        assert len(eight["code"]) == 8
        assert (await site.api.call("access_codes/get", device_id="front_door", code=six["code"]))[
            "ok"
        ] is True


async def test_generated_codes_avoid_every_pin_on_the_lock(make_config: ConfigFactory) -> None:
    """A 2-digit lock has 70 guessable-free PINs; all but one are on the lock already."""
    free = sorted(f"{n:02d}" for n in range(100) if f"{n:02d}" not in TRIVIAL_TWO_DIGIT)
    assert len(free) == 70
    last, held = free[17], free[:17] + free[18:]
    config = make_config(
        devices=[
            {"device_id": "front_door", "driver": "native", "slots": 80, "code_lengths": [2, 2]}
        ],
        simulator=codes_on_lock({i + 1: pin for i, pin in enumerate(held[:60])}),
    )
    async with running_site(config) as site:
        # The other 9 as managed codes (they land on the lock too).
        for pin in held[60:]:
            await create(site, device_id="front_door", code=pin)
        for _ in range(5):
            reply = await site.api.call("access_codes/generate_code", device_id="front_door")
            assert reply["generated_code"]["code"] == last
        made = await create(site, device_id="front_door")
        assert made["code"] == last
        error = await refused(site, "access_codes/generate_code", device_id="front_door")
        assert error["type"] == "code_constraints_violated"
        error = await refused(site, "access_codes/create", device_id="front_door")
        assert error["type"] == "code_constraints_violated"
        await site.settled()
        assert sorted(site.lock("front_door").slots.values()) == free


# -- unmanaged codes --------------------------------------------------------------------------


async def test_unmanaged_list_shows_what_the_gateway_did_not_create(
    make_config: ConfigFactory,
) -> None:
    config = make_config(simulator=codes_on_lock({2: "5555", 9: "0123456"}))
    async with running_site(config) as site:
        await create(site, device_id="front_door", code="3141")
        await site.settled()
        reply = await site.api.call(
            "access_codes/unmanaged/list", device_id="front_door", request_id="um"
        )
        assert reply["ok"] is True
        assert reply["request_id"] == "um"
        found = reply["access_codes"]
        assert [(c["slot"], c["code"]) for c in found] == [(2, "5555"), (9, "0123456")]
        for code in found:
            assert code["is_managed"] is False
            assert code["device_id"] == "front_door"
            uuid.UUID(code["access_code_id"])
        # Stable ids: the same unmanaged code is the same object next time.
        again = await site.api.call("access_codes/unmanaged/list", device_id="front_door")
        assert again["access_codes"] == found
        # Not mixed into the managed list, and not on the other lock.
        assert [c["code"] for c in await codes_of(site, "front_door")] == ["3141"]
        reply = await site.api.call("access_codes/unmanaged/list", device_id="back_door")
        assert reply["access_codes"] == []
        error = await refused(site, "access_codes/unmanaged/list")
        assert error["type"] == "invalid_input"
