"""Stand-ins for what the core talks to, for unit tests without a broker: a lock driver whose
slot table lives in memory, a broker session the test takes up and down, and the plumbing to
put a real SQLite store (never a mock) and a ``ManualClock`` around them."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.base import (
    CommandFailed,
    CommandTimedOut,
    EntryEvent,
    SlotTable,
    WakeCallback,
    no_wake,
)
from gateway.clock import Clock, ManualClock
from gateway.config import Config, MqttSettings, parse_config
from gateway.model import AccessCode
from gateway.mqtt import MqttSession, NotConnected, Payload
from gateway.store import Store
from gateway.store import codes as code_store
from gateway.store.devices import sync_from_config
from gateway.store.problems import problems_of

DEVICE = "door"


@dataclass(frozen=True, slots=True)
class Sent:
    """A command the fake driver was given: ``op`` is ``set``, ``clear`` or ``read``."""

    op: str
    slot: int | None = None
    pin: str | None = None


@dataclass(frozen=True, slots=True)
class _Fault:
    error: CommandFailed
    applied: bool  # carried out on the lock all the same (an answer lost on the way back)


class FakeDriver:
    """A :class:`drivers.base.Driver` whose lock is a dict: commands apply to it at once and
    the observed table follows, unless the test scripted a refusal or a silence first."""

    def __init__(
        self,
        device_id: str = DEVICE,
        *,
        capacity: int = 5,
        codes: Mapping[int, str] | None = None,
        online: bool = True,
    ) -> None:
        self.device_id = device_id
        self.capacity = capacity
        self.slots: dict[int, str] = dict(codes or {})  # what the lock really holds
        self.sent: list[Sent] = []
        self.read_scopes: list[frozenset[int] | None] = []  # what each read asked for
        self._announced: set[int] = set()  # changed at the lock, not shown: to read back
        self._online = online
        self._table: SlotTable | None = None
        self._faults: deque[_Fault] = deque()
        self._wake: WakeCallback = no_wake

    # -- what the reconciler sees ------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online

    @property
    def table(self) -> SlotTable | None:
        return self._table

    @property
    def refused_report(self) -> str | None:
        return None

    @property
    def not_found(self) -> str | None:
        return None

    async def start(self, wake: WakeCallback) -> None:
        self._wake = wake
        if self._online:
            self.report()

    async def set_code(self, slot: int, code: str) -> None:
        self._command(Sent("set", slot, code))
        self.slots[slot] = code
        self.report()

    async def clear_slot(self, slot: int) -> None:
        self._command(Sent("clear", slot))
        self.slots.pop(slot, None)
        self.report()

    async def read(self, slots: Collection[int] | None = None) -> SlotTable:
        self._command(Sent("read"))
        self.read_scopes.append(None if slots is None else frozenset(slots))
        return self.report()

    def take_read_requests(self) -> frozenset[int]:
        taken = frozenset(self._announced)
        self._announced.clear()
        return taken

    has_entry_events = False

    def take_entry_events(self) -> list[EntryEvent]:
        return []

    # -- what the test does to the lock ------------------------------------------------------

    def fail_next(self, error: CommandFailed, *, applied: bool = False) -> None:
        """The next command raises ``error`` (after changing the lock, if ``applied``)."""
        self._faults.append(_Fault(error, applied))

    def refuse_next(self, reason: str = "busy") -> None:
        self.fail_next(CommandFailed(reason))

    def silence_next(self, *, applied: bool = False) -> None:
        self.fail_next(CommandTimedOut("no answer"), applied=applied)

    def go(self, online: bool) -> None:
        """The lock goes away or comes back: the reconciler is woken."""
        self._online = online
        self._wake()

    def keypad(self, slot: int, pin: str | None) -> None:
        """Somebody changed a slot at the lock, which reports it."""
        if pin is None:
            self.slots.pop(slot, None)
        else:
            self.slots[slot] = pin
        self.report()

    def announce(self, slot: int, pin: str | None) -> None:
        """Somebody changed a slot at the lock, which only says that it changed (a Zigbee
        lock's programming event): the table shows it once the slot is read back."""
        if pin is None:
            self.slots.pop(slot, None)
        else:
            self.slots[slot] = pin
        self._announced.add(slot)
        self._wake()

    def report(self) -> SlotTable:
        """The lock republishes its whole table."""
        table = SlotTable(
            self.capacity,
            (4, 8),
            {n: self.slots.get(n) for n in range(1, self.capacity + 1)},
        )
        if table != self._table:
            self._table = table
            self._wake()
        return table

    def _command(self, sent: Sent) -> None:
        if not self._online:
            raise CommandFailed("offline")
        self.sent.append(sent)
        if self._faults:
            fault = self._faults.popleft()
            if fault.applied:
                self._apply(sent)
            raise fault.error

    def _apply(self, sent: Sent) -> None:
        if sent.op == "set" and sent.slot is not None and sent.pin is not None:
            self.slots[sent.slot] = sent.pin
        elif sent.op == "clear" and sent.slot is not None:
            self.slots.pop(sent.slot, None)


class FakeSession(MqttSession):
    """A broker session with no broker: up or down as the test says; what is published while
    up is kept in ``published``."""

    def __init__(self, *, connected: bool = True) -> None:
        super().__init__(MqttSettings(), identifier="fake")
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._lost: list[Callable[[], None]] = []
        self.published: list[tuple[str, Payload]] = []
        if connected:
            self._up.set()
        else:
            self._down.set()

    @property
    def is_connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._up.wait()

    async def wait_disconnected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._down.wait()

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._lost.append(callback)

    def connect(self) -> None:
        self._down.clear()
        self._up.set()

    def disconnect(self) -> None:
        self._up.clear()
        self._down.set()
        for callback in self._lost:
            callback()

    async def publish(self, topic: str, payload: Payload, **_: Any) -> None:
        if not self._up.is_set():
            raise NotConnected(topic)
        self.published.append((topic, payload))


def unit_config(tmp_path: Path, **overrides: Any) -> Config:
    """One lock, ``door``, behind no broker; ``timing`` and ``backup_pool`` may be overridden."""
    data: dict[str, Any] = {
        "hub_id": "unit",
        "database": str(tmp_path / "unit.db"),
        "devices": [{"device_id": DEVICE, "name": "Door", "driver": "native"}],
        **overrides,
    }
    return parse_config(data, base_dir=tmp_path)


@asynccontextmanager
async def store_at(path: Path, clock: Clock) -> AsyncIterator[Store]:
    """A real SQLite store in the file ``path``, closed after."""
    store = await Store.open(path, clock)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def opened_store(config: Config, clock: ManualClock) -> AsyncIterator[Store]:
    """The real SQLite store of ``config``, its devices in place."""
    async with store_at(config.database, clock) as store:
        await store.write(lambda tx: sync_from_config(tx, config.devices, config.backup_pool))
        yield store


# -- the store, as a test asks it ---------------------------------------------------------------


async def add_code(
    store: Store,
    pin: str,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    allow_external_modification: bool = False,
) -> str:
    """A code on ``door``, as ``access_codes/create`` stores it; its id."""
    code = await store.write(
        lambda tx: code_store.insert_code(
            tx,
            device_id=DEVICE,
            name=None,
            code=pin,
            starts_at=starts_at,
            ends_at=ends_at,
            allow_external_modification=allow_external_modification,
        )
    )
    return code.access_code_id


async def stored_code(store: Store, access_code_id: str) -> AccessCode | None:
    return await store.read(lambda tx: code_store.get_code(tx, access_code_id))


async def problem_codes(store: Store, owner_id: str) -> set[str]:
    """The errors and warnings standing on a device or a code."""
    found = await store.read(lambda tx: problems_of(tx, [owner_id]))
    return {p.code for p in found[owner_id]}


async def event_types(store: Store, access_code_id: str | None = None) -> list[str]:
    """The stored events (about one code, if given), in order."""
    rows = await store.fetchall(
        "SELECT event_type FROM events WHERE ? IS NULL OR access_code_id = ? ORDER BY seq",
        (access_code_id, access_code_id),
    )
    return [r["event_type"] for r in rows]
