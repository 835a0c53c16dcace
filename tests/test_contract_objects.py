"""The external contract, sections 6 and 7 (docs/api.md): the key sets of the public objects, and
the error and warning codes.
"""

from __future__ import annotations

from gateway.model import PROBLEMS, Json
from tests.conftest import ConfigFactory
from tests.contract import (
    ACCESS_CODE_KEYS,
    DEVICE_KEYS,
    ERROR_ITEM_KEYS,
    PROBLEM_TABLE,
    PROPERTY_KEYS,
    WARNING_ITEM_KEYS,
    is_timestamp,
    is_uuid,
)
from tests.harness import (
    create,
    device,
    get_code,
    ok,
    running_site,
    window,
)

# -- section 6: the objects ----------------------------------------------------------------------


def assert_access_code_shape(code: Json) -> None:
    assert set(code) == ACCESS_CODE_KEYS, set(code) ^ ACCESS_CODE_KEYS
    assert is_uuid(code["access_code_id"])
    assert code["type"] in ("ongoing", "time_bound")
    assert code["status"] in ("unset", "setting", "set", "removing")
    assert is_timestamp(code["created_at"])
    for key in ("starts_at", "ends_at"):
        assert code[key] is None or is_timestamp(code[key])
    assert (code["starts_at"] is None) == (code["type"] == "ongoing")
    assert code["is_managed"] is True
    for key in ("is_backup", "is_backup_access_code_available", "is_external_modification_allowed"):
        assert isinstance(code[key], bool), key
    assert code["pulled_backup_access_code_id"] is None or is_uuid(
        code["pulled_backup_access_code_id"]
    )
    assert code["slot"] is None or (isinstance(code["slot"], int) and code["slot"] >= 1)
    assert_problem_items(code)


def assert_problem_items(obj: Json) -> None:
    for item in obj["errors"]:
        assert set(item) == ERROR_ITEM_KEYS, item
        assert is_timestamp(item["created_at"])
        assert PROBLEM_TABLE[item["error_code"]][1] == "error"
    for item in obj["warnings"]:
        assert set(item) == WARNING_ITEM_KEYS, item
        assert is_timestamp(item["created_at"])
        assert PROBLEM_TABLE[item["warning_code"]][1] == "warning"


def assert_device_shape(found: Json) -> None:
    assert set(found) == DEVICE_KEYS, set(found) ^ DEVICE_KEYS
    assert set(found["properties"]) == PROPERTY_KEYS, set(found["properties"]) ^ PROPERTY_KEYS
    assert is_timestamp(found["created_at"])
    assert isinstance(found["is_managed"], bool)
    props = found["properties"]
    for key in ("online", "supports_backup_access_code_pool", "backup_access_code_pool_enabled"):
        assert isinstance(props[key], bool), key
    for key in ("backup_pool_size", "backup_codes_available", "active_backup_codes"):
        assert isinstance(props[key], int), key
    assert isinstance(props["supported_code_lengths"], list)
    assert isinstance(props["code_constraints"], list)
    assert_problem_items(found)


async def test_objects_have_exactly_the_contracts_keys(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "front_door",
                "driver": "native",
                "slots": 10,
                "backup_pool": {"enabled": True, "size": 2},
            }
        ],
        backup_pool={"many_active_threshold": 1},
    )
    async with running_site(config) as site:
        lock = site.lock("front_door")
        # A trivial PIN: no backup of the pool, drawn at random, can have taken it first.
        stay = await create(site, device_id="front_door", code="4545", **window(site, 0, 3600))
        await site.settled()
        assert_access_code_shape(stay)
        pulled = ok(
            await site.api.call(
                "access_codes/pull_backup_access_code", access_code_id=stay["access_code_id"]
            )
        )
        original = pulled["access_code"]
        assert_access_code_shape(original)
        assert_access_code_shape(pulled["backup_access_code"])
        assert [w["warning_code"] for w in original["warnings"]] == ["using_backup_access_code"]
        await site.settled()  # the pool's health is judged by the lock's worker
        front = await device(site)
        assert_device_shape(front)
        assert [w["warning_code"] for w in front["warnings"]] == ["many_active_backup_codes"]
        props = front["properties"]
        assert props["max_active_codes_supported"] == 10
        assert props["backup_pool_size"] == 2
        assert props["active_backup_codes"] == 1
        assert props["supports_backup_access_code_pool"] is True
        assert props["backup_access_code_pool_enabled"] is True

        await lock.control({"online": False})
        offline_code = await create(site, device_id="front_door", code="9753")
        await site.settled()
        front = await device(site)
        assert_device_shape(front)
        assert front["properties"]["online"] is False
        assert [e["error_code"] for e in front["errors"]] == ["device_disconnected"]
        waiting = await get_code(site, offline_code["access_code_id"])
        assert_access_code_shape(waiting)
        assert waiting["status"] == "setting"
        assert {e["error_code"] for e in waiting["errors"]} == {
            "device_disconnected",
            "failed_to_set_on_device",
        }
        listed = ok(
            await site.api.call(
                "access_codes/list", device_id="front_door", include_backup_pool=True
            )
        )["access_codes"]
        for code in listed:
            assert_access_code_shape(code)
        for found in ok(await site.api.call("devices/list"))["devices"]:
            assert_device_shape(found)


# -- section 7: error and warning codes ---------------------------------------------------------


def test_problem_codes_are_the_contracts() -> None:
    table = {code: (spec.on, spec.kind.value) for code, spec in PROBLEMS.items()}
    assert table == PROBLEM_TABLE
