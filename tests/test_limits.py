"""Devices on drivers this build lacks, and deletion of a code the lock never confirmed."""

from __future__ import annotations

import pytest

from drivers.registry import FACTORIES
from gateway.lock_pass import ReadState
from tests.conftest import ConfigFactory
from tests.harness import (
    Recorder,
    device,
    error_codes,
    get_code,
    kinds,
    new_code,
    running_site,
)


async def test_a_device_on_an_unbuilt_driver_is_offline_not_fatal(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build without one of the drivers (here: zigbee2mqtt taken out) degrades to offline."""
    monkeypatch.delitem(FACTORIES, "zigbee2mqtt")
    config = make_config(
        devices=[
            {"device_id": "front_door", "driver": "native"},
            {"device_id": "zb_lock", "driver": "zigbee2mqtt", "slots": 30},
        ]
    )
    async with running_site(config) as site:
        found = await device(site, "zb_lock")
        assert found["properties"]["online"] is False
        assert [e["error_code"] for e in found["errors"]] == ["device_disconnected"]
        # Nothing can be programmed through it, so it cannot carry a pool either.
        assert found["properties"]["supports_backup_access_code_pool"] is False
        reply = await site.api.call(
            "access_codes/create",
            device_id="zb_lock",
            code="4321",
            use_backup_access_code_pool=True,
        )
        assert reply["error"]["type"] == "backup_pool_not_supported"
        cid = await new_code(site, "4321", "zb_lock")
        await site.settled()
        got = await get_code(site, cid)
        assert got["status"] == "setting"
        assert error_codes(got) == {"failed_to_set_on_device", "device_disconnected"}
        # The native lock next to it works as usual.
        await new_code(site, "1357")
        await site.settled()
        assert site.lock("front_door").slots == {1: "1357"}


async def test_deleting_a_code_the_lock_never_confirmed_says_no_removal(
    make_config: ConfigFactory,
) -> None:
    config = make_config(timing={"command_timeout": "300ms", "delay_warning_after": "1h"})
    async with running_site(config) as site:
        events = await Recorder.events(site)
        lock = site.lock("front_door")
        await lock.control({"silent": True})
        cid = await new_code(site, "8642")
        await site.settled()
        assert (await get_code(site, cid))["status"] == "setting"
        assert (await site.api.call("access_codes/delete", access_code_id=cid))["ok"]
        await lock.control({"silent": False})
        await site.advance(3600)
        assert lock.slots == {}
        reply = await site.api.call("access_codes/get", access_code_id=cid)
        assert reply["error"]["type"] == "access_code_not_found"
        seen = kinds(events, cid)
        assert seen[0] == "access_code.created"
        assert seen[-1] == "access_code.deleted"
        assert "access_code.removed_from_device" not in seen
        assert "access_code.set_on_device" not in seen


async def test_an_offline_lock_past_every_deadline_lets_its_worker_rest(
    make_config: ConfigFactory,
) -> None:
    """A resync or a pool grace that came due while the lock is offline must not make the
    worker spin: it rests until the lock comes back (settling would time out otherwise)."""
    config = make_config(
        timing={"resync_interval": "1m"},
        backup_pool={"fill_grace": "30s"},
        devices=[{"device_id": "front_door", "driver": "native", "backup_pool": {"enabled": True}}],
    )
    async with running_site(config) as site:
        await site.lock("front_door").control({"online": False})
        await site.settled()
        await site.advance(3600)  # past the resync and the fill grace
        assert site.gateway.reconciler is not None
        worker = site.gateway.reconciler.workers["front_door"]
        passes = worker.passes
        await site.settled()
        assert worker.passes == passes
        await site.lock("front_door").control({"online": True})
        await site.settled()
        assert len(site.lock("front_door").slots) == 3  # the pool filled once it was back


@pytest.mark.parametrize(
    ("requests", "scope"),
    [
        ([frozenset({3})], frozenset({3})),
        ([frozenset({3}), frozenset({5})], frozenset({3, 5})),
        ([frozenset({3}), None], None),  # a full read asked for on top: everything
        ([None, frozenset({3})], None),
    ],
)
def test_read_requests_merge_into_one_read(
    requests: list[frozenset[int] | None], scope: frozenset[int] | None
) -> None:
    reads = ReadState(due=False)
    for slots in requests:
        reads.request(slots)
    assert reads.due is True
    assert reads.scope == scope
