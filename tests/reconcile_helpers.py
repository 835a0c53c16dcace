"""Shared by the ``test_reconcile_*`` files: timings, the expected event sequences of a code, and
helpers that create codes, read commands back and wait for the gateway's view of a lock.

Everything runs for real: mosquitto, the gateway and the simulated locks in the test's loop, with
a ``ManualClock`` for schedules. Faults are switched on the simulated lock exactly as the control
topic would. Time-outs of lock commands are real (``command_timeout``), so tests that need a
silent lock use a short one; everything else waits on events, never on the clock of the wall.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.base import SlotTable
from gateway.model import Json
from tests.harness import Recorder, Site, get_code, new_code
from tests.helpers import eventually

FAST_TIMEOUT = {"command_timeout": "300ms"}


def tries(attempts: int) -> dict[str, Any]:
    """Timing for ``attempts`` tries of each lock command, and no delay warnings in the events."""
    return {"max_attempts": attempts, "delay_warning_after": "1h"}


#: The events about a code that went on its lock (and stayed), in order.
SET_ONCE = ["access_code.created", "access_code.set_on_device"]
#: ... that went on and came off again.
ON_AND_OFF = [*SET_ONCE, "access_code.removed_from_device", "access_code.deleted"]
#: ... whose first writes failed before it landed.
SET_AFTER_FAILING = [
    "access_code.created",
    "access_code.failed_to_set_on_device",
    "access_code.set_on_device",
]


async def settled_code(site: Site, pin: str, device_id: str = "front_door", **params: Any) -> str:
    """:func:`new_code`, then the gateway settled: the code is on its lock, unless its window or
    the lock keeps it off."""
    cid = await new_code(site, pin, device_id, **params)
    await site.settled()
    return cid


def sets(commands: Recorder, slot: int | None = None) -> list[Json]:
    return [c for c in commands.pull() if c["op"] == "set" and slot in (None, c["slot"])]


def clears(commands: Recorder) -> list[Json]:
    return [c for c in commands.pull() if c["op"] == "clear"]


async def assert_set(site: Site, cid: str) -> Json:
    """The code is ``set``, with no errors; what the gateway says of it."""
    code = await get_code(site, cid)
    assert (code["status"], code["errors"]) == ("set", []), code
    return code


async def gone(site: Site, access_code_id: str) -> bool:
    reply = await site.api.call("access_codes/get", access_code_id=access_code_id)
    return reply["ok"] is False and reply["error"]["type"] == "access_code_not_found"


async def reported(site: Site, device_id: str, predicate: Callable[[SlotTable], bool]) -> None:
    """Until the gateway has seen the lock report a table that satisfies ``predicate`` (the
    gateway's own view of the lock, not the simulator's), and has acted on it."""
    assert site.gateway.reconciler is not None
    driver = site.gateway.reconciler.workers[device_id].driver
    await eventually(lambda: driver.table is not None and predicate(driver.table))
    await site.settled()
