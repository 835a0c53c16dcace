"""kill -9 while 64 creates are in flight, commits among them: what was answered survives, what
was not is done at most once when the client retries it, and every lock converges.

What a group commit (several requests' changes in one COMMIT) must keep true: ``ok`` is sent only
once the COMMIT holding the change has reached the disk, and a request whose COMMIT did not
finish leaves nothing behind, neither its code nor its idempotency record. The gateway runs as a
real process (so it can really be killed); the simulated locks run in the test's loop on their
own connection and every command they receive is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.client import ApiClient, connect
from gateway.config import parse_config
from gateway.model import Json
from tests.broker import Broker
from tests.conftest import codes_on_lock, site_dict
from tests.harness import running_simulator, wait_for_json
from tests.test_durability import assert_locks_hold, collect_writes, until_all_set
from tests.test_service import Daemon, is_state, write_config

LOCKS = tuple(f"door_{n}" for n in range(8))
SLOTS = 30
REQUESTS = 160  # 20 codes a lock: they all fit, with the unmanaged one
IN_FLIGHT = 64
KILL_AT = REQUESTS // 3  # creates answered ok when the gateway is killed
UNMANAGED = {str(SLOTS): "9999"}  # on the first lock, there before the gateway

Request = dict[str, Any]


def site(broker: Broker, tmp_path: Path) -> dict[str, Any]:
    return site_dict(
        broker,
        tmp_path,
        devices=[
            {"device_id": lock, "driver": "native", "slots": SLOTS, "code_lengths": [4, 8]}
            for lock in LOCKS
        ],
        simulator={"latency": "3ms", **codes_on_lock(UNMANAGED, LOCKS[0])},
        timing={"command_timeout": "2s"},
    )


def creates() -> list[Request]:
    """One create per code, round-robin over the locks: its own key, name and PIN."""
    return [
        {
            "device_id": LOCKS[i % len(LOCKS)],
            "name": f"Guest {i}",
            "code": f"{5000 + i}",
            "idempotency_key": str(uuid.uuid4()),
        }
        for i in range(REQUESTS)
    ]


class Burst:
    """Creates with ``IN_FLIGHT`` of them outstanding at any time (one worker each, taking the
    next request as soon as its reply is in); the replies, by idempotency key."""

    def __init__(self, api: ApiClient, on_reply: Callable[[Burst], None] | None = None) -> None:
        self._api = api
        self._on_reply = on_reply
        self.replies: dict[str, Json] = {}
        self.in_flight = 0
        self.stopped = False  # no more requests are sent

    def answered(self) -> dict[str, Json]:
        """The access code of each create answered ``ok``, by key (every reply must be ``ok``)."""
        assert all(r["ok"] is True for r in self.replies.values()), self.replies
        return {key: reply["access_code"] for key, reply in self.replies.items()}

    async def run(self, requests: list[Request], timeout: float) -> None:
        pending = iter(requests)  # shared by the workers

        async def worker() -> None:
            for request in pending:
                if self.stopped:
                    return
                self.in_flight += 1
                reply = await self._api.call("access_codes/create", timeout=timeout, **request)
                self.in_flight -= 1
                self.replies[request["idempotency_key"]] = reply
                if self._on_reply is not None:
                    self._on_reply(self)

        async with asyncio.TaskGroup() as tg:
            for _ in range(IN_FLIGHT):
                tg.create_task(worker())


def stored_codes(database: Path) -> dict[str, tuple[str, str, str]]:
    """Every managed code in the gateway's database file: id -> (device, name, PIN)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT access_code_id, device_id, name, code FROM access_codes WHERE is_backup = 0"
        ).fetchall()
    return {cid: (device, name, code) for cid, device, name, code in rows}


def stored_keys(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return {key for (key,) in db.execute("SELECT key FROM idempotency")}


async def test_kill_9_with_64_creates_in_flight_loses_no_ack_and_doubles_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    data = site(broker, tmp_path)
    config = parse_config(data, base_dir=tmp_path)
    database = Path(data["database"])
    daemon = Daemon(write_config(tmp_path / "lockgate.yaml", data), tmp_path / "daemon.log")
    requests = creates()
    by_key = {r["idempotency_key"]: r for r in requests}
    writes: Counter[tuple[str, int, str]] = Counter()
    killed = asyncio.Event()
    at_kill: dict[str, Any] = {}

    def kill_at_a_third(burst: Burst) -> None:
        # Right as the KILL_AT-th reply comes in: the others are all still in flight.
        if not burst.stopped and len(burst.replies) >= KILL_AT:
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGKILL)
            burst.stopped = True
            at_kill.update(answered=len(burst.replies), in_flight=burst.in_flight)
            killed.set()

    try:
        async with running_simulator(config) as sim, connect(config.mqtt, config.prefix) as api:
            commands = await api.subscribe("locks/+/command")
            status = await api.subscribe(f"{config.prefix}/status")
            set_on_device = await api.subscribe(f"{config.prefix}/events/access_code.set_on_device")
            await daemon.started(status, timeout=30)

            first = Burst(api, on_reply=kill_at_a_third)
            sending = asyncio.create_task(first.run(requests, timeout=30))
            try:
                waiter = asyncio.create_task(killed.wait())
                done, _ = await asyncio.wait(
                    {sending, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                if sending in done:
                    sending.result()  # what failed the burst before the kill
                assert killed.is_set(), "no kill within 30 s"
                assert at_kill == {"answered": KILL_AT, "in_flight": IN_FLIGHT - 1}
                assert daemon.proc is not None
                assert await asyncio.to_thread(daemon.proc.wait, 10) == -signal.SIGKILL
                # The broker sends the will after whatever it got from the gateway before it
                # died: from here on no reply of the first gateway is still on its way.
                await wait_for_json(status, is_state("offline"), timeout=10)
            finally:
                sending.cancel()  # the requests still unanswered will never be
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
            answered = first.answered()

            await daemon.started(status, timeout=30)
            # Every create answered ok is in the database file, as it was answered ...
            stored = stored_codes(database)
            for key, code in answered.items():
                request = by_key[key]
                assert stored.get(code["access_code_id"]) == (
                    request["device_id"],
                    request["name"],
                    request["code"],
                ), key
            assert set(answered) <= stored_keys(database)
            # ... and the restarted gateway says so.
            gets = await asyncio.gather(
                *(
                    api.call("access_codes/get", access_code_id=c["access_code_id"])
                    for c in answered.values()
                )
            )
            for key, reply in zip(answered, gets, strict=True):
                assert reply["ok"] is True, reply
                assert reply["access_code"]["code"] == by_key[key]["code"]
                assert reply["access_code"]["name"] == by_key[key]["name"]

            # The client retries what was not answered (and, being careful, the rest too).
            unanswered = [r for r in requests if r["idempotency_key"] not in answered]
            assert unanswered
            again = Burst(api)
            await again.run(unanswered + [by_key[k] for k in answered], timeout=30)
            retried = again.answered()
            assert set(retried) == set(by_key)
            for key, code in answered.items():
                assert retried[key]["access_code_id"] == code["access_code_id"], key
            ids = {key: code["access_code_id"] for key, code in retried.items()}
            assert len(set(ids.values())) == REQUESTS  # one code per key

            # Exactly one code per request in the database: by id, by name and by PIN.
            stored = stored_codes(database)
            assert set(stored) == set(ids.values())
            for key, cid in ids.items():
                request = by_key[key]
                assert stored[cid] == (request["device_id"], request["name"], request["code"])
            names = Counter(name for (_, name, _) in stored.values())
            assert names == Counter(r["name"] for r in requests)
            pins = Counter((device, pin) for (device, _, pin) in stored.values())
            assert pins == Counter((r["device_id"], r["code"]) for r in requests)

            # Every lock converges on exactly its codes (and the unmanaged one): the gateway
            # announces each code on its lock (at least once: the first run's unpublished events
            # come after the restart), then the API and the locks say so.
            not_yet = set(ids.values())

            def none_left(event: Json) -> bool:
                not_yet.discard(event["access_code_id"])
                return not not_yet

            await wait_for_json(set_on_device, none_left, timeout=30)
            await until_all_set(api, ids.values(), timeout=5)
            await assert_locks_hold(api, sim, LOCKS, ids.values(), {LOCKS[0]: UNMANAGED})
            collect_writes(commands, writes)
        # No slot was written twice with the same code.
        doubled = {k: n for k, n in writes.items() if n > 1}
        assert not doubled, doubled
    finally:
        daemon.stop()
