"""The gateway's domain objects and their wire shapes (contract section 6). No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.clock import isoformat
from gateway.rules.codes import DEFAULT_CODE_LENGTHS

Json = dict[str, Any]


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
}


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    kind: ProblemKind
    message: str
    created_at: datetime

    def to_json(self) -> Json:
        key = "error_code" if self.kind is ProblemKind.ERROR else "warning_code"
        return {key: self.code, "message": self.message, "created_at": isoformat(self.created_at)}


def split_problems(problems: list[Problem]) -> tuple[list[Json], list[Json]]:
    """Errors and warnings in the order they were raised."""
    ordered = sorted(problems, key=lambda p: (p.created_at, p.code))
    errors = [p.to_json() for p in ordered if p.kind is ProblemKind.ERROR]
    warnings = [p.to_json() for p in ordered if p.kind is ProblemKind.WARNING]
    return errors, warnings


def code_problems(own: list[Problem], device: list[Problem]) -> tuple[list[Json], list[Json]]:
    """What a code shows: its own problems and its device's errors (a lock offline concerns
    every code on it), but not the device's warnings, which are about the lock and its pool."""
    return split_problems([*own, *(p for p in device if p.kind is ProblemKind.ERROR)])


def _ts(value: datetime | None) -> str | None:
    return None if value is None else isoformat(value)


@dataclass(slots=True)
class Device:
    device_id: str
    name: str
    driver: str
    is_managed: bool
    created_at: datetime
    online: bool = False
    pool_enabled: bool = False
    pool_size: int = 3
    capacity: int | None = None
    code_lengths: tuple[int, int] | None = None
    supports_pool: bool = False
    backup_codes_available: int = 0
    active_backup_codes: int = 0
    problems: list[Problem] = field(default_factory=list)
    pool_short_since: datetime | None = None  # internal: since when the pool is below size

    def to_json(self) -> Json:
        errors, warnings = split_problems(self.problems)
        lengths = self.code_lengths or DEFAULT_CODE_LENGTHS
        return {
            "device_id": self.device_id,
            "name": self.name,
            "driver": self.driver,
            "is_managed": self.is_managed,
            "created_at": isoformat(self.created_at),
            "errors": errors,
            "warnings": warnings,
            "properties": {
                "online": self.online,
                "supports_backup_access_code_pool": self.supports_pool,
                "backup_access_code_pool_enabled": self.pool_enabled,
                "backup_pool_size": self.pool_size,
                "backup_codes_available": self.backup_codes_available,
                "active_backup_codes": self.active_backup_codes,
                "max_active_codes_supported": self.capacity,
                "supported_code_lengths": _length_range(lengths),
                "code_constraints": [
                    {"constraint_type": "numeric_only"},
                    {
                        "constraint_type": "code_length",
                        "min_length": lengths[0],
                        "max_length": lengths[1],
                    },
                ],
            },
        }


def _length_range(lengths: tuple[int, int]) -> list[int]:
    return list(range(lengths[0], lengths[1] + 1))


@dataclass(slots=True)
class AccessCode:
    access_code_id: str
    device_id: str
    name: str | None
    code: str
    starts_at: datetime | None
    ends_at: datetime | None
    status: CodeStatus
    created_at: datetime
    is_backup: bool = False
    backup_state: BackupState | None = None
    pulled_for: str | None = None
    pulled_backup_id: str | None = None
    allow_external_modification: bool = False
    slot: int | None = None
    deleting: bool = False
    on_lock: bool = False  # internal: seen on the lock (so its removal is worth an event)
    problems: list[Problem] = field(default_factory=list)

    @property
    def type(self) -> CodeType:
        return CodeType.ONGOING if self.ends_at is None else CodeType.TIME_BOUND

    def to_json(self, *, device_problems: list[Problem], backup_available: bool) -> Json:
        errors, warnings = code_problems(self.problems, device_problems)
        return {
            "access_code_id": self.access_code_id,
            "device_id": self.device_id,
            "name": self.name,
            "code": self.code,
            "type": self.type.value,
            "starts_at": _ts(self.starts_at),
            "ends_at": _ts(self.ends_at),
            "status": self.status.value,
            "created_at": isoformat(self.created_at),
            "errors": errors,
            "warnings": warnings,
            "is_managed": True,
            "is_backup": self.is_backup,
            "is_backup_access_code_available": backup_available,
            "pulled_backup_access_code_id": self.pulled_backup_id,
            "is_external_modification_allowed": self.allow_external_modification,
            "slot": self.slot,
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


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    event_type: EventType
    occurred_at: datetime
    device_id: str | None
    access_code_id: str | None = None
    fields: Json = field(default_factory=dict)
    seq: int = 0

    def to_json(self) -> Json:
        body: Json = {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "occurred_at": isoformat(self.occurred_at),
            "device_id": self.device_id,
        }
        if self.access_code_id is not None:
            body["access_code_id"] = self.access_code_id
        body.update(self.fields)
        return body
