"""The fault suite (issue 7, point 5): the daemon as a real process, under kill -9, broker
crashes, a stalling or resetting network, a full disk, and locks that flap, dawdle, stutter or
talk nonsense.

After each fault the site must converge and the invariants of :mod:`tests.invariants` must hold,
judged against the simulator's slot tables (what the locks really hold) and the client's ledger
(what it was told), and the daemon must still answer promptly.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Json
from tests.broker import Broker
from tests.disk import KINDS, CappableDaemon, small_disk
from tests.proxy import TcpProxy
from tests.rig import Mix, Rig, Workload, rig, working

#: Seeds the random choices of the randomised scenarios; printed, so a failure can be replayed.
SEED_VARIABLE = "LOCKGATE_FAULT_SEED"


def seeded(scenario: str) -> random.Random:
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
    print(f"{scenario}: {SEED_VARIABLE}={seed}")
    return random.Random(seed)


# -- a. kill -9 -------------------------------------------------------------------------------

KILLS = 20
#: Everything a client does: creates, PIN and window changes, deletes, pulls of backups.
MIXED = Mix(create=3, pin_change=1, window_change=1, delete=1.5, pull=1)


@pytest.mark.timeout(150)
async def test_kill_9_at_random_moments_of_a_mixed_workload(broker: Broker, tmp_path: Path) -> None:
    """One daemon killed 20 times while four clients work; un-acked requests are retried with
    their idempotency key. The front door's codes are time_bound and draw on its backup pool."""
    rng = seeded("kill -9")
    async with rig(broker, tmp_path) as site:
        workloads = [
            Workload(
                site,
                device_id,
                random.Random(rng.random()),
                MIXED,
                time_bound=device_id == "front_door",
                pool=device_id == "front_door",
            )
            for device_id in ("front_door", "front_door", "back_door", "back_door")
        ]
        async with working(*workloads):
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.0, 0.5))  # the moment of the kill
                await site.kill()
                await site.start()
                await site.assert_safe()
        answered = sum(w.done for w in workloads)
        print(f"requests answered: {answered}, attempts sent again: {site.client.retries}")
        await site.assert_converges()


# -- b, c. the broker and the network ------------------------------------------------------------

#: Creates and deletes: what keeps the gateway's broker connection busy.
CHURN = Mix(create=3, delete=1)


def churn(
    site: Rig, rng: random.Random, device_ids: tuple[str, ...] = ("front_door", "back_door")
) -> list[Workload]:
    return [Workload(site, d, random.Random(rng.random()), CHURN, keep=8) for d in device_ids]


async def more_answers(workloads: list[Workload], count: int, timeout: float = 30.0) -> None:
    """Until the workloads have had ``count`` more requests answered: requests flow again."""
    target = sum(w.done for w in workloads) + count
    async with asyncio.timeout(timeout):
        while sum(w.done for w in workloads) < target:
            await asyncio.sleep(0.02)


async def test_broker_killed_mid_burst_and_restarted(broker: Broker, tmp_path: Path) -> None:
    """kill -9 of mosquitto (no persistence: sessions and retained messages are gone) and a new
    one on the same port: gateway, locks and client reconnect, and nothing acked is lost."""
    rng = seeded("broker crash")
    async with rig(broker, tmp_path) as site:
        workloads = churn(site, rng)
        async with working(*workloads):
            await more_answers(workloads, rng.randint(5, 25))  # mid-burst
            broker.kill()
            await asyncio.sleep(0.5)  # how long the broker stays down
            broker.start()
            await more_answers(workloads, 20)
        await site.assert_converges()


async def test_a_network_path_that_stalls_beyond_the_keepalive(
    broker: Broker, tmp_path: Path
) -> None:
    """The daemon's path to the broker goes quiet for three keepalives (nothing closed, nothing
    delivered), then carries on: both ends give the connection up, the daemon reconnects and
    serves what was asked meanwhile."""
    rng = seeded("stall")
    async with (
        TcpProxy(broker.host, broker.port) as proxy,
        rig(broker, tmp_path, daemon_port=proxy.port, mqtt={"keepalive": 1}) as site,
    ):
        workloads = churn(site, rng)
        async with working(*workloads):
            await more_answers(workloads, 10)
            proxy.stall()
            await site.logged("mqtt.disconnected")  # the daemon noticed the silence
            await asyncio.sleep(1.0)  # and the path stays quiet a while longer
            proxy.resume()
            await more_answers(workloads, 20)
        await site.assert_converges()
        assert proxy.accepted > 1  # it did reconnect


async def test_connections_reset_every_300ms(broker: Broker, tmp_path: Path) -> None:
    rng = seeded("resets")
    async with (
        TcpProxy(broker.host, broker.port) as proxy,
        rig(broker, tmp_path, daemon_port=proxy.port) as site,
    ):
        workloads = churn(site, rng)
        async with working(*workloads):
            for _ in range(10):
                await asyncio.sleep(0.3)  # the reset's period
                proxy.reset()
            await more_answers(workloads, 20)
        await site.assert_converges()
        assert proxy.accepted >= 5, proxy.accepted


# -- d. a full disk ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_full_disk(broker: Broker, tmp_path: Path, kind: str) -> None:
    """With no room for the database, writes are refused at once (not a crash, not a hang)
    and reads are answered; with room again, writes work and nothing acked was lost, also
    across a kill -9."""
    with small_disk(kind, tmp_path / "disk") as disk:
        database = str(disk.directory / "lockgate.db")
        async with rig(broker, tmp_path, database=database, daemon_class=CappableDaemon) as site:
            workload = churn(site, random.Random(0), ("front_door",))[0]
            for _ in range(3):
                await workload.create()
            victim = next(iter(workload.mine))
            disk.fill(site.daemon)
            for endpoint, params in (
                ("access_codes/create", {"device_id": "front_door", "code": site.fresh_pin()}),
                ("access_codes/delete", {"access_code_id": victim}),
            ):
                reply = await site.client.once(
                    endpoint, timeout=5.0, idempotency_key=endpoint, **params
                )
                assert reply is not None, f"{endpoint}: no reply on a full disk"
                if reply["ok"] and endpoint == "access_codes/delete":
                    # A delete changes pages already in the WAL's reused space: SQLite may find
                    # room for it. Then it is committed, as its reply says (checked below).
                    continue
                assert reply["ok"] is False, reply
                assert "could not store the change" in reply["error"]["message"], reply
                assert "nothing was changed" in reply["error"]["message"], reply
            listed = await site.client.ok("access_codes/list", device_id="front_door")
            assert {c["access_code_id"] for c in listed["access_codes"]} >= set(workload.mine)
            await site.assert_answers()
            disk.free()
            async with asyncio.timeout(10):
                while not (await site.client.call("access_codes/delete", access_code_id=victim))[
                    "ok"
                ]:
                    await asyncio.sleep(0.1)  # the first write after space came back may race it
            site.ledger.deleted(victim)
            del workload.mine[victim]
            await workload.create()
            await site.kill()
            await site.start()
            await site.assert_converges()


# -- e, f. locks misbehaving ----------------------------------------------------------------------


async def test_a_lock_flapping_every_100ms(broker: Broker, tmp_path: Path) -> None:
    """While codes come and go, the lock says online and offline by turns; once it stays
    online, everything converges."""
    rng = seeded("flapping")
    async with rig(broker, tmp_path) as site:
        lock = site.sim.lock("front_door")
        async with working(*churn(site, rng, ("front_door",))):
            for n in range(30):
                await lock.control({"online": n % 2 == 1})
                await asyncio.sleep(0.1)  # the flapping's period
        await site.assert_converges()


async def test_a_lock_answering_after_the_command_timeout(broker: Broker, tmp_path: Path) -> None:
    rng = seeded("late")
    async with rig(broker, tmp_path, timing={"command_timeout": "0.5s"}) as site:
        lock = site.sim.lock("front_door")
        await lock.control({"latency": 0.8})
        async with working(*churn(site, rng, ("front_door",)), ops=6):
            pass
        await site.logged("reconciler.no_answer")
        await lock.control({"latency": 0.005})
        await site.assert_converges()


async def test_a_lock_answering_twice(broker: Broker, tmp_path: Path) -> None:
    rng = seeded("twice")
    async with rig(broker, tmp_path) as site:
        results = await site.client.subscribe("locks/front_door/result")
        await site.sim.lock("front_door").control({"duplicate_results": True})
        async with working(*churn(site, rng, ("front_door",)), ops=10):
            pass
        await site.assert_converges()
        ids = [json.loads(m.payload)["id"] for m in drain(results)]
        assert len(ids) > len(set(ids)) > 0  # every answer came twice


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    found = []
    while not queue.empty():
        found.append(queue.get_nowait())
    return found


def garbage_tables(slot: int, pin: str) -> list[bytes]:
    """Slot tables that claim ``pin`` in ``slot`` but are not valid: none may be believed."""
    bad_shapes: list[Json] = [
        {"capacity": 40, "code_lengths": [4, 8], "slots": {str(slot): pin, "2": 1234}},
        {"capacity": "forty", "slots": {str(slot): pin}},
        {"capacity": 40, "slots": {str(slot): pin, "0": None}},
        {"capacity": 40, "slots": [pin]},
        {"capacity": 40, "code_lengths": [8, 4], "slots": {str(slot): pin}},
    ]
    return [b"not json at all", b"\xff\xfe\x00", b"[1, 2, 3]"] + [
        json.dumps(t).encode() for t in bad_shapes
    ]


def garbage_results(command_id: str) -> list[bytes]:
    """Answers to a command that are not valid: none may be taken for an answer."""
    bad: list[Json] = [{"id": command_id, "ok": "yes"}, {"id": 7, "ok": True}, {"ok": True}]
    return [b"{", b"\x00\x01", b"null"] + [json.dumps(r).encode() for r in bad]


async def test_a_lock_talking_garbage(broker: Broker, tmp_path: Path) -> None:
    """Results and slot tables that are not JSON, or have the wrong types, are ignored: the
    gateway neither crashes nor takes a code for set; once the lock talks sense it converges."""
    async with rig(broker, tmp_path) as site:
        lock = site.sim.lock("front_door")
        commands = await site.client.subscribe("locks/front_door/command")
        await lock.control({"silent": True})  # the gateway's commands go unanswered, but for us
        pin = site.fresh_pin()
        code = (await site.client.ok("access_codes/create", device_id="front_door", code=pin))[
            "access_code"
        ]
        site.ledger.created(code)
        async with asyncio.timeout(10):
            command = json.loads((await commands.get()).payload)
        assert command["op"] in ("set", "read"), command
        slot = command.get("slot") or 1
        for payload in garbage_tables(slot, pin):
            await site.client.publish("locks/front_door/slots", payload)
        for payload in garbage_results(command["id"]):
            await site.client.publish("locks/front_door/result", payload)
        await site.assert_answers()  # after the garbage (one connection: in order)
        seen = await site.client.ok("access_codes/get", access_code_id=code["access_code_id"])
        assert seen["access_code"]["status"] != "set", seen
        await lock.control({"silent": False})
        await site.assert_converges()
