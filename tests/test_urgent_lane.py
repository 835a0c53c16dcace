"""Pulls on a lane of their own (issue 10: requests first): a thread and an MQTT connection that
the traffic of thousands of locks does not hold up. What a user would notice: every pull is
answered once, by the lane while it is connected, and by the gateway's own connection while the
lane's is lost; nothing else changes."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from gateway.api.urgent_lane import UrgentLane
from gateway.broker import free_port
from gateway.clock import ManualClock
from tests.backup_pool_helpers import (
    FRONT,
    create_stay,
    gateway_site,
    pool_config,
    pull,
    stay_with_backup,
)
from tests.conftest import ConfigFactory
from tests.harness import Site, ok, running_simulator


async def serving(lane: UrgentLane, expected: bool) -> None:
    assert await asyncio.to_thread(lane.wait_serving, expected, 10.0), f"serving={expected}"


def lane_of(site: Site) -> UrgentLane:
    lane = site.gateway.urgent_lane
    assert lane is not None
    return lane


async def test_a_pull_is_answered_once_by_the_lane_and_by_the_gateway_without_it(
    make_config: ConfigFactory,
) -> None:
    config = pool_config(make_config, slots=8, size=2)
    async with running_simulator(config) as sim, gateway_site(config, ManualClock(), sim) as site:
        lane = lane_of(site)
        await serving(lane, True)
        guest, backup = await stay_with_backup(site)
        assert lane.served == 1
        assert backup["code"] in sim.lock(FRONT).slots.values()

        # Exactly one reply per pull, though two connections hear the request.
        replies = await site.api.subscribe("test/urgent/replies")
        second = await create_stay(site, name="Second guest")
        await site.settled()
        for number, code_id in enumerate((guest["access_code_id"], second["access_code_id"])):
            await site.api.publish(
                f"{config.prefix}/api/access_codes/pull_backup_access_code",
                {
                    "access_code_id": code_id,
                    "reply_to": "test/urgent/replies",
                    "request_id": f"pull-{number}",
                },
            )
        said = [json.loads((await asyncio.wait_for(replies.get(), 5)).payload) for _ in range(2)]
        assert sorted(r["request_id"] for r in said) == ["pull-0", "pull-1"]
        assert all(r["ok"] for r in said), said
        # ... and the gateway's own session, which heard both too, answers a request of its
        # own after them: no third reply came meanwhile.
        ok(await site.api.call("devices/list"))
        assert replies.empty()
        assert lane.served == 3

        # The lane loses its broker: the gateway's own connection answers pulls meanwhile.
        lane.reconfigure(dataclasses.replace(config.mqtt, port=free_port()))
        await serving(lane, False)
        third = await create_stay(site, name="Third guest")
        await site.settled()
        assert ok(await pull(site, third["access_code_id"]))["backup_access_code"]["is_backup"]
        assert lane.served == 3

        # Back on its broker, the lane takes them again.
        lane.reconfigure(config.mqtt)
        await serving(lane, True)
        again = ok(await pull(site, third["access_code_id"]))["backup_access_code"]
        assert lane.served == 4
        assert again["code"] in sim.lock(FRONT).slots.values()


async def test_the_lane_stops_with_the_gateway(make_config: ConfigFactory) -> None:
    config = pool_config(make_config, slots=8, size=2)
    async with running_simulator(config) as simulator:
        async with gateway_site(config, ManualClock(), simulator) as site:
            lane = lane_of(site)
            await serving(lane, True)
        assert not lane.serving
        assert lane.thread is not None
        assert not lane.thread.is_alive()
