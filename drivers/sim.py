"""Simulated locks: many on one MQTT connection, with faults switchable at run time.

The runner (:class:`Simulator`) reads the same YAML the gateway reads and builds one simulated
lock per device, choosing the lock class by the device's driver. A driver package adds its own
simulated lock by subclassing :class:`SimulatedLock` (which holds everything that is not protocol:
the slot table, the faults, the control topic, one-command-at-a-time processing) and naming
the class in its ``DriverSpec`` (``simulator="module:Class"``).

Faults are switched by ``SimulatedLock.control`` in-process, or by people and scripts through
``{control_topic}/<device_id>/set`` (see :data:`CONTROL_KEYS`); the lock republishes a PIN-free
summary on ``{control_topic}/<device_id>/state`` after every change so one can see what is on.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import importlib
import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, ClassVar, Final, Literal

import aiomqtt

from drivers.base import EntryEvent, EntryKind, EntryMethod
from drivers.registry import SPECS
from drivers.sim_settings import (
    SimLockSettings,
    SimulatorSettings,
    generated_devices,
    simulator_settings,
)
from gateway.config import Config, DeviceConfig
from gateway.logs import get_logger
from gateway.mqtt import MqttSession, Retained
from gateway.schema import as_flag, as_integer, as_nonempty_text, as_seconds, checked
from gateway.session import NotConnected, Session

__all__ = [
    "CONTROL_KEYS",
    "ControlTopics",
    "Faults",
    "SimCommand",
    "SimSpec",
    "SimulatedLock",
    "Simulator",
    "register_simulated_lock",
    "run_simulator",
    "simulated_lock_class",
]

log = get_logger("drivers.sim")

#: Locks announcing at once after a connect.
ANNOUNCE_CONCURRENCY: Final = 100
#: Bounds the shutdown announcement so a dead broker cannot hold the process open.
SHUTDOWN_TIMEOUT: Final = 5.0

CONTROL_KEYS: Final = (
    "online",
    "fail_next",
    "error",
    "silent_next",
    "silent",
    "apply_silently_next",
    "latency",
    "keypad",
    "reject_duplicates",
    "ignore_writes_next",
    "duplicate_results",
    "entry_events",
    "enter",
    "operate",
    "report",
    "reset",
)
_COUNTERS: Final = ("fail_next", "silent_next", "apply_silently_next", "ignore_writes_next")
_FLAGS: Final = ("silent", "reject_duplicates", "duplicate_results", "entry_events")


@dataclass(frozen=True, slots=True)
class SimSpec:
    """One device's simulator settings with every default resolved."""

    device: DeviceConfig
    capacity: int
    code_lengths: tuple[int, int]
    latency: float
    initial_codes: Mapping[int, str]
    reject_duplicates: bool
    expose_pin: bool
    control_topic: str
    #: The lock's own settings, for what only its protocol's simulator knows.
    settings: SimLockSettings = field(default_factory=SimLockSettings)

    @classmethod
    def resolve(cls, device: DeviceConfig, settings: SimulatorSettings) -> SimSpec:
        lock = settings.locks.get(device.device_id)
        latency = lock.latency if lock is not None and lock.latency is not None else None
        return cls(
            device=device,
            capacity=device.slots if device.slots is not None else settings.default_slots,
            code_lengths=device.code_lengths or settings.default_code_lengths,
            latency=settings.latency if latency is None else latency,
            initial_codes=dict(lock.initial_codes) if lock is not None else {},
            reject_duplicates=lock.reject_duplicates if lock is not None else True,
            expose_pin=lock.expose_pin if lock is not None else True,
            control_topic=settings.control_topic,
            settings=lock if lock is not None else SimLockSettings(),
        )


@dataclass(frozen=True, slots=True)
class ControlTopics:
    """The simulator's own topics for one lock, beside the lock's protocol topics."""

    base: str  # {control_topic}/<device_id>

    @property
    def set(self) -> str:
        return f"{self.base}/set"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def keypad(self) -> str:
        return f"{self.base}/keypad"


@dataclass(slots=True)
class Faults:
    """What is switched on. Counters count down as commands consume them."""

    latency: float
    reject_duplicates: bool
    silent: bool = False
    silent_next: int = 0
    fail_next: int = 0
    error: str = "busy"
    apply_silently_next: int = 0
    ignore_writes_next: int = 0
    duplicate_results: bool = False
    entry_events: bool = True  # False: the lock reports no door operations (old firmware)

    @classmethod
    def defaults(cls, spec: SimSpec) -> Faults:
        return cls(latency=spec.latency, reject_duplicates=spec.reject_duplicates)

    def consume(self, counter: str) -> bool:
        """Take one from ``counter`` if it is above zero."""
        left: int = getattr(self, counter)
        if left <= 0:
            return False
        setattr(self, counter, left - 1)
        return True


@dataclass(frozen=True, slots=True)
class SimCommand:
    """A command as the lock understood it, whatever protocol carried it.

    ``token`` is what the protocol needs to answer (the native command id); ``refused`` is set
    when the protocol layer already knows the answer is an error (a malformed command).
    """

    op: Literal["set", "clear", "read"]
    slot: int | None = None
    code: str | None = None
    token: str | None = None
    refused: str | None = None


def _raise_if_cancelled() -> None:
    """Honour a cancellation that was swallowed on the way.

    Python 3.11's ``asyncio.wait_for``, which aiomqtt uses to await every ack, returns the result
    instead of raising when the cancellation races with the ack. The task still counts the
    request, so a loop that checks here ends instead of waiting forever on its next ``get``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# -- control-message value checks (gateway.schema): each returns None for a bad value ---------


_NON_NEGATIVE: Final = as_integer(0)


def _count(value: object) -> int | None:
    return checked(_NON_NEGATIVE, value)


def _flag(value: object) -> bool | None:
    return checked(as_flag, value)


def _seconds(value: object) -> float | None:
    return checked(as_seconds, value)


def _text(value: object) -> str | None:
    return checked(as_nonempty_text, value)


def _report(value: object) -> Mapping[str, object] | None:
    return value if isinstance(value, dict) and "payload" in value else None


#: What ``operate`` may do: whatever is not a PIN at the keypad (that is ``enter``).
_OPERATIONS: Final = {kind.value: kind for kind in EntryKind}
_HANDS: Final = {m.value: m for m in EntryMethod if m is not EntryMethod.KEYCODE}


def _operation(value: object) -> EntryEvent | None:
    """``{"type": "unlocked"|"locked"|"access_denied", "method": "manual"|"remote"|
    "automatic"|"unknown"}`` (method defaults to unknown) as the event the lock reports."""
    if not isinstance(value, dict) or value.keys() - {"type", "method"}:
        return None
    kind, method = value.get("type"), value.get("method", EntryMethod.UNKNOWN.value)
    if not isinstance(kind, str) or kind not in _OPERATIONS:
        return None
    if not isinstance(method, str) or method not in _HANDS:
        return None
    return EntryEvent(_OPERATIONS[kind], _HANDS[method])


#: Each key's check, in the order keys apply: ``reset`` first so the rest lands on top of it.
_CHECKS: Final[tuple[tuple[str, Callable[[object], object | None]], ...]] = (
    ("reset", _flag),
    ("online", _flag),
    ("error", _text),
    ("latency", _seconds),
    *((name, _count) for name in _COUNTERS),
    *((name, _flag) for name in _FLAGS),
    ("enter", _text),  # checked with the rest, acted on in SimulatedLock.control
    ("operate", _operation),  # likewise
    ("report", _report),  # likewise
)


class SimulatedLock(abc.ABC):
    """Lock behaviour common to every protocol; subclasses only speak their protocol.

    Commands are processed one at a time by :meth:`run` after the configured latency, as a radio
    lock would; control changes apply at once. While offline the lock neither hears nor answers.
    """

    driver: ClassVar[str]

    def __init__(self, spec: SimSpec, session: Session) -> None:
        self.spec = spec
        self.device_id = spec.device.device_id
        self.capacity = spec.capacity
        self.code_lengths = spec.code_lengths
        self.slots: dict[int, str] = {}
        for slot, code in spec.initial_codes.items():
            if self.check_slot(slot) is None and self.check_code(code) is None:
                self.slots[slot] = code
            else:
                log.warning("sim.initial_code_ignored", device_id=self.device_id, slot=slot)
        self.online = True
        self.faults = Faults.defaults(spec)
        self.control_topics = ControlTopics(f"{spec.control_topic}/{self.device_id}")
        self._session = session
        self._queue: asyncio.Queue[SimCommand] = asyncio.Queue()

    # -- protocol hooks ---------------------------------------------------------------------

    @abc.abstractmethod
    async def subscribe(self) -> None:
        """Subscribe to the topics the gateway sends commands on (exact topics only)."""

    @abc.abstractmethod
    async def publish_availability(self) -> None:
        """Publish ``self.online`` the way the protocol reports availability."""

    @abc.abstractmethod
    async def publish_table(self) -> None:
        """Publish the slot table the way the protocol reports it."""

    @abc.abstractmethod
    async def answer(self, command: SimCommand, error: str | None) -> None:
        """Answer ``command``: ok when ``error`` is None."""

    # -- the lock ---------------------------------------------------------------------------

    def check_slot(self, slot: int | None) -> str | None:
        if slot is None or not 1 <= slot <= self.capacity:
            return "slot_out_of_range"
        return None

    def check_code(self, code: str | None) -> str | None:
        shortest, longest = self.code_lengths
        if code is None or not (code.isascii() and code.isdigit()):
            return "invalid_code"
        if not shortest <= len(code) <= longest:
            return "invalid_code"
        return None

    def check_set(self, slot: int | None, code: str | None) -> str | None:
        """The lock's own refusal of a ``set``, as an error word, or None."""
        problem = self.check_slot(slot) or self.check_code(code)
        duplicates = self.faults.reject_duplicates and problem is None
        if duplicates and any(s != slot and c == code for s, c in self.slots.items()):
            return "duplicate_code"
        return problem

    def write(self, slot: int, code: str | None) -> None:
        if code is None:
            self.slots.pop(slot, None)
        else:
            self.slots[slot] = code

    def try_code(self, pin: str) -> int | None:
        """The slot a PIN typed at the keypad opens, or None."""
        return min((s for s, c in self.slots.items() if c == pin), default=None)

    def state_summary(self) -> dict[str, Any]:
        """What a person needs to see what is switched on; never PINs."""
        return {
            "online": self.online,
            "occupied_slots": len(self.slots),
            "faults": asdict(self.faults),
        }

    def submit(self, command: SimCommand) -> None:
        """Queue a command heard from the gateway; an offline or silent lock drops it."""
        if self.online and not self.faults.silent:
            self._queue.put_nowait(command)

    # -- running ----------------------------------------------------------------------------

    async def announce(self) -> None:
        """Publish availability, table and state summary: on start and after every reconnect."""
        await self.publish_availability()
        if self.online:
            await self.publish_table()
        await self._publish_state()

    async def run(self) -> None:
        """Process commands one at a time until cancelled."""
        while True:
            _raise_if_cancelled()
            command = await self._queue.get()
            if self.faults.latency > 0:
                await asyncio.sleep(self.faults.latency)
            try:
                await self._execute(command)
            except NotConnected:
                log.info("sim.answer_lost", device_id=self.device_id, op=command.op)

    async def _execute(self, command: SimCommand) -> None:
        faults = self.faults
        if not self.online or faults.silent:
            return
        if faults.consume("silent_next"):
            await self._publish_state()
            return
        if faults.consume("fail_next"):
            await self._answer(command, faults.error)
            await self._publish_state()
            return
        if command.refused is not None:
            await self._answer(command, command.refused)
            return
        if command.op == "read":
            await self.publish_table()
            await self._answer(command, None)
            return
        code = command.code if command.op == "set" else None
        slot = command.slot
        problem = self.check_set(slot, code) if command.op == "set" else self.check_slot(slot)
        if problem is not None or slot is None:
            await self._answer(command, problem or "slot_out_of_range")
            return
        if command.op == "set" and faults.consume("ignore_writes_next"):
            await self._answer(command, None)
            await self._publish_state()
            return
        self.write(slot, code)
        log.debug("sim.written", device_id=self.device_id, slot=slot, code=code)
        await self.publish_table()
        if faults.consume("apply_silently_next"):
            await self._publish_state()
            return
        await self._answer(command, None)

    async def _answer(self, command: SimCommand, error: str | None) -> None:
        """Answer once, or twice with ``duplicate_results``: radios retransmit, and a gateway
        must take the second copy of an answer for what it is."""
        await self.answer(command, error)
        if self.faults.duplicate_results:
            await self.answer(command, error)

    # -- control ----------------------------------------------------------------------------

    async def control(self, changes: Mapping[str, object]) -> None:
        """Switch faults (keys of :data:`CONTROL_KEYS`) and publish what that changes.

        Everything is applied before the first await, so control messages handled by concurrent
        tasks still take effect in the order they arrived.
        """
        was_online = self.online
        table_changed = self._apply(changes)
        entered = _text(changes.get("enter"))
        operated = _operation(changes.get("operate"))
        report = _report(changes.get("report"))
        if self.online != was_online:
            await self.publish_availability()
        if self.online and (table_changed or not was_online):
            await self.publish_table()
        if entered is not None:
            slot = self.try_code(entered)
            log.info("sim.keypad_entry", device_id=self.device_id, accepted=slot is not None)
            await self._session.publish(
                self.control_topics.keypad, {"code_accepted": slot is not None, "slot": slot}
            )
            kind = EntryKind.ACCESS_DENIED if slot is None else EntryKind.UNLOCKED
            await self._tell_entry(EntryEvent(kind, EntryMethod.KEYCODE, slot))
        if operated is not None:
            log.info("sim.operated", device_id=self.device_id, kind=operated.kind.value)
            await self._tell_entry(operated)
        if report is not None:
            await self._publish_report(report)
        await self._publish_state()

    async def _tell_entry(self, event: EntryEvent) -> None:
        """What the lock's stack hears of a door operation: nothing while the lock is offline
        (its radio is what is out) or with the ``entry_events`` fault off (old firmware)."""
        if self.online and self.faults.entry_events:
            await self.publish_entry(event)

    async def publish_entry(self, event: EntryEvent) -> None:  # noqa: B027 (a default)
        """Tell the lock's stack the door operated, as this protocol does; a protocol that
        reports no door operations says nothing."""

    def report_topic(self, report: Mapping[str, object]) -> tuple[str, bool] | None:
        """Where this protocol reports what the lock holds, and whether retained, for the
        ``report`` switch (``report`` may say which slot's topic); None: it cannot lie there."""
        return None

    async def _publish_report(self, report: Mapping[str, object]) -> None:
        """Make the lock lie: ``report["payload"]`` on its report topic, however wrong (a string
        as it is, anything else as JSON). The lock's real table is left as it was."""
        where = self.report_topic(report)
        if where is None:
            log.warning("sim.control_bad_value", device_id=self.device_id, key="report")
            return
        topic, retain = where
        payload = report["payload"]
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        log.info("sim.report", device_id=self.device_id, topic=topic, size=len(data))
        await self._session.publish(topic, data, retain=retain)

    def _apply(self, changes: Mapping[str, object]) -> bool:
        """Apply the state part of a control message; True when the slot table changed."""
        for key in changes.keys() - set(CONTROL_KEYS):
            log.warning("sim.control_unknown_key", device_id=self.device_id, key=key)
        for key, check in _CHECKS:
            if key not in changes:
                continue
            value = check(changes[key])
            if value is None:
                log.warning("sim.control_bad_value", device_id=self.device_id, key=key)
            elif key == "reset":
                if value:
                    self.faults = Faults.defaults(self.spec)
                    self.online = True
            elif key == "online":
                self.online = bool(value)
            elif key not in ("enter", "operate", "report"):
                setattr(self.faults, key, value)
        if "fail_next" in changes and "error" not in changes:
            self.faults.error = "busy"
        return "keypad" in changes and self._keypad(changes["keypad"])

    def _keypad(self, value: object) -> bool:
        """A code typed in at the keypad: the lock's own rules, but duplicates are let through
        because locks in the field allow it and the gateway must notice them."""
        if not isinstance(value, dict) or "slot" not in value or "code" not in value:
            log.warning("sim.control_bad_value", device_id=self.device_id, key="keypad")
            return False
        slot, code = value["slot"], value["code"]
        if not isinstance(slot, int) or isinstance(slot, bool) or self.check_slot(slot):
            log.warning("sim.control_bad_value", device_id=self.device_id, key="keypad.slot")
            return False
        if code is not None and (not isinstance(code, str) or self.check_code(code)):
            log.warning("sim.control_bad_value", device_id=self.device_id, key="keypad.code")
            return False
        self.write(slot, code)
        return True

    async def _publish_state(self) -> None:
        await self._session.publish(self.control_topics.state, self.state_summary(), retain=True)


# -- registry -------------------------------------------------------------------------------

_registry: dict[str, type[SimulatedLock]] = {}


def register_simulated_lock(cls: type[SimulatedLock]) -> type[SimulatedLock]:
    """Make ``cls`` the simulated lock for devices of driver ``cls.driver`` (over the one its
    driver's spec names); a decorator."""
    _registry[cls.driver] = cls
    return cls


@functools.cache
def _load_spec_simulators() -> None:
    """Each driver spec's simulated lock (``module:Class``), once, under its driver's name.

    Imported on use, not at the top: those modules subclass SimulatedLock from this one.
    """
    for spec in SPECS:
        if spec.simulator is None:
            continue
        module, _, name = spec.simulator.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, SimulatedLock)):
            raise TypeError(f"{spec.simulator}: not a SimulatedLock")
        _registry.setdefault(spec.name, cls)


def simulated_lock_class(driver: str) -> type[SimulatedLock] | None:
    _load_spec_simulators()
    return _registry.get(driver)


# -- the runner -----------------------------------------------------------------------------


class Simulator:
    """Every simulated lock of a config on one shared session.

    Subscriptions are exact topics, so the session routes each message with one dict lookup:
    a thousand locks cost nothing per message beyond the one lock it is for.
    """

    def __init__(self, config: Config, session: Session) -> None:
        self._session = session
        self._locks: dict[str, SimulatedLock] = {}
        settings = simulator_settings(config)
        generated = generated_devices(settings.generate) if settings.generate else ()
        for device in config.devices + generated:
            cls = simulated_lock_class(device.driver)
            if cls is None:
                log.info("sim.device_skipped", device_id=device.device_id, driver=device.driver)
                continue
            self._locks[device.device_id] = cls(SimSpec.resolve(device, settings), session)
        self._tg: asyncio.TaskGroup | None = None
        #: Set once every lock has announced itself after the first connect.
        self.ready = asyncio.Event()
        session.on_connect(self._on_connect)

    @property
    def locks(self) -> Mapping[str, SimulatedLock]:
        return self._locks

    def lock(self, device_id: str) -> SimulatedLock:
        return self._locks[device_id]

    async def run(self) -> None:
        """Subscribe, run every lock, announce on each connect; until cancelled.

        Start this before the session connects when possible: subscriptions registered before
        the connect go out in a few batches instead of one round trip each.
        """
        for lock in self._locks.values():
            await lock.subscribe()
            await self._session.subscribe(lock.control_topics.set, partial(self._on_control, lock))
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for device_id, lock in self._locks.items():
                    tg.create_task(lock.run(), name=f"sim-lock:{device_id}")
                if self._session.is_connected:
                    self._on_connect()
                await asyncio.Future()  # the locks run until we are cancelled
        finally:
            self._tg = None
            if self._session.is_connected:
                await self._announce_shutdown()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._tg is None:
            coro.close()
            return
        self._tg.create_task(_quietly(coro), name=name)

    def _on_connect(self) -> None:
        self._spawn(self._announce_all(), "sim-announce")

    async def _announce_all(self) -> None:
        # Bounded: aiomqtt's per-publish bookkeeping grows with the publishes in flight.
        gate = asyncio.Semaphore(ANNOUNCE_CONCURRENCY)

        async def announce(lock: SimulatedLock) -> None:
            async with gate:
                await _quietly(lock.announce())

        await asyncio.gather(*(announce(lock) for lock in self._locks.values()))
        log.info("sim.announced", locks=len(self._locks))
        self.ready.set()

    async def _announce_shutdown(self) -> None:
        """A shared connection has one will, not one per lock: say offline for each of them."""
        for lock in self._locks.values():
            lock.online = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                await asyncio.gather(
                    *(_quietly(lock.publish_availability()) for lock in self._locks.values())
                )

    def _on_control(self, lock: SimulatedLock, message: aiomqtt.Message) -> None:
        try:
            changes = json.loads(message.payload) if isinstance(message.payload, bytes) else None
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            log.warning("sim.control_malformed", device_id=lock.device_id)
            return
        self._spawn(lock.control(changes), f"sim-control:{lock.device_id}")


async def _quietly(coro: Coroutine[Any, Any, None]) -> None:
    """A lost broker connection ends one publication, never the simulator: the next connect
    announces everything again."""
    try:
        await coro
    except NotConnected as exc:
        log.info("sim.publish_lost", reason=str(exc))


async def run_simulator(config: Config, *, ready: asyncio.Event | None = None) -> None:
    """What ``lockgate sim -c FILE`` runs: every lock of the config, until cancelled."""
    control = simulator_settings(config).control_topic
    session = MqttSession(
        config.mqtt,
        identifier=f"lockgate-sim-{config.hub_id}",
        birth=Retained(f"{control}/status", b'{"state":"online"}'),
        will=Retained(f"{control}/status", b'{"state":"offline"}'),
    )
    simulator = Simulator(config, session)
    async with asyncio.TaskGroup() as tg:
        mqtt = tg.create_task(session.run(), name="sim-mqtt")
        if ready is not None:
            tg.create_task(_relay(simulator.ready, ready), name="sim-ready")
        try:
            # Runs in this task, not a child, so the locks say offline before the session ends.
            await simulator.run()
        finally:
            mqtt.cancel()


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
