"""No PIN outlives its code, as a property: random sequences of what clients, locks and crashes do.

A hypothesis state machine drives the real gateway against the simulated locks over a real
broker: creates, PIN and window updates, deletes, pulls, unmanaging, lock latency beyond the
command timeout, lock faults, keypad changes, restarts and the clock moving on. After every step,
once the gateway has settled, the invariants of :mod:`tests.invariants` must hold on what the
locks really hold: no PIN of a forgotten code on any lock, no slot with two managed codes, no
managed code in two slots, no PIN twice on a lock, every acknowledged request durable. At the
end the faults stop and the site must converge, every deleted code gone from its lock.

The machine runs in its own event loop (hypothesis drives it synchronously), on a ManualClock.
``LOCKGATE_MACHINE_EXAMPLES=200`` runs a longer soak than CI's six sequences.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gateway.client import ApiClient, connect
from gateway.clock import ManualClock, isoformat
from gateway.config import parse_config
from gateway.model import Json
from gateway.service import Gateway
from gateway.site import running_gateway, running_simulator
from tests.broker import Broker
from tests.conftest import site_dict
from tests.invariants import Ledger, divergences, violations

LOCKS = ("front_door", "back_door")
FAULTS = ("fail_next", "silent_next", "ignore_writes_next", "apply_silently_next")
COMMAND_TIMEOUT = 0.3
STEP_TIMEOUT = 20.0
#: Rounds of a minute each for the site to converge once the faults stop (it stops early).
CONVERGE_ROUNDS = 80
#: A soak explores at random (``LOCKGATE_MACHINE_EXAMPLES``); CI replays a fixed set.
SOAK = os.environ.get("LOCKGATE_MACHINE_EXAMPLES")


class PinLifecycle(RuleBasedStateMachine):
    codes = Bundle("codes")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.workdir = Path(tempfile.mkdtemp(prefix="lockgate-machine-"))
        self.broker = Broker(self.workdir)
        self.broker.start()
        data = site_dict(
            self.broker,
            self.workdir,
            devices=[
                {"device_id": d, "driver": "native", "slots": 8, "code_lengths": [4, 6]}
                for d in LOCKS
            ],
            timing={"command_timeout": f"{int(COMMAND_TIMEOUT * 1000)}ms", "max_attempts": 2},
            backup_pool={"size": 2},
            simulator={"latency": "1ms"},
        )
        data["devices"][0]["backup_pool"] = {"enabled": True, "size": 2}
        self.config = parse_config(data, base_dir=self.workdir)
        self.clock = ManualClock()
        self.ledger = Ledger()
        self.pending: set[str] = set()  # deleted or ended, maybe still on the lock meanwhile
        self.typed_in: dict[str, set[str]] = {d: set() for d in LOCKS}
        self.managed = dict.fromkeys(LOCKS, True)
        self.next_pin = 20_000
        self.ends_at: dict[str, str] = {}  # time_bound codes and pulled backups
        self.stack = AsyncExitStack()
        self.gateway_stack = AsyncExitStack()
        self.gateway: Gateway | None = None
        self.api: ApiClient
        self._run(self._start())

    # -- plumbing -----------------------------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))

    async def _start(self) -> None:
        self.sim = await self.stack.enter_async_context(running_simulator(self.config))
        self.api = await self.stack.enter_async_context(
            connect(self.config.mqtt, self.config.prefix)
        )
        await self._start_gateway()

    async def _start_gateway(self) -> None:
        self.gateway = await self.gateway_stack.enter_async_context(
            running_gateway(self.config, self.clock)
        )
        await self._settle()

    async def _settle(self) -> None:
        """Until the gateway is idle with every lock report taken in: one lock round trip
        (the simulator answers in order), then the gateway's own idea of settled."""
        assert self.gateway is not None
        for _ in range(2):
            await self.gateway.settled()
            assert (await self.api.call("devices/list"))["ok"]
            await asyncio.sleep(0.01)  # a lock report published just now reaches the gateway
        await self.gateway.settled()

    async def _call(self, endpoint: str, **params: Any) -> Json:
        reply: Json = await self.api.call(endpoint, timeout=10.0, **params)
        return reply

    def teardown(self) -> None:
        try:
            self._run(self._converge())
        finally:
            try:
                self._run(self.gateway_stack.aclose())
                self._run(self.stack.aclose())
            finally:
                self.loop.close()
                self.broker.kill()
                shutil.rmtree(self.workdir, ignore_errors=True)

    async def _converge(self) -> None:
        """The faults stop; with time the site must match the gateway, nothing deleted left."""
        for lock in LOCKS:
            await self.sim.lock(lock).control({"latency": 0.001, **dict.fromkeys(FAULTS, 0)})
            if not self.managed[lock]:
                await self._call("devices/update", device_id=lock, is_managed=True)
        last: list[str] = []
        for _ in range(CONVERGE_ROUNDS):
            self.clock.advance(60)  # retries back off; pulled backups and windows may end
            assert self.gateway is not None
            assert self.gateway.reconciler is not None
            self.gateway.reconciler.wake_all()
            await self._settle()
            codes = await self._codes()
            self._forget_ended(codes)
            placed = self._placeable(codes)
            last = divergences(self._tables(), placed, self.clock.now(), unmanaged=self.typed_in)
            if not last:
                break
        assert not last, last
        await self._check()

    # -- what is true -------------------------------------------------------------------------

    def _tables(self) -> dict[str, dict[int, str | None]]:
        return {d: dict(self.sim.lock(d).slots) for d in LOCKS}

    async def _codes(self) -> list[Json]:
        found: list[Json] = []
        for lock in LOCKS:
            reply = await self._call("access_codes/list", device_id=lock, include_backup_pool=True)
            found += reply["access_codes"]
        return found

    def _forget_ended(self, codes: list[Json]) -> None:
        """Codes that left the listing (deleted, ended) now must have left their locks."""
        listed = {c["access_code_id"] for c in codes}
        for cid in list(self.ledger.acked):
            if cid not in listed:
                assert cid in self.pending or self._ended(cid), f"acknowledged code lost: {cid}"
        for cid in [c for c in self.pending if c not in listed]:
            self.ledger.deleted(cid)
            self.pending.discard(cid)
        for cid in [c for c in self.ledger.acked if c not in listed]:
            self.ledger.deleted(cid)  # ended with its window

    def _ended(self, access_code_id: str) -> bool:
        ends = self.ends_at.get(access_code_id)
        return ends is not None and ends <= isoformat(self.clock.now())

    def _placeable(self, codes: list[Json]) -> list[Json]:
        """The codes that must be on their lock by now: all but those with no room on a lock
        that keypad PINs and other codes really fill (which then must say so)."""
        tables = self._tables()
        placeable = []
        for code in codes:
            errors = {e["error_code"] for e in code["errors"]}
            if "no_space_for_access_code_on_device" in errors:
                table = tables[code["device_id"]]
                assert None not in table.values(), f"no space claimed, yet free slots: {table}"
                continue
            placeable.append(code)
        return placeable

    async def _check(self) -> None:
        codes = await self._codes()
        self._forget_ended(codes)
        found = violations(self._tables(), codes, self.ledger, unmanaged=self.typed_in)
        assert not found, found

    def _pin(self) -> str:
        self.next_pin += 1
        return str(self.next_pin)

    # -- what clients do ----------------------------------------------------------------------

    @rule(target=codes, lock=st.sampled_from(LOCKS), hours=st.none() | st.integers(1, 48))
    def create(self, lock: str, hours: int | None) -> str:
        params: dict[str, Any] = {"device_id": lock, "code": self._pin()}
        if hours is not None:
            now = self.clock.now()
            params["starts_at"] = isoformat(now)
            params["ends_at"] = isoformat(now + timedelta(hours=hours))
        reply = self._run(self._act("access_codes/create", **params))
        if not reply["ok"]:
            return ""
        code = reply["access_code"]
        self.ledger.created(code)
        if code["ends_at"]:
            self.ends_at[code["access_code_id"]] = code["ends_at"]
        return str(code["access_code_id"])

    @rule(code=codes)
    def change_pin(self, code: str) -> None:
        if not code or code in self.pending:
            return
        reply = self._run(self._act("access_codes/update", access_code_id=code, code=self._pin()))
        if reply["ok"]:
            self.ledger.updated(reply["access_code"])

    @rule(code=consumes(codes))
    def delete(self, code: str) -> None:
        if not code or code in self.pending:
            return
        reply = self._run(self._act("access_codes/delete", access_code_id=code))
        if reply["ok"]:
            self._deleting(code)

    def _deleting(self, code: str) -> None:
        """The code, and its pulled backup with it, may now leave the listing in any order."""
        self.pending.add(code)
        backup = self.ledger.backup_of.get(code)
        if backup is not None:
            self.pending.add(backup)

    @rule(code=consumes(codes), latency=st.sampled_from([0.001, 0.1, 0.5]))
    def rebook_then_cancel(self, code: str, latency: float) -> None:
        """The booking changes and is cancelled at once, while the lock is slow (0.5 s: past the
        command timeout) and busy with another guest's code."""
        if not code or code in self.pending:
            return
        lock = self.ledger.device_of[code]

        async def both() -> None:
            await self.sim.lock(lock).control({"latency": latency})
            busy = await self._call("access_codes/create", device_id=lock, code=self._pin())
            if busy["ok"]:
                self.ledger.created(busy["access_code"])
            changed = await self._call("access_codes/update", access_code_id=code, code=self._pin())
            if changed["ok"]:
                self.ledger.updated(changed["access_code"])
            deleted = await self._call("access_codes/delete", access_code_id=code)
            if deleted["ok"]:
                self._deleting(code)
            await self._settle()

        self._run(both())

    @rule(code=codes)
    def pull(self, code: str) -> None:
        if not code or code in self.pending:
            return
        reply = self._run(self._act("access_codes/pull_backup_access_code", access_code_id=code))
        if reply["ok"]:
            self.ledger.pulled(code, reply["backup_access_code"])
            ends = reply["backup_access_code"]["ends_at"]
            self.ends_at[reply["backup_access_code"]["access_code_id"]] = ends

    @rule(lock=st.sampled_from(LOCKS))
    def toggle_managed(self, lock: str) -> None:
        reply = self._run(
            self._act("devices/update", device_id=lock, is_managed=not self.managed[lock])
        )
        if reply["ok"]:
            self.managed[lock] = not self.managed[lock]
            if not self.managed[lock]:  # its backups, pulled ones too, come off the lock
                self.pending |= {
                    backup
                    for backup in self.ledger.backup_of.values()
                    if self.ledger.device_of.get(backup) == lock
                }

    async def _act(self, endpoint: str, **params: Any) -> Json:
        reply = await self._call(endpoint, **params)
        assert reply["ok"] or reply["error"]["type"] != "internal_error", reply
        await self._settle()
        return reply

    # -- what locks, crashes and time do ------------------------------------------------------

    @rule(lock=st.sampled_from(LOCKS), latency=st.sampled_from([0.001, 0.05, 0.5]))
    def latency(self, lock: str, latency: float) -> None:
        """0.5 s is past the command timeout: answers come late, writes land late."""
        self._run(self._lock(lock, {"latency": latency}))

    @rule(lock=st.sampled_from(LOCKS), fault=st.sampled_from(FAULTS), n=st.integers(1, 3))
    def fault(self, lock: str, fault: str, n: int) -> None:
        self._run(self._lock(lock, {fault: n}))

    @rule(lock=st.sampled_from(LOCKS), slot=st.integers(1, 8))
    def keypad(self, lock: str, slot: int) -> None:
        """Somebody types a new PIN into a slot at the lock (maybe over a managed code)."""
        pin = str(500_000 + self.next_pin)
        self.next_pin += 1
        self.typed_in[lock].add(pin)
        self._run(self._lock(lock, {"keypad": {"slot": slot, "code": pin}}))

    async def _lock(self, lock: str, changes: dict[str, Any]) -> None:
        await self.sim.lock(lock).control(changes)
        await self._settle()

    @rule(seconds=st.sampled_from([1, 30, 600, 7200]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)
        assert self.gateway is not None
        assert self.gateway.reconciler is not None
        self.gateway.reconciler.wake_all()
        self._run(self._settle())

    @precondition(lambda self: self.gateway is not None)
    @rule()
    def restart(self) -> None:
        async def again() -> None:
            await self.gateway_stack.aclose()
            self.gateway_stack = AsyncExitStack()
            await self._start_gateway()

        self._run(again())

    @invariant()
    def safe(self) -> None:
        self._run(self._check())


@pytest.mark.timeout(300)
def test_no_pin_outlives_its_code_whatever_happens() -> None:
    run_state_machine_as_test(
        PinLifecycle,
        settings=settings(
            max_examples=int(SOAK or "6"),
            derandomize=SOAK is None,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            # Every step is real I/O: shrinking would take minutes; the steps are printed anyway.
            phases=(Phase.explicit, Phase.reuse, Phase.generate),
        ),
    )
