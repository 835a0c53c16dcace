"""The one small interface between the reconciler and every device protocol.

A driver owns the MQTT conversation with one lock. It keeps what it last *observed* (availability
and the slot table) and calls ``wake`` whenever that changes, so the reconciler can stay
level-triggered: it never trusts a command's reply alone, only what the lock reports back.

Slots are numbered from 1 up to the capacity everywhere in the gateway; a driver whose protocol
counts differently (Zigbee2MQTT users are 0-based) translates at its edge.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import Field, dataclass
from typing import Any, ClassVar, Protocol

# The slot-table types are the domain's, shared with the planner and the store.
from gateway.domain import EntryEvent, EntryKind, EntryMethod, SlotTable, SlotValue, Unreadable
from gateway.session import Session


class CommandFailed(Exception):
    """The lock answered and refused, or the command could not be sent.

    ``reason`` is a short machine word (``busy``, ``duplicate_code``, ``invalid_code``,
    ``slot_out_of_range``, ``internal``, ``offline``, ``not_connected``) that the gateway turns into
    errors and that may be logged; it never contains a PIN.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CommandTimedOut(CommandFailed):
    """Nothing came back within the command timeout: the outcome is unknown, so read back."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("timeout", detail)


WakeCallback = Callable[[], None]


def no_wake() -> None:
    """The wake callback a driver holds until ``start`` gives it the real one."""


class Driver(Protocol):
    """What the reconciler needs from a lock, whatever protocol it speaks."""

    device_id: str

    @property
    def online(self) -> bool:
        """Whether the lock (and the path to it) is reachable, as last reported."""

    @property
    def table(self) -> SlotTable | None:
        """The last observed slot table; None until the lock has reported once."""

    @property
    def refused_report(self) -> str | None:
        """Why a report of the lock was refused (out of bounds or malformed: ``table`` stays as
        it was), while that stands; None once the lock reports validly again. ``wake`` is called
        when it changes. Never contains a PIN: it becomes the device's error message."""

    @property
    def not_found(self) -> str | None:
        """What to check while none of the lock's own topics has appeared since start on a
        connected broker (its address in the configuration is not where its stack publishes
        it, or the stack is not there); None once one has, or when the driver cannot tell.
        ``wake`` is called when it changes. Never a PIN. The worker raises
        ``device_not_found_on_stack`` with it once it has stood for a grace period."""

    async def start(self, wake: WakeCallback) -> None:
        """Subscribe to the lock's topics; ``wake`` is called on every observed change."""

    async def set_code(self, slot: int, code: str) -> None:
        """Write ``code`` into ``slot``. Raises CommandFailed / CommandTimedOut."""

    async def clear_slot(self, slot: int) -> None:
        """Empty ``slot``. Raises CommandFailed / CommandTimedOut."""

    async def read(self, slots: Collection[int] | None = None) -> SlotTable:
        """Read the table back from the lock (not from a cache): every slot, or just ``slots``
        where the protocol reads slot by slot (Zigbee and Z-Wave locks: battery and airtime)."""

    def take_read_requests(self) -> frozenset[int]:
        """Slots the lock said changed without showing what they hold now (a Zigbee lock's
        programming event), since the last call: the worker reads them back, so that every
        command goes through it. Empty for a lock whose reports show its slots."""

    @property
    def has_entry_events(self) -> bool:
        """Whether this lock's stack reports the door's operations and which slot's PIN opened
        it (the device property ``has_native_entry_events``)."""

    def take_entry_events(self) -> list[EntryEvent]:
        """Door operations heard since the last call, oldest first; ``wake`` is called when
        one arrives."""


class CommandTiming(Protocol):
    """The timing a driver needs (``gateway.config.Timing`` has it, among the worker's)."""

    @property
    def command_timeout(self) -> float:
        """Seconds a command may go unanswered before it counts as timed out."""


class DeviceSettings(Protocol):
    """What a driver reads of one device's configuration (``gateway.config.DeviceConfig``)."""

    @property
    def device_id(self) -> str: ...

    @property
    def driver(self) -> str: ...

    @property
    def options(self) -> object:
        """The options its driver's spec parsed (each driver checks it got its own type)."""

    @property
    def slots(self) -> int | None:
        """The configured capacity; None: the lock reports it."""

    @property
    def code_lengths(self) -> tuple[int, int] | None:
        """The configured code lengths; None: the lock reports them."""


DriverFactory = Callable[[DeviceSettings, Session, CommandTiming], Driver]
"""Builds the driver of one device: ``create_driver(device, session, timing) -> Driver``."""


class DriverOptions(Protocol):
    """A driver's typed options (the device keys beyond the common ones), as its spec parsed:
    a frozen dataclass whose fields are those keys."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(option key, address) pairs that no two devices may share."""

    def own_topics(self) -> tuple[tuple[str, str], ...]:
        """(option key, topic) pairs of topics the lock itself speaks under, which must not lie
        under the gateway's own topics (they would be taken for API traffic)."""


OptionsParser = Callable[[Mapping[str, object], str, str, list[str]], DriverOptions]
"""``parse_options(raw, path, device_id, problems)``: the options, each problem appended to
``problems`` as a ``path.key: what is wrong`` line (a bad value yields its default)."""


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """Everything the rest of lockgate asks about one driver; each driver package exports its
    own as ``SPEC``, and ``drivers.registry.SPECS`` lists them: the configuration, the registry
    and the simulator ask that list, so a new driver is one package plus one line there."""

    name: str  # as in the YAML's ``driver:``
    parse_options: OptionsParser
    needs_slots: bool  # the lock cannot report its capacity, so the file must give it
    create_driver: DriverFactory
    #: ``module:Class`` of its simulated lock (a ``drivers.sim.SimulatedLock``), imported by the
    #: simulator only, so the daemon never loads it; None: the package brings none.
    simulator: str | None = None


__all__ = [
    "CommandFailed",
    "CommandTimedOut",
    "CommandTiming",
    "DeviceSettings",
    "Driver",
    "DriverFactory",
    "DriverOptions",
    "DriverSpec",
    "EntryEvent",
    "EntryKind",
    "EntryMethod",
    "OptionsParser",
    "Session",
    "SlotTable",
    "SlotValue",
    "Unreadable",
    "WakeCallback",
    "no_wake",
]
