"""The front desk: backups pulled during ``bench.site``'s burst, from a process of its own.

On a real site the booking system that creates codes in bulk and the front desk (or guest app)
that pulls a backup for a guest at the door are different clients. So the pulls come from this
process, not from the process that keeps 64 creates in flight: a client busy with its own burst
would add its own waiting to every pull it timed.

Beside every pull, half a period later, the same process sends one request to the raw echo
(``bench.site --echo``, started for the burst): a responder that does no work, through the same
broker, on the same loaded machine. Its round trip is the floor a pull is measured against,
taken in the same moments: what the machine's load alone costs a request.

Protocol with ``bench.site``: the guests' code ids come as one JSON line on stdin; ``ready`` is
printed once both connections are up; a line on stdin (or its end) stops the pulls; the samples
then go to stdout as one JSON line.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import Latency, now
from gateway.client import ApiClient, connect
from gateway.config import MqttSettings, load_config
from gateway.mqtt import encode

PULL_EVERY = 0.05
REQUEST_TIMEOUT = 120.0
NO_BACKUP = "no_backup_access_code_available"
ECHO_PREFIX = "bench-echo"
ECHO_PAYLOAD = encode({"access_code_id": "92953f8c-3298-4aff-8660-4d39882a46d5"})


@dataclass
class Pulls:
    handed_out: list[float] = field(default_factory=list)  # a new backup
    none_available: list[float] = field(default_factory=list)
    repeated: list[float] = field(default_factory=list)  # the same guest again: same backup
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    echo: list[float] = field(default_factory=list)  # the raw round trip, in the same moments

    @property
    def answered(self) -> list[float]:
        return self.handed_out + self.none_available + self.repeated

    @property
    def echo_latency(self) -> Latency:
        return Latency.of(self.echo)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Pulls:
        refused = collections.Counter[str](document.pop("refused"))
        return cls(refused=refused, **document)


async def every(
    period: float, done: asyncio.Event, call: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """``call(n)`` every ``period`` seconds until ``done``. Open loop: a call is started on time
    even while earlier ones are still out, so a slow answer delays no later call (and hides no
    latency); the calls still out are awaited at the end."""
    async with asyncio.TaskGroup() as tg:
        due, number = now(), 0
        while not done.is_set():
            if (wait := due - now()) > 0:
                await asyncio.sleep(min(wait, period))
                continue
            due += period
            tg.create_task(call(number), name=f"bench-front-desk:{number}")
            number += 1


async def pull_every(
    api: ApiClient, echo: ApiClient, guests: Sequence[str], pulls: Pulls, done: asyncio.Event
) -> None:
    """A pull every :data:`PULL_EVERY` seconds, each for the next guest, and an echo request
    between each two pulls, until ``done``."""
    pulled: set[str] = set()

    async def pull(number: int) -> None:
        guest = guests[number % len(guests)]
        started = now()
        reply = await api.call(
            "access_codes/pull_backup_access_code", timeout=REQUEST_TIMEOUT, access_code_id=guest
        )
        took = now() - started
        if reply.get("ok"):
            (pulls.repeated if guest in pulled else pulls.handed_out).append(took)
            pulled.add(guest)
        elif (error := (reply.get("error") or {}).get("type")) == NO_BACKUP:
            pulls.none_available.append(took)
        else:
            pulls.refused[str(error)] += 1

    async def round_trip(_: int) -> None:
        await asyncio.sleep(PULL_EVERY / 2)
        started = now()
        await echo.call_raw("echo", ECHO_PAYLOAD, timeout=REQUEST_TIMEOUT)
        pulls.echo.append(now() - started)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(every(PULL_EVERY, done, pull), name="bench-pulls")
        tg.create_task(every(PULL_EVERY, done, round_trip), name="bench-echoes")


async def front_desk(settings: MqttSettings, prefix: str) -> None:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    guests = json.loads(await reader.readline())
    async with connect(settings, prefix) as api, connect(settings, ECHO_PREFIX) as echo:
        print("ready", flush=True)
        pulls, done = Pulls(), asyncio.Event()
        pulling = asyncio.create_task(pull_every(api, echo, guests, pulls, done))
        await reader.readline()  # the burst is over
        done.set()
        await pulling
    print(json.dumps(asdict(pulls)), flush=True)


def main(config_file: str) -> None:
    config = load_config(config_file)
    asyncio.run(front_desk(config.mqtt, config.prefix))


if __name__ == "__main__":
    main(sys.argv[1])
