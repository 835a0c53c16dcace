"""The gateway's domain objects and their wire shapes (contract section 6). No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.clock import isoformat

# The vocabulary lives in the domain module (which every layer may import); re-exported here
# for the modules that deal in domain objects.
from gateway.domain import (
    DEFAULT_CODE_LENGTHS,
    ENTRY_EVENT_TYPES,
    PROBLEMS,
    BackupState,
    CodeStatus,
    CodeType,
    EventType,
    ProblemCode,
    ProblemKind,
    ProblemSpec,
)

__all__ = [
    "PROBLEMS",
    "AccessCode",
    "BackupState",
    "CodeStatus",
    "CodeType",
    "Device",
    "Event",
    "EventType",
    "Json",
    "Problem",
    "ProblemCode",
    "ProblemKind",
    "ProblemSpec",
    "code_problems",
    "split_problems",
]

Json = dict[str, Any]


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
    has_entry_events: bool = False

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
                "has_native_entry_events": self.has_entry_events,
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
    is_one_time_use: bool = False
    common_code_key: str | None = None
    # What a pending update replaces, while the lock does not match it yet (pending_mutations).
    code_from: str | None = None
    code_changed_at: datetime | None = None
    window_from: tuple[datetime | None, datetime | None] | None = None
    window_changed_at: datetime | None = None
    status_since: datetime | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def type(self) -> CodeType:
        return CodeType.ONGOING if self.ends_at is None else CodeType.TIME_BOUND

    def pending_mutations(self, now: datetime) -> list[Json]:
        """What the gateway still has to do on the lock for this code (Seam's shape)."""
        if self.deleting or (self.status is CodeStatus.REMOVING and self.window_from is None):
            return [_mutation("deleting", self.status_since or self.created_at)]
        pending: list[Json] = []
        if self.window_from is not None:
            before, after = (self.window_from, (self.starts_at, self.ends_at))
            pending.append(
                _mutation(
                    "updating_time_frame",
                    self.window_changed_at or self.created_at,
                    {"starts_at": _ts(before[0]), "ends_at": _ts(before[1])},
                    {"starts_at": _ts(after[0]), "ends_at": _ts(after[1])},
                )
            )
        if self.code_from is not None:
            pending.append(
                _mutation(
                    "updating_code",
                    self.code_changed_at or self.created_at,
                    {"code": self.code_from},
                    {"code": self.code},
                )
            )
        elif not pending and not self.on_lock and self._creating(now):
            pending.append(_mutation("creating", self.created_at))
        return pending

    def _creating(self, now: datetime) -> bool:
        if self.status is CodeStatus.SETTING:
            return True
        due = self.starts_at is None or self.starts_at <= now
        ended = self.ends_at is not None and self.ends_at <= now
        return self.status is CodeStatus.UNSET and due and not ended

    def to_json(
        self, *, device_problems: list[Problem], backup_available: bool, now: datetime
    ) -> Json:
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
            "is_one_time_use": self.is_one_time_use,
            "common_code_key": self.common_code_key,
            "pending_mutations": self.pending_mutations(now),
        }


def _mutation(
    code: str, since: datetime, before: Json | None = None, after: Json | None = None
) -> Json:
    mutation: Json = {"mutation_code": code, "created_at": isoformat(since)}
    if before is not None:
        mutation["from"], mutation["to"] = before, after
    return mutation


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
        if self.access_code_id is not None or self.event_type in ENTRY_EVENT_TYPES:
            body["access_code_id"] = self.access_code_id
        body.update(self.fields)
        return body
