"""``access_codes/*`` endpoints: desired state in, validated, committed; the lock follows later.

None of these talk to a lock. A create or update is answered once it is in the database; the
lock's worker then programs it. A pull is answered from the store alone: the backup it hands
out is already on the lock, which is the whole point of the pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from gateway.api.devices import DeviceRef, require_device
from gateway.api.errors import ApiError, RecordedRefusal, invalid
from gateway.api.params import (
    ABSENT,
    Absent,
    Field,
    Integer,
    ListOf,
    Nullable,
    OneOf,
    Text,
    access_code_id,
    boolean,
    device_id,
    digits,
    fields_of,
    param,
    window_timestamp,
)
from gateway.api.router import Endpoint
from gateway.domain import DEFAULT_CODE_LENGTHS
from gateway.model import (
    AccessCode,
    BackupState,
    CodeStatus,
    CodeType,
    Device,
    EventType,
    Json,
    ProblemCode,
)
from gateway.rules.codes import (
    CodeRuleViolation,
    check_code,
    generate_code,
    shared_code_lengths,
)
from gateway.rules.slots import Written
from gateway.schema import Invalid
from gateway.store import Tx, slot_writes
from gateway.store import codes as store
from gateway.store import devices as device_store
from gateway.store import events as event_store
from gateway.store import unmanaged as unmanaged_store
from gateway.store.observed import load_table
from gateway.store.problems import set_problem
from gateway.store.unmanaged import Unmanaged

MAX_NAME = 200
MAX_COMMON_CODE_KEY = 256


def _rule_error(exc: CodeRuleViolation, device_id: str | None = None) -> ApiError:
    """The rule's refusal; one that says a PIN is taken on ``device_id`` is a PIN test."""
    taken = exc.kind == "duplicate_access_code"
    return ApiError(exc.kind, exc.message, pin_device=device_id if taken else None)


def _managed_device(tx: Tx, wanted: str) -> Device:
    device = require_device(tx, wanted)
    if not device.is_managed:
        raise ApiError(
            "device_not_managed",
            f"device_id: device '{wanted}' is not managed; set is_managed to true first",
        )
    return device


def _require_code(tx: Tx, wanted: str, *, removing_ok: bool = False) -> AccessCode:
    """The code, if it exists; one being removed after a delete counts only for reads."""
    code = store.get_code(tx, wanted)
    if code is None or (code.deleting and not removing_ok):
        raise ApiError("access_code_not_found", f"access_code_id: no access code '{wanted}'")
    return code


def _taken_pins(tx: Tx, device: Device, *, except_id: str | None = None) -> set[str]:
    """PINs a new code may not use: other managed codes', and any already on the lock."""
    table = load_table(tx, device.device_id)
    own: set[object] = set()
    if except_id is not None and (code := store.get_code(tx, except_id)) is not None:
        # Its own PIN, and what its own slot still holds (an update not yet on the lock).
        own = {code.code, table.get(code.slot) if code.slot is not None else None}
    observed = {v for v in table.values() if isinstance(v, str)}
    return (store.pins_of_device(tx, device.device_id, except_id=except_id)) | (observed - own)


def _check_window(starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> None:
    if (starts_at is None) != (ends_at is None):
        raise invalid("starts_at", "starts_at and ends_at must be given together, or neither")
    if ends_at is None or starts_at is None:
        return
    if ends_at <= now:
        raise invalid("ends_at", "must be in the future")
    if ends_at <= starts_at:
        raise invalid("ends_at", "must be after starts_at")


def _one(tx: Tx, code: AccessCode) -> Json:
    return (store.to_json(tx, [code]))[0]


def _fresh(tx: Tx, access_code_id: str) -> Json:
    code = store.get_code(tx, access_code_id)
    assert code is not None
    return _one(tx, code)


# -- the parameters ---------------------------------------------------------------------------

_TYPES = (CodeType.ONGOING.value, CodeType.TIME_BOUND.value)


def common_code_key(value: object) -> str:
    """The name under which codes on several doors share one PIN: any text of 1-256 chars."""
    key = Text(MAX_COMMON_CODE_KEY)(value)
    if not key:
        raise Invalid(f"must be 1-{MAX_COMMON_CODE_KEY} characters")
    return key


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeCreate:
    device_id: str = param(device_id, required=True)
    name: str | None = param(Nullable(Text(MAX_NAME)), default=None)
    code: str | None = param(digits, default=None)
    common_code_key: str | None = param(Nullable(common_code_key), default=None)
    starts_at: datetime | None = param(Nullable(window_timestamp), default=None)
    ends_at: datetime | None = param(Nullable(window_timestamp), default=None)
    use_backup_access_code_pool: bool = param(boolean, default=False)
    allow_external_modification: bool = param(boolean, default=False)
    preferred_code_length: int | None = param(Integer(1, 16), default=None)
    is_one_time_use: bool = param(boolean, default=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeLookup:
    access_code_id: str | None = param(access_code_id, default=None)
    device_id: str | None = param(device_id, default=None)
    code: str | None = param(digits, default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeQuery:
    device_id: str | None = param(device_id, default=None)
    access_code_ids: list[str] | None = param(ListOf(access_code_id, 1000), default=None)
    include_backup_pool: bool = param(boolean, default=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeUpdate:
    """``ABSENT``: leave as it is; ``None`` for the name or window: clear it."""

    access_code_id: str = param(access_code_id, required=True)
    name: str | Absent | None = param(Nullable(Text(MAX_NAME)))
    code: str | None = param(digits, default=None)
    starts_at: datetime | Absent | None = param(Nullable(window_timestamp))
    ends_at: datetime | Absent | None = param(Nullable(window_timestamp))
    type: str | None = param(OneOf(_TYPES), default=None)
    is_one_time_use: bool | None = param(boolean, default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRef:
    access_code_id: str = param(access_code_id, required=True)


def _check_one_time(device: Device, code: AccessCode | None = None) -> None:
    """A one-time code ends with the first unlock that names it, which only a lock reporting
    who opened the door can tell; and it stands alone (no backup stands in for it)."""
    if not device.has_entry_events:
        raise invalid(
            "is_one_time_use",
            f"device '{device.device_id}' does not report who opened the door "
            "(has_native_entry_events is false), so a one-time code could never end",
        )
    if code is not None and (code.is_backup or code.pulled_backup_id is not None):
        raise invalid(
            "is_one_time_use",
            "a backup code, or a code with a pulled backup, cannot be a one-time code",
        )


def _make_one_time(tx: Tx, code: AccessCode) -> None:
    store.update_fields(tx, code, {"is_one_time_use": True})
    code.is_one_time_use = True


# -- endpoints --------------------------------------------------------------------------------


def create(tx: Tx, params: CodeCreate) -> Json:
    device = _managed_device(tx, params.device_id)
    starts_at, ends_at = params.starts_at, params.ends_at
    _check_window(starts_at, ends_at, tx.now)
    if params.is_one_time_use:
        _check_one_time(device)
    pin = _chosen_pin(tx, device, params)
    if params.use_backup_access_code_pool:
        if not device.supports_pool:
            raise ApiError(
                "backup_pool_not_supported",
                f"use_backup_access_code_pool: device '{device.device_id}' cannot carry a "
                "backup pool (it needs at least 2 slots)",
            )
        device_store.enable_pool(tx, device.device_id)
    code = store.insert_code(
        tx,
        device_id=device.device_id,
        name=params.name,
        code=pin,
        starts_at=starts_at,
        ends_at=ends_at,
        allow_external_modification=params.allow_external_modification,
    )
    if params.common_code_key is not None:
        store.set_common_code_key(tx, code, params.common_code_key)
    if params.is_one_time_use:
        _make_one_time(tx, code)
    return {"access_code": _one(tx, code)}


def _chosen_pin(tx: Tx, device: Device, params: CodeCreate) -> str:
    """A new code's PIN: the one shared under its ``common_code_key`` when that key is in use
    (every code with the key has the same PIN), else the one given, else a fresh one."""
    shared = _pin_of_key(tx, params.common_code_key, params.code)
    if shared is not None:
        problem = _shared_pin_problem(tx, device, shared)
        if problem is not None:
            raise problem
        return shared
    taken = _taken_pins(tx, device)
    try:
        if params.code is not None:
            check_code(params.code, code_lengths=device.code_lengths, taken=taken)
            return params.code
        return generate_code(
            code_lengths=device.code_lengths,
            taken=taken,
            preferred_length=params.preferred_code_length,
        )
    except CodeRuleViolation as exc:
        raise _rule_error(exc, device.device_id) from None


def _pin_of_key(tx: Tx, key: str | None, code: str | None) -> str | None:
    """The PIN already shared under ``key``, if any; a different ``code`` is refused, since
    the codes of one key never hold different PINs."""
    shared = None if key is None else store.shared_pin(tx, key)
    if shared is not None and code is not None and code != shared:
        raise invalid(
            "code",
            "differs from the PIN the access codes with this common_code_key share; leave"
            " code out to take it, or change it for all of them with access_codes/update_multiple",
        )
    return shared


def _shared_pin_problem(tx: Tx, device: Device, pin: str) -> ApiError | None:
    """Why the shared PIN ``pin`` cannot go on ``device`` (taken, wrong length), or None."""
    try:
        check_code(
            pin, code_lengths=device.code_lengths, taken=_taken_pins(tx, device), field="the PIN"
        )
    except CodeRuleViolation as exc:
        refusal = _rule_error(exc, device.device_id)
        refusal.message = (
            f"common_code_key: the PIN shared under this key cannot go on device"
            f" '{device.device_id}': {exc.message}"
        )
        return refusal
    return None


def get(tx: Tx, params: CodeLookup) -> Json:
    if params.access_code_id is not None:
        if params.device_id is not None or params.code is not None:
            raise invalid("access_code_id", "give access_code_id, or device_id and code")
        code = _require_code(tx, params.access_code_id, removing_ok=True)
        return {"access_code": _one(tx, code)}
    if params.device_id is None or params.code is None:
        raise invalid("access_code_id", "give access_code_id, or device_id and code")
    require_device(tx, params.device_id)
    found = store.get_code_by_pin(tx, params.device_id, params.code)
    if found is None:
        raise ApiError("access_code_not_found", "code: no access code with that PIN on the device")
    return {"access_code": _one(tx, found)}


def list_codes(tx: Tx, params: CodeQuery) -> Json:
    if (params.device_id is None) == (params.access_code_ids is None):
        raise invalid("device_id", "give device_id or access_code_ids (one of them)")
    if params.device_id is not None:
        require_device(tx, params.device_id)
        codes = store.codes_of_device(tx, params.device_id)
    else:
        assert params.access_code_ids is not None
        codes = store.codes_by_ids(tx, params.access_code_ids)
    include_pool = params.include_backup_pool
    shown = [c for c in codes if include_pool or c.backup_state is not BackupState.POOLED]
    return {"access_codes": store.to_json(tx, shown)}


def _updated_window(
    code: AccessCode, params: CodeUpdate
) -> tuple[datetime | None, datetime | None]:
    """The window ``params`` asks for: the code's own where they leave it out."""
    if params.type == CodeType.ONGOING.value:
        if params.starts_at is not ABSENT or params.ends_at is not ABSENT:
            raise invalid("type", "an ongoing code takes no starts_at or ends_at")
        return None, None
    starts_at = code.starts_at if params.starts_at is ABSENT else params.starts_at
    ends_at = code.ends_at if params.ends_at is ABSENT else params.ends_at
    if params.type == CodeType.TIME_BOUND.value and ends_at is None:
        raise invalid("type", "a time_bound code needs starts_at and ends_at")
    return starts_at, ends_at


def update(tx: Tx, params: CodeUpdate, *, shared: bool = False) -> Json:
    """``shared``: called by ``update_multiple`` for every code of a ``common_code_key``, the
    only way to change a shared PIN (a single update would split it from its doors)."""
    code = _require_code(tx, params.access_code_id)
    device = _managed_device(tx, code.device_id)
    changes: dict[str, Any] = {}
    if params.name is not ABSENT:
        changes["name"] = params.name
    starts_at, ends_at = _updated_window(code, params)
    if (starts_at, ends_at) != (code.starts_at, code.ends_at):
        if code.backup_state is BackupState.POOLED:
            raise invalid("access_code_id", "a backup code in the pool has no schedule to change")
        _check_window(starts_at, ends_at, tx.now)
        changes["starts_at"], changes["ends_at"] = starts_at, ends_at
    if params.code is not None and params.code != code.code:
        if code.common_code_key is not None and not shared:
            raise invalid(
                "code",
                "this access code shares its PIN with the other access codes of its"
                " common_code_key; change it for all of them with access_codes/update_multiple",
            )
        taken = _taken_pins(tx, device, except_id=code.access_code_id)
        try:
            check_code(params.code, code_lengths=device.code_lengths, taken=taken)
        except CodeRuleViolation as exc:
            raise _rule_error(exc, device.device_id) from None
        changes["code"] = params.code
    if params.is_one_time_use is not None and params.is_one_time_use != code.is_one_time_use:
        if params.is_one_time_use:
            _check_one_time(device, code)
        changes["is_one_time_use"] = params.is_one_time_use
    if changes:
        store.update_fields(tx, code, changes)
        store.note_pending_update(
            tx, code, new_code=changes.get("code", code.code), new_window=(starts_at, ends_at)
        )
        if "code" in changes:
            # A new PIN must be written: it is no longer what the lock holds.
            fresh = store.get_code(tx, code.access_code_id)
            assert fresh is not None
            store.restart_programming(tx, fresh)
        backup = store.active_backup_of(tx, code)
        if backup is not None and "ends_at" in changes:
            # A pulled backup lives exactly as long as the code it stands in for.
            store.update_fields(tx, backup, {"ends_at": changes["ends_at"]})
        tx.emit(EventType.CODE_CHANGED, code.device_id, code.access_code_id)
    return {"access_code": _fresh(tx, code.access_code_id)}


def delete(tx: Tx, params: CodeRef) -> Json:
    code = _require_code(tx, params.access_code_id, removing_ok=True)
    _managed_device(tx, code.device_id)
    for doomed in (code, store.active_backup_of(tx, code)):
        if doomed is not None and not doomed.deleting:
            store.remove(tx, doomed)
    return {}


def pull_backup(tx: Tx, params: CodeRef) -> Json:
    code = _require_code(tx, params.access_code_id)
    _managed_device(tx, code.device_id)
    if code.is_backup:
        raise invalid("access_code_id", "is itself a backup code")
    if code.is_one_time_use:
        raise invalid(
            "access_code_id", "is a one-time code (is_one_time_use): no backup stands in for it"
        )
    if code.type is not CodeType.TIME_BOUND:
        raise ApiError(
            "access_code_not_time_bound",
            "access_code_id: backup codes are pulled for time_bound codes only",
        )
    backup = store.active_backup_of(tx, code)
    if backup is None:
        backup = store.available_backup(tx, code.device_id)
        if backup is None:
            raise ApiError(
                "no_backup_access_code_available",
                f"access_code_id: no backup code is set on device '{code.device_id}' right now",
            )
        store.pull(tx, backup, code)
        set_problem(
            tx,
            code.access_code_id,
            ProblemCode.USING_BACKUP_ACCESS_CODE,
            True,
            device_id=code.device_id,
        )
        tx.emit(
            EventType.BACKUP_PULLED,
            code.device_id,
            code.access_code_id,
            backup_access_code_id=backup.access_code_id,
        )
    return {
        "access_code": _fresh(tx, code.access_code_id),
        "backup_access_code": _fresh(tx, backup.access_code_id),
    }


# -- one PIN on several doors (common_code_key) ----------------------------------------------

MAX_SHARED_DEVICES = 100
Behavior = Literal["throw", "create_random_code"]
_BEHAVIORS: tuple[Behavior, ...] = ("throw", "create_random_code")


def shared_device_ids(value: object) -> list[str]:
    """1-100 distinct device ids: one code per door."""
    ids = ListOf(device_id, MAX_SHARED_DEVICES)(value)
    if not ids:
        raise Invalid("must name at least one device")
    seen: set[str] = set()
    for i, wanted in enumerate(ids):
        if wanted in seen:
            raise Invalid(f"names device '{wanted}' twice", f"[{i}]")
        seen.add(wanted)
    return ids


@dataclass(frozen=True, slots=True)
class CodeCreateMultiple:
    """``access_codes/create_multiple``: the doors, what to do with one that cannot take the
    shared PIN, and every other parameter of ``access_codes/create`` (whatever it gains)."""

    device_ids: list[str]
    behavior: Behavior
    create: Mapping[str, Any]  # CodeCreate's fields as given, but device_id

    @classmethod
    def of(cls, **checked: Any) -> CodeCreateMultiple:
        behavior = checked.pop("behavior_when_code_cannot_be_shared", "throw")
        return cls(checked.pop("device_ids"), behavior, checked)

    def for_device(self, device: str, **overrides: Any) -> CodeCreate:
        return replace(CodeCreate(device_id=device, **self.create), **overrides)


CREATE_MULTIPLE_FIELDS: dict[str, Field] = {
    "device_ids": Field(shared_device_ids, required=True),
    "behavior_when_code_cannot_be_shared": Field(OneOf(_BEHAVIORS)),
    **{k: v for k, v in fields_of(CodeCreate).items() if k != "device_id"},
}


def create_multiple(tx: Tx, params: CodeCreateMultiple) -> Json:
    """One code per door, all with one PIN, in one transaction: every create runs through
    ``create`` itself. Without a ``common_code_key`` a fresh one links the doors, so
    ``update_multiple`` can change them together later.

    A door that cannot take the shared PIN refuses the whole request (``throw``), or gets a
    random PIN of its own (``create_random_code``); that code carries no ``common_code_key``,
    since every code of a key holds the key's PIN."""
    devices = [_managed_device(tx, wanted) for wanted in params.device_ids]
    template = params.for_device(devices[0].device_id)
    key = template.common_code_key or str(uuid.uuid4())
    random_ok = params.behavior == "create_random_code"
    pin = _pin_of_key(tx, key, template.code) or template.code
    if pin is None:
        pin = _generated_shared_pin(tx, devices, template.preferred_code_length, random_ok)
    created: list[Json] = []
    for device in devices:
        problem = _shared_pin_problem(tx, device, pin)
        if problem is None:
            one = params.for_device(device.device_id, code=pin, common_code_key=key)
        elif random_ok:
            one = params.for_device(
                device.device_id,
                code=None,
                common_code_key=None,
                preferred_code_length=_length_if_fits(device, template.preferred_code_length),
            )
        else:
            raise problem
        created.append(create(tx, one)["access_code"])
    return {"access_codes": created}


def _length_if_fits(device: Device, length: int | None) -> int | None:
    """``length`` if ``device``'s lock accepts PINs that long: a preference, dropped where a
    door gets a PIN of its own that cannot have it."""
    shortest, longest = device.code_lengths or DEFAULT_CODE_LENGTHS
    return length if length is not None and shortest <= length <= longest else None


def _generated_shared_pin(
    tx: Tx, devices: list[Device], preferred: int | None, random_ok: bool
) -> str:
    """A fresh PIN free on every one of ``devices`` and of a length each accepts. Doors with
    no length in common share none: refused, or (``random_ok``) the first door's length, the
    others then getting PINs of their own."""
    lengths = shared_code_lengths([d.code_lengths for d in devices])
    if lengths is None:
        if not random_ok:
            raise ApiError(
                "code_constraints_violated",
                "device_ids: these devices accept no PIN length in common, so no PIN can be"
                " shared by all of them (behavior_when_code_cannot_be_shared:"
                " create_random_code gives the others PINs of their own)",
            )
        lengths = devices[0].code_lengths
    taken: set[str] = set()
    for device in devices:
        taken |= _taken_pins(tx, device)
    try:
        return generate_code(code_lengths=lengths, taken=taken, preferred_length=preferred)
    except CodeRuleViolation as exc:
        raise ApiError(
            exc.kind,
            f"{exc.message.rstrip('.')}, for the PIN shared by every device in device_ids.",
        ) from None


@dataclass(frozen=True, slots=True)
class CodeUpdateMultiple:
    """``access_codes/update_multiple``: a key and the changes ``access_codes/update`` takes."""

    common_code_key: str
    changes: Mapping[str, Any]

    @classmethod
    def of(cls, **checked: Any) -> CodeUpdateMultiple:
        return cls(checked.pop("common_code_key"), checked)


UPDATE_MULTIPLE_FIELDS: dict[str, Field] = {
    "common_code_key": Field(common_code_key, required=True),
    **{
        k: v
        for k, v in fields_of(CodeUpdate).items()
        if k in {"name", "code", "starts_at", "ends_at"}
    },
}


def update_multiple(tx: Tx, params: CodeUpdateMultiple) -> Json:
    """Every code of a ``common_code_key`` changed as ``access_codes/update`` changes one, in
    one transaction: a change one door refuses (a PIN taken there, too long) changes none."""
    codes = store.codes_with_key(tx, params.common_code_key)
    if not codes:
        raise ApiError("access_code_not_found", "common_code_key: no access code has this key")
    updated: list[Json] = []
    for code in codes:
        one = CodeUpdate(access_code_id=code.access_code_id, **params.changes)
        try:
            updated.append(update(tx, one, shared=True)["access_code"])
        except ApiError as exc:
            raise ApiError(
                exc.type,
                f"{exc.message} (access code {code.access_code_id} on device '{code.device_id}')",
                pin_device=exc.pin_device,
            ) from None
    return {"access_codes": updated}


TIMELINE_LIMIT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineQuery:
    access_code_id: str = param(access_code_id, required=True)
    limit: int = param(Integer(1, TIMELINE_LIMIT), default=100)


def timeline(tx: Tx, params: TimelineQuery) -> Json:
    """What happened to a code (and the backups pulled for it), from the stored events: also
    after the code is deleted, as long as its events are kept."""
    found = event_store.code_timeline(tx, params.access_code_id, params.limit)
    if not found and store.get_code(tx, params.access_code_id) is None:
        raise ApiError(
            "access_code_not_found",
            f"access_code_id: no access code '{params.access_code_id}' and no events about it",
        )
    return {"timeline": found}


def generate(tx: Tx, params: DeviceRef) -> Json:
    device = require_device(tx, params.device_id)
    try:
        pin = generate_code(code_lengths=device.code_lengths, taken=_taken_pins(tx, device))
    except CodeRuleViolation as exc:
        raise _rule_error(exc) from None
    return {"generated_code": {"device_id": device.device_id, "code": pin}}


def unmanaged(tx: Tx, params: DeviceRef) -> Json:
    device = require_device(tx, params.device_id)
    return {"access_codes": [u.to_json() for u in unmanaged_store.of_device(tx, device.device_id)]}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmanagedConvert:
    access_code_id: str = param(access_code_id, required=True)
    name: str | None = param(Nullable(Text(MAX_NAME)), default=None)
    starts_at: datetime | None = param(Nullable(window_timestamp), default=None)
    ends_at: datetime | None = param(Nullable(window_timestamp), default=None)
    allow_external_modification: bool = param(boolean, default=False)


def _require_unmanaged(tx: Tx, wanted: str) -> Unmanaged:
    found = unmanaged_store.resolve(tx, wanted)
    if found is None:
        raise ApiError(
            "access_code_not_found",
            f"access_code_id: no unmanaged access code '{wanted}' (a code found on a lock keeps"
            " its id only while its PIN stays in its slot)",
        )
    return found


def unmanaged_get(tx: Tx, params: CodeRef) -> Json:
    return {"access_code": _require_unmanaged(tx, params.access_code_id).to_json()}


def unmanaged_delete(tx: Tx, params: CodeRef) -> Json:
    """Ask the lock's worker to clear the slot, only while it still holds that PIN."""
    found = _require_unmanaged(tx, params.access_code_id)
    _managed_device(tx, found.device_id)
    unmanaged_store.request_removal(tx, found)
    return {}


def _not_convertible(tx: Tx, device_id: str, wanted: str, error: ApiError) -> RecordedRefusal:
    """The refusal, with ``access_code.unmanaged.failed_to_convert_to_managed`` kept."""
    tx.emit(EventType.UNMANAGED_FAILED_TO_CONVERT, device_id, wanted)
    return RecordedRefusal(error.type, error.message)


def convert_to_managed(tx: Tx, params: UnmanagedConvert) -> Json:
    """A managed code, with the same id, that takes over the PIN where it is: no write, ``set``
    at once. The usual rules apply from then on (a window that starts later takes it off the
    lock until then)."""
    wanted = params.access_code_id
    _check_window(params.starts_at, params.ends_at, tx.now)
    found = unmanaged_store.resolve(tx, wanted)
    if found is None:
        seen_on = unmanaged_store.last_seen_on(tx, wanted)
        if seen_on is None:
            _require_unmanaged(tx, wanted)  # never seen: plainly not found
        assert seen_on is not None
        lost = ApiError(
            "access_code_not_found",
            f"access_code_id: unmanaged access code '{wanted}' is no longer on device"
            f" '{seen_on}' (its slot changed); nothing was converted",
        )
        raise _not_convertible(tx, seen_on, wanted, lost)
    device = _managed_device(tx, found.device_id)
    if found.removal_requested_at is not None:
        raise ApiError(
            "access_code_not_found",
            f"access_code_id: unmanaged access code '{wanted}' is being deleted",
        )
    codes = store.codes_of_device(tx, device.device_id)
    holder = next((c for c in codes if c.slot == found.slot), None)
    if holder is not None:
        raise _not_convertible(
            tx,
            device.device_id,
            wanted,
            invalid(
                "access_code_id",
                f"slot {found.slot} belongs to managed access code '{holder.access_code_id}',"
                " which the gateway puts back there; nothing was converted",
            ),
        )
    if found.pin in store.pins_of_device(tx, device.device_id):
        raise _not_convertible(
            tx,
            device.device_id,
            wanted,
            ApiError(
                "duplicate_access_code",
                "access_code_id: a managed access code on this device has the same PIN;"
                " nothing was converted",
            ),
        )
    code = store.insert_code(
        tx,
        # The same id, unless a managed code already had it (its PIN was typed back in later).
        access_code_id=None if store.get_code(tx, wanted) else wanted,
        device_id=device.device_id,
        name=params.name,
        code=found.pin,
        starts_at=params.starts_at,
        ends_at=params.ends_at,
        allow_external_modification=params.allow_external_modification,
    )
    store.set_slot(tx, code, found.slot)
    store.set_on_lock(tx, code, True)
    store.set_status(tx, code, CodeStatus.SET)
    # The gateway answers for the PIN in that slot now: not an external change, never foreign.
    slot_writes.record(
        tx, Written(code.access_code_id, found.slot, found.pin, settled=True), device.device_id
    )
    tx.emit(EventType.UNMANAGED_CONVERTED, device.device_id, code.access_code_id)
    return {"access_code": _fresh(tx, code.access_code_id)}


ENDPOINTS = (
    Endpoint.typed("access_codes/create", CodeCreate, create, writes=True),
    Endpoint.typed(
        "access_codes/get",
        CodeLookup,
        get,
        pin_lookup=lambda p: p.device_id if p.code is not None else None,
    ),
    Endpoint.typed("access_codes/list", CodeQuery, list_codes),
    Endpoint.typed("access_codes/update", CodeUpdate, update, writes=True),
    Endpoint(
        "access_codes/create_multiple",
        CREATE_MULTIPLE_FIELDS,
        create_multiple,
        writes=True,
        params=CodeCreateMultiple.of,
    ),
    Endpoint(
        "access_codes/update_multiple",
        UPDATE_MULTIPLE_FIELDS,
        update_multiple,
        writes=True,
        params=CodeUpdateMultiple.of,
    ),
    Endpoint.typed("access_codes/delete", CodeRef, delete, writes=True),
    Endpoint.typed(
        "access_codes/pull_backup_access_code", CodeRef, pull_backup, writes=True, urgent=True
    ),
    Endpoint.typed("access_codes/generate_code", DeviceRef, generate),
    Endpoint.typed("access_codes/get_timeline", TimelineQuery, timeline),
    Endpoint.typed("access_codes/unmanaged/list", DeviceRef, unmanaged),
    Endpoint.typed("access_codes/unmanaged/get", CodeRef, unmanaged_get),
    Endpoint.typed("access_codes/unmanaged/delete", CodeRef, unmanaged_delete, writes=True),
    Endpoint.typed(
        "access_codes/unmanaged/convert_to_managed",
        UnmanagedConvert,
        convert_to_managed,
        writes=True,
    ),
)
