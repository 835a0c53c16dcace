"""The types every layer shares: the slot table, the code and problem vocabularies, the bounds.

The innermost layer (issue 9): it imports nothing of ``gateway`` or ``drivers``, so the rules,
the store, the API and every driver can depend on it without depending on each other. The
layers are checked by ``lint-imports`` (``[tool.importlinter]`` in pyproject.toml).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "DEFAULT_CODE_LENGTHS",
    "ENTRY_EVENT_TYPES",
    "MAX_PIN_LENGTH",
    "MAX_SLOTS",
    "PROBLEMS",
    "BackupState",
    "CodeStatus",
    "CodeType",
    "EntryEvent",
    "EntryKind",
    "EntryMethod",
    "EventType",
    "ProblemCode",
    "ProblemKind",
    "ProblemSpec",
    "SlotTable",
    "SlotValue",
    "Unreadable",
    "compact_json",
    "compact_slots",
]


#: ``json.dumps`` with options builds an encoder per call; this one serves every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json(value: object) -> str:
    """JSON as lockgate writes it, on the wire and in the events table alike: the outbox
    publishes a stored event's body as it is, without parsing it again."""
    return _ENCODER.encode(value)


#: The most slots any device may have (the configuration's ceiling for ``slots`` too): the bound
#: on a reported capacity when the device's ``slots`` is not configured.
MAX_SLOTS: Final = 1000
#: The longest PIN anywhere (configuration, API, reports).
MAX_PIN_LENGTH: Final = 16
#: The code lengths assumed for a lock that has not reported its own (nor has them configured).
DEFAULT_CODE_LENGTHS: tuple[int, int] = (4, 8)


# --------------------------------------------------------------------------------------------
# What a lock holds. Slots are numbered from 1 up to the capacity everywhere in the gateway; a
# driver whose protocol counts differently (Zigbee2MQTT users are 0-based) translates at its edge.


class Unreadable(enum.Enum):
    """A slot whose PIN cannot be known: never read, or read back masked."""

    UNKNOWN = "unknown"  # never read: NOT the same as empty
    OCCUPIED = "occupied"  # holds a code the lock will not reveal (masked read)


SlotValue = str | None | Unreadable  # a PIN, None for empty, or Unreadable


class _DenseSlots(Mapping[int, SlotValue]):
    """Slots 1..n in that order, as a tuple of values: a report of every slot of a lock (the
    usual one) in a fifth of a dict's memory. Read-only; equal to any mapping with the same
    items, as a dict is."""

    __slots__ = ("_values",)

    def __init__(self, values: tuple[SlotValue, ...]) -> None:
        self._values = values

    def __getitem__(self, slot: int) -> SlotValue:
        if type(slot) is int:
            if 1 <= slot <= len(self._values):
                return self._values[slot - 1]
            raise KeyError(slot)
        return dict(self.items())[slot]  # any other key, as a dict takes it (True is 1)

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, len(self._values) + 1))

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _DenseSlots):
            return self._values == other._values
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment] # like a dict

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def compact_slots(slots: Mapping[int, SlotValue]) -> Mapping[int, SlotValue]:
    """``slots`` as a table keeps it: the same items in the same order, in a tuple when they are
    slots 1..n in order (a whole-table report), else in a dict of its own."""
    values = tuple(slots.values())
    if all(type(key) is int and key == number for number, key in enumerate(slots, 1)):
        return _DenseSlots(values)
    return dict(slots)


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


# --------------------------------------------------------------------------------------------
# Codes, problems and events (contract sections 6-8)


class CodeStatus(enum.StrEnum):
    UNSET = "unset"
    SETTING = "setting"
    SET = "set"
    REMOVING = "removing"


class CodeType(enum.StrEnum):
    ONGOING = "ongoing"
    TIME_BOUND = "time_bound"


class BackupState(enum.StrEnum):
    """Where a backup code stands: waiting in the pool, or handed out for a code."""

    POOLED = "pooled"
    PULLED = "pulled"


class ProblemKind(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class ProblemCode(enum.StrEnum):
    """Every error and warning code (contract section 7); the values are the wire codes."""

    FAILED_TO_SET_ON_DEVICE = "failed_to_set_on_device"
    FAILED_TO_REMOVE_FROM_DEVICE = "failed_to_remove_from_device"
    DUPLICATE_CODE_ON_DEVICE = "duplicate_code_on_device"
    NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE = "no_space_for_access_code_on_device"
    CONFLICTING_EXTERNAL_MODIFICATION = "conflicting_external_modification"
    EXTERNAL_MODIFICATION_IN_EFFECT = "external_modification_in_effect"
    DELAY_IN_SETTING_ON_DEVICE = "delay_in_setting_on_device"
    DELAY_IN_REMOVING_FROM_DEVICE = "delay_in_removing_from_device"
    USING_BACKUP_ACCESS_CODE = "using_backup_access_code"
    DEVICE_DISCONNECTED = "device_disconnected"
    INVALID_REPORT_FROM_DEVICE = "invalid_report_from_device"
    DEVICE_NOT_FOUND_ON_STACK = "device_not_found_on_stack"
    EMPTY_BACKUP_ACCESS_CODE_POOL = "empty_backup_access_code_pool"
    PARTIAL_BACKUP_ACCESS_CODE_POOL = "partial_backup_access_code_pool"
    MANY_ACTIVE_BACKUP_CODES = "many_active_backup_codes"
    MAX_ACCESS_CODES_REACHED = "max_access_codes_reached"  # contract section 11


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    kind: ProblemKind
    on: str  # "device" | "access_code"
    message: str


#: Every error and warning the gateway raises (contract section 7), with the sentence users see.
#: Keyed by ProblemCode, a str, so a code read back from the database looks up as well.
PROBLEMS: dict[str, ProblemSpec] = {
    ProblemCode.FAILED_TO_SET_ON_DEVICE: ProblemSpec(
        ProblemKind.ERROR, "access_code", "The code could not be programmed on the lock; retrying."
    ),
    ProblemCode.FAILED_TO_REMOVE_FROM_DEVICE: ProblemSpec(
        ProblemKind.ERROR, "access_code", "The code could not be removed from the lock; retrying."
    ),
    ProblemCode.DUPLICATE_CODE_ON_DEVICE: ProblemSpec(
        ProblemKind.ERROR, "access_code", "Another slot on the lock holds the same PIN."
    ),
    ProblemCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE: ProblemSpec(
        ProblemKind.ERROR, "access_code", "The lock has no free slot for this code."
    ),
    ProblemCode.CONFLICTING_EXTERNAL_MODIFICATION: ProblemSpec(
        ProblemKind.ERROR,
        "access_code",
        "The code's slot was changed outside the gateway; the gateway is restoring it.",
    ),
    ProblemCode.EXTERNAL_MODIFICATION_IN_EFFECT: ProblemSpec(
        ProblemKind.WARNING,
        "access_code",
        "The code's slot was changed outside the gateway; the change is kept as allowed.",
    ),
    ProblemCode.DELAY_IN_SETTING_ON_DEVICE: ProblemSpec(
        ProblemKind.WARNING, "access_code", "Programming the code on the lock is taking long."
    ),
    ProblemCode.DELAY_IN_REMOVING_FROM_DEVICE: ProblemSpec(
        ProblemKind.WARNING, "access_code", "Removing the code from the lock is taking long."
    ),
    ProblemCode.USING_BACKUP_ACCESS_CODE: ProblemSpec(
        ProblemKind.WARNING, "access_code", "A backup access code was pulled for this code."
    ),
    ProblemCode.DEVICE_DISCONNECTED: ProblemSpec(
        ProblemKind.ERROR, "device", "The lock is offline or cannot be reached."
    ),
    # Beyond contract section 7 (issue 7): the message names what was wrong.
    ProblemCode.INVALID_REPORT_FROM_DEVICE: ProblemSpec(
        ProblemKind.ERROR,
        "device",
        "The lock's last report was refused; its previous one stays in effect.",
    ),
    # Issue 8: the message names the settings to check.
    ProblemCode.DEVICE_NOT_FOUND_ON_STACK: ProblemSpec(
        ProblemKind.ERROR,
        "device",
        "The lock has not appeared where its configuration says its hub publishes it.",
    ),
    ProblemCode.EMPTY_BACKUP_ACCESS_CODE_POOL: ProblemSpec(
        ProblemKind.ERROR, "device", "No backup access code is available on this lock."
    ),
    ProblemCode.PARTIAL_BACKUP_ACCESS_CODE_POOL: ProblemSpec(
        ProblemKind.WARNING, "device", "Fewer backup access codes than configured are available."
    ),
    ProblemCode.MANY_ACTIVE_BACKUP_CODES: ProblemSpec(
        ProblemKind.WARNING, "device", "Many pulled backup access codes are active on this lock."
    ),
    ProblemCode.MAX_ACCESS_CODES_REACHED: ProblemSpec(
        ProblemKind.WARNING, "device", "Every slot of this lock is taken: no room for another code."
    ),
}


class EventType(enum.StrEnum):
    """Every event of contract section 8."""

    CODE_CREATED = "access_code.created"
    CODE_CHANGED = "access_code.changed"
    CODE_SET = "access_code.set_on_device"
    CODE_REMOVED = "access_code.removed_from_device"
    CODE_FAILED_TO_SET = "access_code.failed_to_set_on_device"
    CODE_DELAY_SETTING = "access_code.delay_in_setting_on_device"
    CODE_FAILED_TO_REMOVE = "access_code.failed_to_remove_from_device"
    CODE_DELAY_REMOVING = "access_code.delay_in_removing_from_device"
    CODE_DELETED = "access_code.deleted"
    CODE_MODIFIED_EXTERNALLY = "access_code.modified_external_to_gateway"
    BACKUP_PULLED = "access_code.backup_access_code_pulled"
    DEVICE_CONNECTED = "device.connected"
    DEVICE_DISCONNECTED = "device.disconnected"
    DEVICE_UNMANAGED = "device.converted_to_unmanaged"
    DEVICE_MANAGED = "device.converted_to_managed"
    DEVICE_ERROR_ADDED = "device.error_added"
    DEVICE_ERROR_CLEARED = "device.error_cleared"
    DEVICE_WARNING_ADDED = "device.warning_added"
    DEVICE_WARNING_CLEARED = "device.warning_cleared"
    # Contract section 11.
    LOCK_UNLOCKED = "lock.unlocked"
    LOCK_LOCKED = "lock.locked"
    LOCK_ACCESS_DENIED = "lock.access_denied"
    UNMANAGED_CREATED = "access_code.unmanaged.created"
    UNMANAGED_REMOVED = "access_code.unmanaged.removed"
    UNMANAGED_CONVERTED = "access_code.unmanaged.converted_to_managed"
    UNMANAGED_FAILED_TO_CONVERT = "access_code.unmanaged.failed_to_convert_to_managed"
    # Beyond the contract (issue 13): the wall clock jumped (``seconds``; ``device_id`` null).
    CLOCK_JUMPED = "gateway.clock_jumped"


class EntryKind(enum.StrEnum):
    """What happened at the door (contract section 11): the event is ``lock.<kind>``."""

    UNLOCKED = "unlocked"
    LOCKED = "locked"
    ACCESS_DENIED = "access_denied"


class EntryMethod(enum.StrEnum):
    """How it happened, as far as the lock's stack tells."""

    KEYCODE = "keycode"
    MANUAL = "manual"
    REMOTE = "remote"
    AUTOMATIC = "automatic"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class EntryEvent:
    """One lock operation a driver heard. ``slot`` (from 1) names the PIN typed at the keypad,
    for ``keycode`` only and only where the stack tells it; never the PIN itself."""

    kind: EntryKind
    method: EntryMethod = EntryMethod.UNKNOWN
    slot: int | None = None

    @property
    def event_type(self) -> EventType:
        return EventType(f"lock.{self.kind.value}")


#: Entry events name the code that did it, or say null: their ``access_code_id`` is always there.
ENTRY_EVENT_TYPES = frozenset(
    {EventType.LOCK_UNLOCKED, EventType.LOCK_LOCKED, EventType.LOCK_ACCESS_DENIED}
)
