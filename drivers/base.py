"""The one small interface between the reconciler and every device protocol.

A driver owns the MQTT conversation with one lock. It keeps what it last *observed* (availability
and the slot table) and calls ``wake`` whenever that changes, so the reconciler can stay
level-triggered: it never trusts a command's reply alone, only what the lock reports back.

Slots are numbered from 1 up to the capacity everywhere in the gateway; a driver whose protocol
counts differently (Zigbee2MQTT users are 0-based) translates at its edge.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from drivers.bounds import MAX_SLOTS


class Unreadable(enum.Enum):
    """A slot whose PIN cannot be known: never read, or read back masked."""

    UNKNOWN = "unknown"  # never read: NOT the same as empty
    OCCUPIED = "occupied"  # holds a code the lock will not reveal (masked read)


SlotValue = str | None | Unreadable  # a PIN, None for empty, or Unreadable


@dataclass(frozen=True, slots=True)
class SlotTable:
    """What a lock holds, as last reported by it."""

    capacity: int
    code_lengths: tuple[int, int] | None = None
    slots: Mapping[int, SlotValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Defence in depth: the planner, the store and the API allocate per slot, so no table
        # past the drivers' bounds may exist at all (drivers refuse such reports first).
        if not 0 <= self.capacity <= MAX_SLOTS:
            raise ValueError(f"capacity {self.capacity} is outside 0-{MAX_SLOTS}")

    def value(self, slot: int) -> SlotValue:
        return self.slots.get(slot, Unreadable.UNKNOWN)


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


DriverFactory = Callable[..., Driver]
"""Each driver package exposes ``create_driver(device: DeviceConfig, session: MqttSession,
timing: Timing) -> Driver``."""


__all__ = [
    "CommandFailed",
    "CommandTimedOut",
    "Driver",
    "DriverFactory",
    "SlotTable",
    "SlotValue",
    "Unreadable",
    "WakeCallback",
    "no_wake",
]
