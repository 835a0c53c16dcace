"""Access codes reconciled onto locks when outcomes are uncertain: unanswered or unverified writes
read back, periodic resync reads, a silent lock not holding up another, and events complete
and in order across a broker restart.

Runs against a real mosquitto, the gateway and simulated locks (see
:mod:`tests.reconcile_helpers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from contextlib import AsyncExitStack

import aiomqtt

from gateway.config import Config
from gateway.model import Json
from gateway.mqtt import build_client
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import (
    Recorder,
    api_client,
    barrier,
    get_code,
    is_event,
    kinds,
    new_code,
    payload_json,
    running_site,
    window,
)
from tests.helpers import eventually
from tests.reconcile_helpers import FAST_TIMEOUT, ON_AND_OFF, SET_AFTER_FAILING, SET_ONCE, sets

# -- unknown outcomes, verification -----------------------------------------------------------


async def test_an_unanswered_write_is_read_back_not_repeated(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing=FAST_TIMEOUT)) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        await lock.control({"apply_silently_next": 1})
        cid = await new_code(site, "8181")
        await barrier(site)
        assert [c["op"] for c in commands.pull()] == ["set", "read"]
        got = await get_code(site, cid)
        assert (got["status"], got["slot"], got["errors"]) == ("set", 1, [])
        assert lock.slots == {1: "8181"}
        assert kinds(events, cid) == SET_ONCE


async def test_an_acknowledged_write_is_believed_only_when_the_lock_shows_it(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        commands = await Recorder.commands(site)
        lock = site.lock("front_door")
        await lock.control({"ignore_writes_next": 1})  # says ok, writes nothing
        cid = await new_code(site, "8282")
        await barrier(site)
        assert lock.slots == {1: "8282"}
        assert [(c["slot"], c["code"]) for c in sets(commands)] == [(1, "8282"), (1, "8282")]
        assert kinds(events, cid) == SET_ONCE


async def test_resync_reads_every_lock_back(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing={"resync_interval": "15m"})) as site:
        front = await Recorder.commands(site)
        back = await Recorder.commands(site, "back_door")
        await site.advance(899)
        await barrier(site)
        assert (front.pull(), back.pull()) == ([], [])
        await site.advance(1)
        await barrier(site)
        assert [c["op"] for c in front.pull()] == ["read"]
        assert [c["op"] for c in back.pull()] == ["read"]


# -- locks do not wait on each other ----------------------------------------------------------


async def test_a_silent_lock_does_not_hold_up_another(make_config: ConfigFactory) -> None:
    async with running_site(make_config(timing={"command_timeout": "2s"})) as site:
        events = await Recorder.events(site)
        stuck = await Recorder.commands(site, "back_door")
        await site.lock("back_door").control({"silent": True})
        slow = await new_code(site, "7001", "back_door")
        await stuck.wait(lambda c: c["op"] == "set")  # back_door's worker now waits 2 s
        fast = await new_code(site, "7002")
        await events.wait(is_event("access_code.set_on_device", access_code_id=fast), timeout=1.0)
        assert site.lock("front_door").slots == {1: "7002"}
        assert (await get_code(site, slow))["status"] == "setting"
        await site.lock("back_door").control({"silent": False})
        await site.settled()
        await site.advance(60)
        assert site.lock("back_door").slots == {1: "7001"}
        assert (await get_code(site, slow))["status"] == "set"


# -- events across a broker restart -----------------------------------------------------------


class Watcher:
    """An event subscriber with a persistent session: while it is away (the broker restarting)
    the broker keeps what is published for it, so what it sees is exactly what was published."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.received: list[Json] = []
        self._stack = AsyncExitStack()

    async def connect(self, *, subscribe: bool) -> None:
        client = build_client(self._config.mqtt, identifier="event-watcher", session_expiry=3600)
        await self._stack.enter_async_context(client)
        if subscribe:
            await client.subscribe(f"{self._config.prefix}/events/#", qos=1)
        reader = asyncio.create_task(self._read(client))
        self._stack.callback(reader.cancel)

    async def _read(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in client.messages:
                self.received.append(payload_json(message))

    async def close(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await self._stack.aclose()
        self._stack = AsyncExitStack()

    def unique(self) -> list[Json]:
        """At least once: the first copy of each event, in arrival order."""
        seen: set[str] = set()
        first = []
        for event in self.received:
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                first.append(event)
        return first


async def test_events_complete_and_in_order_across_a_broker_restart(
    broker: Broker, make_config: ConfigFactory
) -> None:
    # The broker keeps sessions over its restart (the test's own subscriber needs that).
    broker.stop()
    broker.conf.write_text(
        broker.conf.read_text().replace(
            "persistence false", f"persistence true\npersistence_location {broker.workdir}/"
        )
    )
    broker.start()
    config = make_config(timing={"delay_warning_after": "1h"})
    watcher = Watcher(config)
    await watcher.connect(subscribe=True)
    try:
        async with running_site(config) as site:
            assert site.gateway.store is not None
            assert site.gateway.reconciler is not None
            store, workers = site.gateway.store, site.gateway.reconciler.workers
            ongoing = await new_code(site, "1357")
            ending = await new_code(site, "2468", "back_door", **window(site, -10, 30))
            starting = await new_code(site, "3579", **window(site, 30, 3600))
            await site.settled()
            await watcher.close()

            broker.stop()
            await eventually(lambda: not site.gateway.session.is_connected)
            await asyncio.gather(*(w.settled.wait() for w in workers.values()))
            # While the broker is away: a request through the gateway's own router (the MQTT
            # leg is all that is missing), and the clock moving windows on and off.
            assert site.gateway.router is not None
            reply = await site.gateway.router.handle(
                f"{config.prefix}/api/access_codes/create",
                b'{"device_id": "back_door", "code": "4680", "reply_to": "x/y"}',
            )
            assert reply is not None
            assert reply.body["ok"] is True
            made_offline = reply.body["access_code"]["access_code_id"]
            site.manual_clock.advance(30)
            site.gateway.reconciler.wake_all()
            await asyncio.gather(*(w.settled.wait() for w in workers.values()))
            unpublished = await store.fetchall(
                "SELECT event_type, device_id, access_code_id FROM events WHERE published = 0"
                " ORDER BY seq"
            )
            stored_offline = [(r["event_type"], r["access_code_id"]) for r in unpublished]
            assert ("device.disconnected", None) in stored_offline
            assert ("access_code.created", made_offline) in stored_offline
            assert ("access_code.failed_to_set_on_device", starting) in stored_offline

            broker.start()
            await watcher.connect(subscribe=False)  # the session kept the subscription
            await site.gateway.session.wait_connected(timeout=10)
            async with api_client(config) as api:
                await eventually(
                    lambda: (
                        site.lock("front_door").slots == {1: "1357", 2: "3579"}
                        and site.lock("back_door").slots == {2: "4680"}
                    )
                )
                await site.settled()
                assert (await api.call("access_codes/get", access_code_id=ending))["error"][
                    "type"
                ] == "access_code_not_found"
            rows = await store.fetchall("SELECT body, published FROM events ORDER BY seq")
            assert all(r["published"] == 1 for r in rows)
            stored = [json.loads(r["body"]) for r in rows]
            await eventually(lambda: len(watcher.unique()) == len(stored))
            seen = watcher.unique()
            for device_id in ("front_door", "back_door"):
                assert [e["event_id"] for e in seen if e["device_id"] == device_id] == [
                    e["event_id"] for e in stored if e["device_id"] == device_id
                ]
            assert {e["event_id"] for e in seen} == {e["event_id"] for e in stored}
            by_code = {
                cid: [e["event_type"] for e in seen if e.get("access_code_id") == cid]
                for cid in (ongoing, ending, starting, made_offline)
            }
            assert by_code[ending] == ON_AND_OFF
            assert by_code[starting] == SET_AFTER_FAILING
            assert by_code[made_offline] == SET_AFTER_FAILING
            kinds_front = [e["event_type"] for e in seen if e["device_id"] == "front_door"]
            assert kinds_front.count("device.disconnected") == 1
            assert kinds_front.index("device.disconnected") < kinds_front.index(
                "device.connected", kinds_front.index("device.disconnected")
            )
    finally:
        await watcher.close()
