"""Payloads and topics of a lock behind Zigbee2MQTT, shared by driver and simulator.

Pure functions and dataclasses, no I/O. Zigbee2MQTT numbers users from 0; these functions speak
Zigbee2MQTT's ``user`` numbers and leave the translation to gateway slots (``user + 1``) to their
callers. Parsers are lenient about what they do not know (a state message carries many unrelated
attributes) and strict about the shape of what they use: a wrong shape raises ``PayloadError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from drivers.base import EntryEvent, EntryKind, EntryMethod, SlotValue, Unreadable
from drivers.bounds import MAX_SLOTS, check_pin, decimal_key, shown
from drivers.payloads import PayloadError, parse_availability
from drivers.payloads import json_object as _object

__all__ = [
    "KEYPAD",
    "OPERATION_ACTIONS",
    "PROGRAMMING_ACTIONS",
    "STATUSES",
    "BadRequest",
    "BridgeError",
    "JsonObject",
    "PayloadError",
    "PinRequest",
    "StateReport",
    "Status",
    "Topics",
    "UserEntry",
    "availability_payload",
    "clear_payload",
    "devices_payload",
    "entry_event",
    "lock_state_kind",
    "logging_error_payload",
    "operation_payload",
    "parse_availability",
    "parse_devices",
    "parse_get",
    "parse_logging_error",
    "parse_set",
    "parse_state",
    "range_error_payload",
    "read_all_payload",
    "read_payload",
    "redact_pins",
    "set_payload",
    "set_timeout_payload",
    "state_payload",
    "unsupported_entry_payload",
    "user_entry_payload",
]

JsonObject = dict[str, Any]
Status = Literal["available", "enabled", "disabled"]
STATUSES: Final[tuple[Status, ...]] = ("available", "enabled", "disabled")
#: Actions saying a user's PIN was changed (at the keypad or by anyone else).
PROGRAMMING_ACTIONS: Final = frozenset({"pin_code_added", "pin_code_deleted", "pin_code_changed"})
#: ``action_source_name`` of a change made at the lock itself; anything else (``rf``) came over
#: the radio, as the gateway's own writes do.
KEYPAD: Final = "keypad"
#: Zigbee2MQTT's ``action`` for each Operation Event Notification code (the converters'
#: ``lock_operation_event``): what happened, and how when the code says it (else the
#: ``action_source_name`` says). ``unknown`` and ``non_access_user_operational_event`` (a code
#: that opens nothing) are no door operation.
OPERATION_ACTIONS: Final[Mapping[str, tuple[EntryKind, EntryMethod | None]]] = {
    "lock": (EntryKind.LOCKED, None),
    "unlock": (EntryKind.UNLOCKED, None),
    "lock_failure_invalid_pin_or_id": (EntryKind.ACCESS_DENIED, None),
    "lock_failure_invalid_schedule": (EntryKind.ACCESS_DENIED, None),
    "unlock_failure_invalid_pin_or_id": (EntryKind.ACCESS_DENIED, None),
    "unlock_failure_invalid_schedule": (EntryKind.ACCESS_DENIED, None),
    "one_touch_lock": (EntryKind.LOCKED, EntryMethod.MANUAL),
    "key_lock": (EntryKind.LOCKED, EntryMethod.MANUAL),
    "key_unlock": (EntryKind.UNLOCKED, EntryMethod.MANUAL),
    "auto_lock": (EntryKind.LOCKED, EntryMethod.AUTOMATIC),
    "schedule_lock": (EntryKind.LOCKED, EntryMethod.AUTOMATIC),
    "schedule_unlock": (EntryKind.UNLOCKED, EntryMethod.AUTOMATIC),
    "manual_lock": (EntryKind.LOCKED, EntryMethod.MANUAL),
    "manual_unlock": (EntryKind.UNLOCKED, EntryMethod.MANUAL),
}
#: The converters' ``action_source_name`` (ZCL operation event source) as an entry method;
#: ``rfid`` and ``fingerprint`` have none in the contract: ``unknown``.
_SOURCE_METHODS: Final[Mapping[str, EntryMethod]] = {
    KEYPAD: EntryMethod.KEYCODE,
    "rf": EntryMethod.REMOTE,
    "manual": EntryMethod.MANUAL,
}
#: Operations whose ``action_user`` names the PIN's user when the source is the keypad (a wrong
#: PIN names no user; a right one outside its schedule does).
_NAMES_USER: Final = frozenset(
    {"lock", "unlock", "lock_failure_invalid_schedule", "unlock_failure_invalid_schedule"}
)
#: The converters' ``lock_state`` (ZCL lockState) of a lock that is locked or unlocked;
#: ``not_fully_locked`` (jammed) says neither.
_LOCK_STATES: Final[Mapping[str, EntryKind]] = {
    "locked": EntryKind.LOCKED,
    "unlocked": EntryKind.UNLOCKED,
}
#: ``B/bridge/devices`` lists every device of the network with its definition: far larger than a
#: lock's report (some KiB a device), read only when Zigbee2MQTT republishes it.
MAX_DEVICES_BYTES: Final = 16 * 1024 * 1024
#: What Zigbee2MQTT's converters throw for a user outside the device definition's
#: ``pinCodeCount`` (``user ...`` on ``/set``, ``userId ...`` on ``/get``).
RANGE_ERROR: Final = "must be in range for device"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of device ``friendly_name`` under base topic ``base``."""

    base: str
    friendly_name: str

    @property
    def state(self) -> str:
        return f"{self.base}/{self.friendly_name}"

    @property
    def set(self) -> str:
        return f"{self.state}/set"

    @property
    def get(self) -> str:
        return f"{self.state}/get"

    @property
    def availability(self) -> str:
        return f"{self.state}/availability"

    @property
    def bridge_state(self) -> str:
        return f"{self.base}/bridge/state"

    @property
    def bridge_logging(self) -> str:
        return f"{self.base}/bridge/logging"

    @property
    def bridge_devices(self) -> str:
        return f"{self.base}/bridge/devices"


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One entry of ``users`` in the state message, as Zigbee2MQTT's deep-merged cache has it.

    ``status`` is one of :data:`STATUSES`, or whatever else the converter made of a userstatus it
    does not know (``not_supported_255``). ``pin_code`` is None when the entry has none; with
    ``expose_pin`` every answer carries one (``""`` for an empty slot), so an entry without it,
    or an empty slot still showing an old PIN (the deep merge keeps it), says PINs are hidden.
    """

    status: str
    pin_code: str | None = None

    def value(self, *, pins_hidden: bool = False) -> SlotValue:
        """What the gateway's slot table makes of this entry.

        ``available`` is empty, whatever PIN the merge left behind. ``enabled`` is the PIN, or
        occupied-but-unreadable when there is none or PINs are hidden (``pins_hidden``: any PIN
        left is an old one). ``disabled`` holds a code that does not open, and a status the
        converter does not know is a slot the lock will not describe: occupied either way,
        never ours, so neither is overwritten as free nor taken for a code the gateway set.
        """
        if self.status == "available":
            return None
        if self.status == "enabled" and self.pin_code and not pins_hidden:
            return self.pin_code
        return Unreadable.OCCUPIED

    @property
    def hides_pin(self) -> bool:
        """An answer of Zigbee2MQTT without ``expose_pin``: no ``pin_code``, or an empty slot
        still showing the PIN an earlier answer left in the cache."""
        if self.status not in STATUSES:
            return False  # not from a getPinCode answer: says nothing about expose_pin
        return self.pin_code is None or (self.status == "available" and self.pin_code != "")


@dataclass(frozen=True, slots=True)
class StateReport:
    """A parsed state message ``B/N``: the (possibly stale) ``users`` cache and any action.

    ``refused``: why entries of ``users`` were left out (out of bounds, wrong shape), the first
    one first. Zigbee2MQTT republishes its cache in every message, so one bad entry must not
    hide the others: it is left out on its own.
    """

    users: Mapping[int, UserEntry]
    action: str | None = None
    action_user: int | None = None
    action_source_name: str | None = None
    refused: tuple[str, ...] = field(default=())
    lock_state: str | None = None  # the converters' lockState: locked, unlocked, ...

    @property
    def from_keypad(self) -> bool:
        return self.action_source_name == KEYPAD

    @property
    def programming_user(self) -> int | None:
        """The user an ``action`` says was (re)programmed, or None."""
        if self.action in PROGRAMMING_ACTIONS:
            return self.action_user
        return None


@dataclass(frozen=True, slots=True)
class PinRequest:
    """A parsed ``/set`` or ``/get`` pin_code request (simulator side).

    ``user`` None on ``/get`` is "every user"; ``pin_code`` None on ``/set`` is a clear.
    """

    user: int | None
    pin_code: str | None = None


@dataclass(frozen=True, slots=True)
class BridgeError:
    """An error line on ``B/bridge/logging`` that names this device, PINs redacted.

    ``verb`` and ``key`` when it is Zigbee2MQTT's ``Publish '<verb>' '<key>' to 'N' failed``;
    ``user`` when the failed ZCL command quotes one (``"userid":6``)."""

    message: str
    verb: str | None = None
    key: str | None = None
    user: int | None = None

    @property
    def about_pin_codes(self) -> bool:
        """About a ``pin_code`` request (the driver's kind), not the lock's other business."""
        return self.key == "pin_code"

    @property
    def out_of_range(self) -> bool:
        return self.about_pin_codes and RANGE_ERROR in self.message


class BadRequest(PayloadError):
    """A request Zigbee2MQTT would refuse (it logs an error); ``user`` when one was named."""

    def __init__(self, message: str, *, user: int | None = None, error: str = "internal") -> None:
        super().__init__(message)
        self.user = user
        self.error = error


# -- helpers ------------------------------------------------------------------------------------


def _user(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PayloadError(f"{field}: expected a user number (0 or more)")
    return value


def _user_key(key: str) -> int:
    user = decimal_key(key)
    if user is None:
        raise PayloadError(f"users.{shown(key)}: user keys must be decimal numbers from 0")
    if user + 1 > MAX_SLOTS:
        raise PayloadError(
            f"users.{shown(key)}: user {user} (slot {user + 1}) exceeds the limit of"
            f" {MAX_SLOTS} slots"
        )
    return user


def _entry(user: int, raw: object, code_lengths: tuple[int, int] | None) -> UserEntry:
    if not isinstance(raw, dict):
        raise PayloadError(f"users.{user}: expected an object")
    status = raw.get("status")
    if not isinstance(status, str) or not status:
        raise PayloadError(f"users.{user}.status: expected a string")
    pin = raw.get("pin_code")
    if pin is not None and not isinstance(pin, str):
        # A number would have lost its leading zeros: not a PIN one can trust.
        raise PayloadError(f"users.{user}.pin_code: expected a string")
    if pin:  # an empty slot reads "" with expose_pin
        check_pin(pin, f"users.{user}.pin_code", code_lengths)
    return UserEntry(status=shown(status), pin_code=pin)


# -- Zigbee2MQTT -> gateway ---------------------------------------------------------------------


def parse_state(
    payload: bytes | str,
    *,
    capacity: int | None = None,
    code_lengths: tuple[int, int] | None = None,
) -> StateReport:
    """The device's state message. Entries of ``users`` may be stale: see the driver.

    The message as a whole must be a JSON object within bounds (drivers/bounds.py), or
    ``PayloadError``. Each entry of ``users`` is judged on its own (see :class:`StateReport`):
    Zigbee2MQTT deep-merges it into a cache it republishes in every later message and keeps
    across restarts, so refusing the message for one entry would refuse every message of that
    lock for good. Users beyond the lock's ``capacity`` (its configured ``slots``) are left out
    unread: Zigbee2MQTT keeps every user anyone ever read, so they are not a lie, just not the
    gateway's; a user number beyond the ceiling of slots, or a PIN that is not one, is.
    """
    raw = _object(payload)
    users_raw = raw.get("users", {})
    if users_raw is None:
        users_raw = {}
    if not isinstance(users_raw, dict):
        raise PayloadError("users: expected an object of user number -> entry")
    users: dict[int, UserEntry] = {}
    refused: list[str] = []
    for key, value in users_raw.items():
        try:
            user = _user_key(key)
            if capacity is None or user < capacity:
                users[user] = _entry(user, value, code_lengths)
        except PayloadError as exc:
            refused.append(str(exc))
    action = raw.get("action")
    if action is not None and not isinstance(action, str):
        raise PayloadError("action: expected a string")
    action_user = raw.get("action_user")
    if action_user is not None:
        action_user = _user(action_user, "action_user")
    source = raw.get("action_source_name")
    lock_state = raw.get("lock_state")
    return StateReport(
        users=users,
        action=action or None,
        action_user=action_user,
        action_source_name=source if isinstance(source, str) else None,
        refused=tuple(refused),
        lock_state=lock_state if isinstance(lock_state, str) else None,
    )


def entry_event(report: StateReport) -> EntryEvent | None:
    """The door operation an ``action`` message reports (Operation Event Notification), or
    None for any other action (a programming event) or message. The slot is the keypad
    user's (``action_user + 1``), for a PIN typed at the keypad only."""
    if report.action is None or report.action not in OPERATION_ACTIONS:
        return None
    kind, method = OPERATION_ACTIONS[report.action]
    if method is None:
        method = _SOURCE_METHODS.get(report.action_source_name or "", EntryMethod.UNKNOWN)
    slot = None
    user = report.action_user
    if method is EntryMethod.KEYCODE and report.action in _NAMES_USER and user is not None:
        slot = user + 1 if user + 1 <= MAX_SLOTS else None  # 0xFFFF: no user
    return EntryEvent(kind, method, slot)


def lock_state_kind(report: StateReport) -> EntryKind | None:
    """Locked or unlocked, as the state message's ``lock_state`` says; None for anything else
    (absent, jammed, or a value the converters do not give)."""
    return _LOCK_STATES.get(report.lock_state or "")


def _exposes_operations(exposes: object) -> bool:
    """Whether a definition's ``exposes`` (features nested) hold the lock's ``action`` enum
    with the Operation Event Notification values."""
    if not isinstance(exposes, list):
        return False
    for expose in exposes:
        if not isinstance(expose, dict):
            continue
        values = expose.get("values")
        if expose.get("name") == "action" and isinstance(values, list) and "unlock" in values:
            return True
        if _exposes_operations(expose.get("features")):
            return True
    return False


def parse_devices(payload: bytes | str, friendly_name: str) -> bool | None:
    """From ``B/bridge/devices``: whether the device ``friendly_name`` reports door operations
    (its definition exposes the lock's ``action`` enum); None when it is not listed or the
    list cannot be read (``PayloadError``: not a list of devices, or too large)."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > MAX_DEVICES_BYTES:
        raise PayloadError(f"payload: {size} bytes exceed the limit of {MAX_DEVICES_BYTES}")
    try:
        devices = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"payload: not valid JSON ({exc})") from None
    if not isinstance(devices, list):
        raise PayloadError("payload: expected a list of devices")
    for device in devices:
        if isinstance(device, dict) and device.get("friendly_name") == friendly_name:
            definition = device.get("definition")
            if not isinstance(definition, dict):
                return False  # an unsupported device: no converters, no events
            return _exposes_operations(definition.get("exposes"))
    return None


# Zigbee2MQTT's and herdsman's texts quote what was sent: ``"pincodevalue":"7777"`` in a failed
# ZCL command, ``pin_code`` in a request echoed back, ``code`` in a lock/unlock with a PIN. A
# key that names a PIN or code, quoted or not, then ``:`` or ``=``, then its value: a string,
# a Buffer object, an array, or a bare word.
_PIN_FIELD = re.compile(
    r"""(?P<key>["']?[A-Za-z_]*(?:pin|code)[A-Za-z_]*["']?\s*[:=]\s*)"""
    r"""(?:"[^"]*"|'[^']*'|\{[^{}]*\}|\[[^\[\]]*\]|[^\s,;)}\]]+)""",
    re.IGNORECASE,
)
# Zigbee2MQTT prefixes its namespace: "z2m: Publish 'set' 'pin_code' to 'N' failed: ...".
_PUBLISH_FAILED = re.compile(r"(?:^|: )Publish '(?P<verb>[^']*)' '(?P<key>[^']*)' to '")
_USERID = re.compile(r'"userid"\s*:\s*(?P<user>\d{1,6})\b')


def redact_pins(text: str) -> str:
    """``text`` from Zigbee2MQTT or herdsman with every value of a PIN or code field replaced
    by ``***``: their error lines quote the ZCL payload, PIN included, and may be logged."""
    return _PIN_FIELD.sub(lambda match: f"{match['key']}***", text)


def parse_logging_error(payload: bytes | str, friendly_name: str) -> BridgeError | None:
    """An error line on ``B/bridge/logging`` about this device (PINs redacted), else None."""
    try:
        raw = _object(payload)
    except PayloadError:
        return None
    message = raw.get("message")
    if raw.get("level") != "error" or not isinstance(message, str):
        return None
    name = f"'{friendly_name}'"
    if name not in message:
        return None
    publish = _PUBLISH_FAILED.search(message)
    if publish is not None and not message[publish.end() - 1 :].startswith(name):
        return None  # a request to another device whose text quotes this name
    userid = _USERID.search(message)
    return BridgeError(
        message=redact_pins(message),
        verb=publish["verb"] if publish else None,
        key=publish["key"] if publish else None,
        user=int(userid["user"]) if userid else None,
    )


# -- gateway -> Zigbee2MQTT ---------------------------------------------------------------------


def set_payload(user: int, pin: str) -> JsonObject:
    """Program ``pin`` (always a JSON string: a number would lose leading zeros)."""
    return {
        "pin_code": {
            "user": user,
            "user_type": "unrestricted",
            "user_enabled": True,
            "pin_code": pin,
        }
    }


def clear_payload(user: int) -> JsonObject:
    """The clear that locks in the field accept."""
    return {
        "pin_code": {
            "user": user,
            "user_type": "unrestricted",
            "user_enabled": False,
            "pin_code": None,
        }
    }


def read_payload(user: int) -> JsonObject:
    return {"pin_code": {"user": user}}


def read_all_payload() -> JsonObject:
    """Every user, one by one: slow (seconds per user on a real lock)."""
    return {"pin_code": ""}


def parse_set(payload: bytes | str) -> PinRequest:
    """A ``/set`` carrying ``pin_code``; raises ``BadRequest``."""
    try:
        raw = _object(payload)
        body = raw.get("pin_code")
        if not isinstance(body, dict):
            raise PayloadError("pin_code: expected an object")
        user = _user(body.get("user"), "pin_code.user")
    except PayloadError as exc:
        raise BadRequest(str(exc)) from None
    pin = body.get("pin_code")
    if pin is not None and not isinstance(pin, str):
        raise BadRequest("pin_code.pin_code: expected a string", user=user, error="invalid_code")
    if body.get("user_enabled") is False:
        pin = None
    return PinRequest(user=user, pin_code=pin)


def parse_get(payload: bytes | str) -> PinRequest:
    """A ``/get`` of ``pin_code``: one user, or every user for ``{"pin_code": ""}``."""
    try:
        raw = _object(payload)
        body = raw.get("pin_code")
        if body == "":
            return PinRequest(user=None)
        if not isinstance(body, dict):
            raise PayloadError("pin_code: expected an object or ''")
        return PinRequest(user=_user(body.get("user"), "pin_code.user"))
    except PayloadError as exc:
        raise BadRequest(str(exc)) from None


# -- Zigbee2MQTT's side (simulator) -------------------------------------------------------------


def availability_payload(online: bool) -> JsonObject:
    return {"state": "online" if online else "offline"}


def user_entry_payload(pin: str | None, *, expose_pin: bool) -> JsonObject:
    """The converter's entry for a getPinCode answer: with ``expose_pin`` the PIN always comes
    (an OCTET_STR, so an empty slot's is ``""``), without it never."""
    entry: JsonObject = {"status": "available" if pin is None else "enabled"}
    if expose_pin:
        entry["pin_code"] = pin or ""
    return entry


def unsupported_entry_payload(userstatus: int) -> JsonObject:
    """The converter's entry for a userstatus it has no name for (0xFF past a lock's users)."""
    return {"status": f"not_supported_{userstatus}"}


def state_payload(
    users: Mapping[int, JsonObject],
    *,
    action: str | None = None,
    action_user: int | None = None,
    action_source_name: str | None = None,
    **attributes: Any,
) -> JsonObject:
    payload: JsonObject = dict(attributes)
    payload["users"] = {str(user): dict(entry) for user, entry in sorted(users.items())}
    if action is not None:
        payload["action"] = action
        if action_user is not None:
            payload["action_user"] = action_user
        if action_source_name is not None:
            payload["action_source_name"] = action_source_name
    return payload


#: The ZCL operation event source of each ``action_source_name`` (``constants.lockSourceName``).
SOURCES: Final[Mapping[str, int]] = {KEYPAD: 0, "rf": 1, "manual": 2, "rfid": 3}
#: No user (ZCL): what a lock names for an operation no user's PIN made.
NO_USER: Final = 0xFFFF


def operation_payload(action: str, source: str, user: int | None) -> JsonObject:
    """The fields the converters' ``lock_operation_event`` adds to the state message."""
    return {
        "action": action,
        "action_user": NO_USER if user is None else user,
        "action_source": SOURCES[source],
        "action_source_name": source,
    }


def devices_payload(friendly_name: str, *, operations: bool) -> list[JsonObject]:
    """``B/bridge/devices`` with one lock, its definition's exposes in part (the lock and, when
    ``operations``, the ``action`` enum of ``m.lock``)."""
    exposes: list[JsonObject] = [
        {
            "type": "lock",
            "features": [
                {"type": "binary", "name": "state", "property": "state", "access": 7},
                {"type": "enum", "name": "lock_state", "property": "lock_state", "access": 1},
            ],
        }
    ]
    if operations:
        values = ["unknown", *OPERATION_ACTIONS, "non_access_user_operational_event"]
        exposes.append(
            {"type": "enum", "name": "action", "property": "action", "access": 1, "values": values}
        )
    return [
        {
            "friendly_name": friendly_name,
            "type": "EndDevice",
            "supported": True,
            "definition": {"model": "YRD226HA2619", "vendor": "Yale", "exposes": exposes},
        }
    ]


def logging_error_payload(friendly_name: str, verb: str, detail: str) -> JsonObject:
    """Zigbee2MQTT's line for a request whose converter threw (publish.ts)."""
    return {
        "level": "error",
        "message": f"Publish '{verb}' 'pin_code' to '{friendly_name}' failed: '{detail}'",
    }


def range_error_payload(friendly_name: str, verb: str) -> JsonObject:
    """The converter's refusal of a user beyond the definition's ``pinCodeCount``."""
    subject = "user" if verb == "set" else "userId"
    return logging_error_payload(friendly_name, verb, f"Error: {subject} {RANGE_ERROR}")


def set_timeout_payload(friendly_name: str, user: int, pin: str | None) -> JsonObject:
    """herdsman's failure of a setPinCode/clearPinCode the lock never answered: its text quotes
    the ZCL payload, PIN included, as the real one does."""
    zcl: JsonObject = {"userid": user}
    if pin is None:
        command = "clearPinCode"
    else:
        command = "setPinCode"
        zcl.update(userstatus=1, usertype=0, pincodevalue=pin)
    options = {"timeout": 10000, "disableResponse": False, "disableDefaultResponse": True}
    detail = (
        f"Error: ZCL command 0x00124b0000000001/1 closuresDoorLock.{command}("
        f"{json.dumps(zcl, separators=(',', ':'))}, {json.dumps(options, separators=(',', ':'))})"
        " failed (Timeout after 10000ms [address=1 endpoint=1 clusterId=257 cmdId=5 tsn=1])"
    )
    return logging_error_payload(friendly_name, "set", detail)
