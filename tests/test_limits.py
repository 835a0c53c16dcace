"""Devices on drivers this build lacks, and deletion of a code the lock never confirmed."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import ConfigFactory
from tests.harness import running_site


async def test_a_device_on_an_unbuilt_driver_is_offline_not_fatal(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=[
            {"device_id": "front_door", "driver": "native"},
            {"device_id": "zb_lock", "driver": "zigbee2mqtt", "slots": 30},
        ]
    )
    async with running_site(config) as site:
        device = (await site.api.call("devices/get", device_id="zb_lock"))["device"]
        assert device["properties"]["online"] is False
        assert [e["error_code"] for e in device["errors"]] == ["device_disconnected"]
        # Nothing can be programmed through it, so it cannot carry a pool either.
        assert device["properties"]["supports_backup_access_code_pool"] is False
        reply = await site.api.call(
            "access_codes/create",
            device_id="zb_lock",
            code="4321",
            use_backup_access_code_pool=True,
        )
        assert reply["error"]["type"] == "backup_pool_not_supported"
        code = await site.api.call("access_codes/create", device_id="zb_lock", code="4321")
        await site.settled()
        got = await site.api.call(
            "access_codes/get", access_code_id=code["access_code"]["access_code_id"]
        )
        assert got["access_code"]["status"] == "setting"
        assert {e["error_code"] for e in got["access_code"]["errors"]} == {
            "failed_to_set_on_device",
            "device_disconnected",
        }
        # The native lock next to it works as usual.
        ok = await site.api.call("access_codes/create", device_id="front_door", code="1357")
        await site.settled()
        assert site.lock("front_door").slots == {1: "1357"}
        assert ok["ok"]


async def test_deleting_a_code_the_lock_never_confirmed_says_no_removal(
    make_config: ConfigFactory,
) -> None:
    config = make_config(timing={"command_timeout": "300ms", "delay_warning_after": "1h"})
    async with running_site(config) as site:
        events = await site.api.subscribe(f"{config.prefix}/events/#")
        lock = site.lock("front_door")
        await lock.control({"silent": True})
        created = await site.api.call("access_codes/create", device_id="front_door", code="8642")
        cid = created["access_code"]["access_code_id"]
        await site.settled()
        assert (await site.api.call("access_codes/get", access_code_id=cid))["access_code"][
            "status"
        ] == "setting"
        assert (await site.api.call("access_codes/delete", access_code_id=cid))["ok"]
        await lock.control({"silent": False})
        await site.advance(3600)
        assert lock.slots == {}
        reply = await site.api.call("access_codes/get", access_code_id=cid)
        assert reply["error"]["type"] == "access_code_not_found"
        seen: list[dict[str, Any]] = []
        while not events.empty():
            message = await events.get()
            assert isinstance(message.payload, bytes)
            body = json.loads(message.payload)
            if body.get("access_code_id") == cid:
                seen.append(body)
        kinds = [e["event_type"] for e in seen]
        assert kinds[0] == "access_code.created"
        assert kinds[-1] == "access_code.deleted"
        assert "access_code.removed_from_device" not in kinds
        assert "access_code.set_on_device" not in kinds
