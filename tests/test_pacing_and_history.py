"""Command spacing per lock, and the event history read back through the API."""

from __future__ import annotations

import asyncio
import itertools

from tests.conftest import ConfigFactory
from tests.harness import at, get_code, new_code, running_site


async def test_commands_to_one_lock_keep_min_command_interval(make_config: ConfigFactory) -> None:
    """Z-Wave locks want 1-2 s between commands; the gateway spaces them per lock, and a
    lock's spacing never holds up another lock."""
    config = make_config(timing={"min_command_interval": "200ms"})
    async with running_site(config) as site:
        loop = asyncio.get_running_loop()
        commands = await site.api.subscribe("locks/+/command")
        arrivals: dict[str, list[float]] = {"front_door": [], "back_door": []}

        async def stamp() -> None:
            while True:
                message = await commands.get()
                arrivals[message.topic.value.split("/")[1]].append(loop.time())

        stamper = asyncio.create_task(stamp(), name="test-stamper")
        try:
            for pin in ("3141", "2718", "1618"):
                for lock in ("front_door", "back_door"):
                    await new_code(site, pin, lock)
            await site.settled()
        finally:
            stamper.cancel()
        for lock in ("front_door", "back_door"):
            assert site.lock(lock).slots == {1: "3141", 2: "2718", 3: "1618"}
            times = arrivals[lock]
            assert len(times) >= 3
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) >= 0.18, gaps  # 200 ms, less the broker's delivery jitter
        # The two locks ran side by side: the second lock did not wait for the first.
        assert abs(arrivals["front_door"][0] - arrivals["back_door"][0]) < 0.18


async def test_events_list_reads_the_history_back(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        start = at(site, 0)
        cid = await new_code(site, "5150")
        await site.settled()
        reply = await site.api.call("events/list", since=start, access_code_id=cid)
        assert reply["ok"]
        kinds = [e["event_type"] for e in reply["events"]]
        assert kinds == ["access_code.created", "access_code.set_on_device"]
        assert reply["events"][1]["code"] == "5150"
        page = await site.api.call(
            "events/list", after_event_id=reply["events"][0]["event_id"], access_code_id=cid
        )
        assert [e["event_type"] for e in page["events"]] == ["access_code.set_on_device"]
        typed = await site.api.call(
            "events/list", since=start, device_id="front_door", event_types=["access_code.created"]
        )
        assert [e["access_code_id"] for e in typed["events"]] == [cid]


async def test_a_write_that_never_left_is_not_an_attempt(make_config: ConfigFactory) -> None:
    """The pass counts an attempt before the command goes out; if the lock goes offline while
    the command waits for its spacing, nothing was sent, so nothing was tried: once the lock
    is back the code goes on at once, not after a backoff (the clock here never moves)."""
    config = make_config(timing={"min_command_interval": "1s", "max_attempts": 1})
    async with running_site(config) as site:
        lock = site.lock("front_door")
        await new_code(site, "3141")
        await site.settled()
        second = await new_code(site, "2718")
        async with asyncio.timeout(5):  # committed to its slot, now waiting out the spacing
            while (code := await get_code(site, second))["slot"] is None:
                await asyncio.sleep(0.01)
        assert code["status"] == "setting"
        await lock.control({"online": False})
        await site.settled()  # the paced write was refused as offline, the pass after it ran
        await lock.control({"online": True})
        await site.settled()
        assert (await get_code(site, second))["status"] == "set"
        assert "2718" in lock.slots.values()
