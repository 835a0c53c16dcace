"""Finding 1 of issue 7: "booking changed, then cancelled" left the OLD PIN on the lock for good.

A code is set; the lock becomes slow and busy with another code; the client changes the code's
PIN and at once deletes the code. Before the fix both answered ok, the events said
``removed_from_device`` and ``deleted``, and the lock kept opening with the old PIN, which the
gateway then listed as somebody else's (``unmanaged/list``) and never cleared.

Through the real daemon process; the simulated lock's own table is the truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import aiomqtt
import pytest

from tests.broker import Broker
from tests.harness import payload_json
from tests.rig import Rig, rig

REMOVAL = ("access_code.removed_from_device", "access_code.deleted")
SLOW = [
    # latency, command_timeout: slow but answering; answering after the gateway gave up.
    pytest.param("1s", "3s", id="slow-lock"),
    pytest.param("1500ms", "1s", id="late-answers"),
]


async def _removal_events(
    events: asyncio.Queue[aiomqtt.Message], access_code_id: str, slots: Mapping[int, str | None]
) -> list[tuple[str, set[str | None]]]:
    """Removal events about the code, each with what the lock held the moment it arrived."""
    seen: list[tuple[str, set[str | None]]] = []
    while not seen or seen[-1][0] != "access_code.deleted":
        event = payload_json(await events.get())
        if event.get("access_code_id") == access_code_id and event["event_type"] in REMOVAL:
            seen.append((event["event_type"], set(slots.values())))
    return seen


async def _set(site: Rig, access_code_id: str) -> None:
    async with asyncio.timeout(30):
        while True:
            reply = await site.client.ok("access_codes/get", access_code_id=access_code_id)
            if reply["access_code"]["status"] == "set":
                return
            await asyncio.sleep(0.05)  # another process: poll


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("latency", "command_timeout"), SLOW)
@pytest.mark.parametrize("gap", [0.0, 0.009])
async def test_update_then_delete_leaves_no_pin_on_a_slow_busy_lock(
    broker: Broker, tmp_path: Path, latency: str, command_timeout: str, gap: float
) -> None:
    async with rig(broker, tmp_path, timing={"command_timeout": command_timeout}) as site:
        lock = site.sim.lock("front_door")
        events = await site.client.subscribe(f"{site.config.prefix}/events/#")
        guest = (await site.client.ok("access_codes/create", device_id="front_door", code="4821"))[
            "access_code"
        ]["access_code_id"]
        await _set(site, guest)
        assert "4821" in lock.slots.values()

        watch = asyncio.create_task(_removal_events(events, guest, lock.slots))
        await lock.control({"latency": latency})
        # Busy: another code's write is queued on the lock before the change comes.
        await site.client.ok("access_codes/create", device_id="front_door", code="5932")
        changed = await site.client.ok("access_codes/update", access_code_id=guest, code="7310")
        assert changed["access_code"]["code"] == "7310"
        await asyncio.sleep(gap)  # the 9 ms of the report, or none
        await site.client.ok("access_codes/delete", access_code_id=guest)

        # Until the gateway has forgotten the code, then let the slow lock finish.
        async with asyncio.timeout(60):
            while (await site.client.once("access_codes/get", access_code_id=guest) or {}).get(
                "ok", True
            ):
                await asyncio.sleep(0.05)
        await lock.control({"latency": "5ms"})
        site.ledger.created({"access_code_id": guest, "device_id": "front_door", "code": "4821"})
        site.ledger.updated({"access_code_id": guest, "code": "7310"})
        site.ledger.deleted(guest)
        await site.assert_converges()
        async with asyncio.timeout(10):
            await watch

        held = set(lock.slots.values())
        assert "4821" not in held, "the old PIN still opens the door"
        assert "7310" not in held, "the new PIN still opens the door"
        assert lock.try_code("4821") is None
        unmanaged = await site.client.ok("access_codes/unmanaged/list", device_id="front_door")
        assert unmanaged["access_codes"] == []
        # "removed_from_device" and "deleted" were said, each only once neither PIN was held.
        said = [kind for kind, _ in watch.result()]
        assert said == ["access_code.removed_from_device", "access_code.deleted"]
        assert all(not ({"4821", "7310"} & held_then) for _, held_then in watch.result())
