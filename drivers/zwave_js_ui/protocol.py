"""Topics and payloads of the Z-Wave JS UI MQTT gateway, shared by the driver and the simulator.

Pure functions and dataclasses, no I/O. Two value-topic layouts exist (``valueid``, the default,
and ``named``); :class:`Topics` names every topic of one node for either, and
:meth:`Topics.parse_value_topic` maps a received value topic back to (property, slot).

What the real gateway does, and what shapes these definitions (protocols.md, fixtures):

- value topics are retained ``{"time": <ms>, "value": <v>}``; a payload **without** ``value``
  means zwave-js never read that value: unknown, never empty;
- slots are 1-based; ``userIdStatus`` 0 available, 1 enabled, 2 disabled;
- a masked code (``**********``, all zeros) means the slot is occupied but unreadable;
- the request/response API answers on the request topic without ``/set`` and echoes the whole
  request as ``origin``: the only way to correlate is an id of our own inside the request;
- a Notification CC (113) event is published once (retained only where the gateway retains
  values), on the topic of its notification type and event label
  (``.../113/0/Access_Control/Keypad_unlock_operation``), ``value`` being zwave-js's event
  parameters (``{"userId": 3}``, the User Code report of a keypad operation) or absent when it
  has none; the Door Lock CC (98) ``currentMode`` is a retained value topic (255 secured, 0
  unsecured, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from drivers.base import EntryEvent, EntryKind, EntryMethod, SlotValue, Unreadable
from drivers.bounds import MAX_PIN_LENGTH, MAX_SLOTS, check_pin, decimal_key
from drivers.payloads import PayloadError
from drivers.payloads import json_object as _object
from drivers.payloads import json_value as _json

__all__ = [
    "ACCESS_CONTROL",
    "API_ID_KEY",
    "CODE_CLASS",
    "MISSING",
    "NOTIFICATION_EVENTS",
    "ApiReply",
    "JsonObject",
    "Missing",
    "NodeStatus",
    "PayloadError",
    "Property",
    "Topics",
    "ValueReport",
    "api_reply_payload",
    "api_request_payload",
    "check_value",
    "clear_payload",
    "door_lock_kind",
    "gateway_status_payload",
    "get_args",
    "is_masked",
    "node_status_payload",
    "normalize_code",
    "notification_entry",
    "notification_payload",
    "parse_api_reply",
    "parse_api_request",
    "parse_gateway_status",
    "parse_node_status",
    "parse_set_request",
    "parse_user_get_result",
    "parse_value",
    "poll_value_args",
    "set_payload",
    "slot_value",
    "topic_level",
    "users_count_args",
    "value_payload",
]

JsonObject = dict[str, Any]
Property = Literal["userCode", "userIdStatus"]
PROPERTIES: Final[tuple[Property, ...]] = ("userCode", "userIdStatus")
CODE_CLASS: Final = 99  # User Code CC
#: The key of our own request id inside an API request; the reply echoes it in ``origin``.
API_ID_KEY: Final = "lockgate_id"

#: Notification CC and Door Lock CC, and their named-topic levels.
NOTIFICATION_CLASS: Final = 113
DOOR_LOCK_CLASS: Final = 98
#: The Access Control notification type as Z-Wave JS UI puts it in a topic: a node whose
#: values show it reports its door operations.
ACCESS_CONTROL: Final = "Access_Control"
#: zwave-js's notification events (its Notifications registry, labels as Z-Wave JS UI's topic
#: levels) that are door operations: (notification type, event) -> what happened and how.
#: A keypad operation's parameters name the user (slot); "exceeds code limit" is the lock
#: refusing wrong PINs typed at its keypad; Home Security's "Tampering, invalid code" the same
#: on locks that report it there.
NOTIFICATION_EVENTS: Final[Mapping[tuple[str, str], tuple[EntryKind, EntryMethod]]] = {
    (ACCESS_CONTROL, "Manual_lock_operation"): (EntryKind.LOCKED, EntryMethod.MANUAL),
    (ACCESS_CONTROL, "Manual_unlock_operation"): (EntryKind.UNLOCKED, EntryMethod.MANUAL),
    (ACCESS_CONTROL, "RF_lock_operation"): (EntryKind.LOCKED, EntryMethod.REMOTE),
    (ACCESS_CONTROL, "RF_unlock_operation"): (EntryKind.UNLOCKED, EntryMethod.REMOTE),
    (ACCESS_CONTROL, "Keypad_lock_operation"): (EntryKind.LOCKED, EntryMethod.KEYCODE),
    (ACCESS_CONTROL, "Keypad_unlock_operation"): (EntryKind.UNLOCKED, EntryMethod.KEYCODE),
    (ACCESS_CONTROL, "Auto_lock_locked_operation"): (EntryKind.LOCKED, EntryMethod.AUTOMATIC),
    (ACCESS_CONTROL, "Lock_operation_with_User_Code"): (EntryKind.LOCKED, EntryMethod.KEYCODE),
    (ACCESS_CONTROL, "Unlock_operation_with_User_Code"): (
        EntryKind.UNLOCKED,
        EntryMethod.KEYCODE,
    ),
    (ACCESS_CONTROL, "Manually_enter_user_access_code_exceeds_code_limit"): (
        EntryKind.ACCESS_DENIED,
        EntryMethod.KEYCODE,
    ),
    (ACCESS_CONTROL, "Unlock_by_RF_with_invalid_user_code"): (
        EntryKind.ACCESS_DENIED,
        EntryMethod.REMOTE,
    ),
    (ACCESS_CONTROL, "Locked_by_RF_with_invalid_user_code"): (
        EntryKind.ACCESS_DENIED,
        EntryMethod.REMOTE,
    ),
    ("Home_Security", "Tampering_invalid_code"): (EntryKind.ACCESS_DENIED, EntryMethod.KEYCODE),
}
#: The event parameters naming the user: a User Code report's (keypad lock/unlock), or the
#: named value of "Lock/Unlock operation with User Code".
_USER_KEYS: Final = ("userId", "user ID")
#: Door Lock CC ``currentMode`` (zwave-js's DoorLockMode): 255 secured; unsecured, with or
#: without timeout, inside or outside handle; 254 unknown is neither.
_SECURED: Final = 0xFF
_UNSECURED: Final = frozenset({0x00, 0x01, 0x10, 0x11, 0x20, 0x21})

STATUS_AVAILABLE: Final = 0
STATUS_ENABLED: Final = 1
STATUS_DISABLED: Final = 2


class Missing:
    """The type of :data:`MISSING`: a value topic without ``value`` (never read)."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one node under prefix ``base`` on gateway ``gateway``.

    ``node`` is the node's topic level: its name, ``nodeID_<id>``, or the bare id when node
    names are off in Z-Wave JS UI; after its location when Z-Wave JS UI does not ignore it.
    """

    base: str
    node: str
    node_id: int
    gateway: str
    style: Literal["valueid", "named"] = "valueid"

    @classmethod
    def for_node(
        cls,
        base: str,
        node_id: int,
        gateway: str,
        *,
        node_name: str | None = None,
        style: Literal["valueid", "named"] = "valueid",
        node_names: bool = True,
        location: str | None = None,
    ) -> Topics:
        """The node's topics as Z-Wave JS UI names them (its ``Gateway.nodeTopic``): with
        ValueID topics and "use node names" off (``node_names``) the bare id, else the node's
        name or ``nodeID_<id>``; behind its ``location`` when "ignore location" is off."""
        if style == "valueid" and not node_names:
            node = str(node_id)
        else:
            node = topic_level(node_name) if node_name else f"nodeID_{node_id}"
        if location:
            node = f"{topic_level(location)}/{node}"
        return cls(base, node, node_id, gateway, style)

    @property
    def _values(self) -> str:
        if self.style == "named":
            return f"{self.base}/{self.node}/user_code/endpoint_0"
        return f"{self.base}/{self.node}/{CODE_CLASS}/0"

    def value(self, prop: Property, slot: int) -> str:
        return f"{self._values}/{prop}/{slot}"

    def user_code(self, slot: int) -> str:
        return self.value("userCode", slot)

    def user_id_status(self, slot: int) -> str:
        return self.value("userIdStatus", slot)

    @property
    def values_filter(self) -> str:
        """One subscription for every value topic of the User Code CC of this node."""
        return f"{self._values}/+/+"

    def parse_value_topic(self, topic: str) -> tuple[Property, int] | None:
        """(property, slot) of a value topic of this node, or None for any other topic."""
        prefix = f"{self._values}/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix) :].split("/")
        slot = decimal_key(rest[1]) if len(rest) == 2 else None
        if not slot:  # None, or 0: not a slot
            return None
        prop = next((p for p in PROPERTIES if p == rest[0]), None)
        return None if prop is None else (prop, slot)

    @property
    def node_status(self) -> str:
        return f"{self.base}/{self.node}/status"

    @property
    def _notifications(self) -> str:
        if self.style == "named":
            return f"{self.base}/{self.node}/notification/endpoint_0"
        return f"{self.base}/{self.node}/{NOTIFICATION_CLASS}/0"

    def notification(self, notification_type: str, key: str) -> str:
        """A Notification CC value or event: ``Access_Control``, ``Keypad_unlock_operation``."""
        return f"{self._notifications}/{notification_type}/{key}"

    @property
    def keypad_unlock(self) -> str:
        return self.notification(ACCESS_CONTROL, "Keypad_unlock_operation")

    @property
    def notifications_filter(self) -> str:
        """One subscription for every Notification CC value and event of this node."""
        return f"{self._notifications}/+/+"

    def parse_notification_topic(self, topic: str) -> tuple[str, str] | None:
        """(notification type, event or variable) of a Notification CC topic of this node."""
        prefix = f"{self._notifications}/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix) :].split("/")
        return (rest[0], rest[1]) if len(rest) == 2 else None

    @property
    def door_lock_mode(self) -> str:
        """The Door Lock CC's ``currentMode`` value topic."""
        if self.style == "named":
            return f"{self.base}/{self.node}/door_lock/endpoint_0/currentMode"
        return f"{self.base}/{self.node}/{DOOR_LOCK_CLASS}/0/currentMode"

    @property
    def _client(self) -> str:
        return f"{self.base}/_CLIENTS/ZWAVE_GATEWAY-{self.gateway}"

    @property
    def gateway_status(self) -> str:
        return f"{self._client}/status"

    @property
    def driver_status(self) -> str:
        return f"{self.base}/driver/status"

    def api_request(self, api: str) -> str:
        return f"{self._client}/api/{api}/set"

    def api_reply(self, api: str) -> str:
        return f"{self._client}/api/{api}"


_UNSAFE: Final = re.compile(r"[^A-Za-z0-9\-_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff/]")


def topic_level(text: str) -> str:
    """A node name or location as Z-Wave JS UI puts it in a topic (its ``sanitizeTopic``):
    whitespace becomes ``_``, characters other than letters, digits, ``-``, ``_`` and ``/`` are
    dropped (a ``/`` in a location stays, and makes two levels)."""
    return _UNSAFE.sub("", re.sub(r"\s", "_", text))


# -- parsing helpers --------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- value topics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueReport:
    """A parsed value topic: ``value`` is :data:`MISSING` when zwave-js never read it."""

    value: object
    time: int | None = None


def parse_value(payload: bytes | str) -> ValueReport:
    raw = _object(payload)
    time = raw.get("time")
    return ValueReport(
        value=raw.get("value", MISSING),
        time=time if _is_int(time) else None,
    )


def value_payload(value: object, time_ms: int) -> JsonObject:
    """A value topic as Z-Wave JS UI publishes it; ``MISSING`` leaves ``value`` out."""
    if value is MISSING:
        return {"time": time_ms}
    return {"time": time_ms, "value": value}


def set_payload(code: str) -> JsonObject:
    """A code to write: always a JSON string (a bare number would be refused or lose zeros)."""
    return {"value": code}


def clear_payload() -> JsonObject:
    return {"value": STATUS_AVAILABLE}


def parse_set_request(payload: bytes | str) -> object:
    """The ``value`` of a ``.../set`` message (any JSON type); PayloadError without one."""
    raw = _object(payload)
    if "value" not in raw:
        raise PayloadError("value: missing")
    return raw["value"]


def is_masked(code: str) -> bool:
    """A code the lock will not reveal: all ``*`` or all zeros."""
    return bool(code) and (set(code) == {"*"} or set(code) == {"0"})


def _code_text(value: object) -> str | None:
    """A userCode value as text without its padding (trailing NULs or spaces, as some locks
    report), a Buffer (``{"type": "Buffer", "data": [...]}``, for non-ASCII codes) decoded;
    None when it is not text at all."""
    if isinstance(value, dict) and value.get("type") == "Buffer":
        data = value.get("data")
        if isinstance(data, list) and all(_is_int(b) and 0 <= b < 256 for b in data):
            value = bytes(data).decode("latin-1")
        else:
            return None
    if _is_int(value):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value.rstrip("\x00 ").lstrip("\x00")


def normalize_code(value: object) -> str | Unreadable | None:
    """A userCode value as a PIN, None (empty), or OCCUPIED (masked / not readable as digits)."""
    code = _code_text(value)
    if code is None:
        return Unreadable.OCCUPIED
    if not code:
        return None
    if is_masked(code) or not (code.isascii() and code.isdigit()):
        return Unreadable.OCCUPIED
    return code


#: The longest userCode taken, padding included (zwave-js pads a code to the lock's length).
MAX_RAW_CODE: Final = 4 * MAX_PIN_LENGTH


def check_value(
    prop: Property, value: object, field: str, code_lengths: tuple[int, int] | None = None
) -> object:
    """``value`` if it is within bounds (drivers/bounds.py) for ``prop``, else ``PayloadError``.

    ``userIdStatus``: a number 0-255. ``userCode``: at most :data:`MAX_RAW_CODE` characters
    (or Buffer bytes), at most ``MAX_PIN_LENGTH`` without padding, and a readable PIN within
    ``code_lengths`` when known. A masked code or one that is not digits stays what it was
    (occupied but unreadable); never read (:data:`MISSING`) and null are taken as they are.
    """
    if value is MISSING or value is None:
        return value
    if prop == "userIdStatus":
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255):
            raise PayloadError(f"{field}: expected a status number 0-255")
        return value
    raw = value.get("data") if isinstance(value, dict) and value.get("type") == "Buffer" else value
    if isinstance(raw, dict | list | str) and len(raw) > MAX_RAW_CODE:
        raise PayloadError(f"{field}: {len(raw)} characters exceed the limit of {MAX_RAW_CODE}")
    if isinstance(value, dict | list) and _code_text(value) is None:
        raise PayloadError(f"{field}: expected a code (a string, or a Buffer of bytes)")
    code = normalize_code(value)
    text = _code_text(value) or ""
    if isinstance(code, str):
        check_pin(code, field, code_lengths)
    elif len(text) > MAX_PIN_LENGTH:
        raise PayloadError(
            f"{field}: a code of {len(text)} characters exceeds the limit of {MAX_PIN_LENGTH}"
        )
    return value


def slot_value(status: object, code: object) -> SlotValue:
    """What a slot holds, from its userIdStatus and userCode values (either may be MISSING).

    Never read -> UNKNOWN; available -> empty; a masked or disabled code -> OCCUPIED (it is there,
    but it is not a PIN the gateway can rely on); enabled with a readable code -> the PIN.
    """
    if status == STATUS_AVAILABLE and _is_int(status):
        return None
    if code is MISSING:
        return Unreadable.UNKNOWN
    pin = normalize_code(code)
    if status is MISSING:
        return pin  # only the code was reported: take it as it stands
    if status == STATUS_DISABLED and _is_int(status):
        return Unreadable.OCCUPIED if pin is not None else Unreadable.UNKNOWN
    if status == STATUS_ENABLED and _is_int(status):
        # Enabled but empty is a transient (the status arrives before the code): unknown.
        return Unreadable.UNKNOWN if pin is None else pin
    return Unreadable.UNKNOWN


# -- door operations ----------------------------------------------------------------------------


def notification_entry(notification_type: str, key: str, payload: bytes | str) -> EntryEvent | None:
    """The door operation a Notification CC event reports, or None for any other notification
    (a state variable such as ``Lock_state``, a code added). The slot is the user the keypad
    operation's parameters name, when they name one within bounds; ``PayloadError`` when the
    payload is no ``{"time", "value"}`` object."""
    raw = _object(payload)
    found = NOTIFICATION_EVENTS.get((notification_type, key))
    if found is None:
        return None
    kind, method = found
    slot = None
    parameters = raw.get("value")
    names_user = method is EntryMethod.KEYCODE and kind is not EntryKind.ACCESS_DENIED
    if names_user and isinstance(parameters, dict):
        user = next((parameters[k] for k in _USER_KEYS if k in parameters), None)
        if isinstance(user, int) and not isinstance(user, bool) and 1 <= user <= MAX_SLOTS:
            slot = user
    return EntryEvent(kind, method, slot)


def door_lock_kind(payload: bytes | str) -> EntryKind | None:
    """Locked or unlocked, from the Door Lock CC's ``currentMode`` value topic; None when it
    says neither (unknown, never read) or is no mode at all."""
    value = parse_value(payload).value
    if not _is_int(value):
        return None
    if value == _SECURED:
        return EntryKind.LOCKED
    return EntryKind.UNLOCKED if value in _UNSECURED else None


def notification_payload(time_ms: int, parameters: object = MISSING) -> JsonObject:
    """A Notification CC event as Z-Wave JS UI publishes it: its parameters as ``value``, no
    ``value`` at all for an event without parameters."""
    return value_payload(parameters, time_ms)


# -- status topics ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeStatus:
    value: bool
    status: str

    @property
    def alive(self) -> bool:
        return self.value and self.status != "Dead"


def parse_node_status(payload: bytes | str) -> NodeStatus:
    raw = _object(payload)
    value, status = raw.get("value"), raw.get("status", "Unknown")
    if not isinstance(value, bool):
        raise PayloadError("value: expected true or false")
    if not isinstance(status, str):
        raise PayloadError("status: expected a string")
    return NodeStatus(value, status)


def node_status_payload(node_id: int, alive: bool, time_ms: int) -> JsonObject:
    return {
        "time": time_ms,
        "value": alive,
        "status": "Alive" if alive else "Dead",
        "nodeId": node_id,
    }


def parse_gateway_status(payload: bytes | str) -> bool:
    """``{"value": bool}``; a bare ``true``/``false`` is accepted too."""
    raw = _json(payload)
    value = raw.get("value") if isinstance(raw, dict) else raw
    if not isinstance(value, bool):
        raise PayloadError("value: expected true or false")
    return value


def gateway_status_payload(online: bool, time_ms: int) -> JsonObject:
    return {"value": online, "time": time_ms}


# -- the request/response API -----------------------------------------------------------------


def _cc(node_id: int) -> JsonObject:
    return {"nodeId": node_id, "commandClass": CODE_CLASS, "endpoint": 0}


def get_args(node_id: int, slot: int) -> list[Any]:
    """``sendCommand`` args reading one slot: the reply's result is {userIdStatus, userCode}."""
    return [_cc(node_id), "get", [slot]]


def users_count_args(node_id: int) -> list[Any]:
    return [_cc(node_id), "getUsersCount", []]


def poll_value_args(node_id: int, prop: Property, slot: int) -> list[Any]:
    return [{**_cc(node_id), "property": prop, "propertyKey": slot}]


def api_request_payload(args: list[Any], request_id: str | None = None) -> JsonObject:
    payload: JsonObject = {"args": args}
    if request_id is not None:
        payload[API_ID_KEY] = request_id
    return payload


def parse_api_request(payload: bytes | str) -> tuple[list[Any], Mapping[str, Any]]:
    """(args, the whole request to echo as ``origin``)."""
    raw = _object(payload)
    args = raw.get("args", [])
    if not isinstance(args, list):
        raise PayloadError("args: expected a list")
    return args, raw


def api_reply_payload(
    success: bool, result: object, args: list[Any], origin: Mapping[str, Any], message: str = ""
) -> JsonObject:
    return {
        "success": success,
        "message": message or ("Success zwave api call" if success else "Error"),
        "result": result,
        "args": args,
        "origin": dict(origin),
    }


@dataclass(frozen=True, slots=True)
class ApiReply:
    success: bool
    message: str
    result: object
    args: list[Any]
    request_id: str | None  # ours, from ``origin``; None for someone else's request


def parse_api_reply(payload: bytes | str) -> ApiReply:
    raw = _object(payload)
    success = raw.get("success")
    if not isinstance(success, bool):
        raise PayloadError("success: expected true or false")
    message = raw.get("message", "")
    args = raw.get("args", [])
    origin = raw.get("origin")
    request_id = origin.get(API_ID_KEY) if isinstance(origin, dict) else None
    return ApiReply(
        success=success,
        message=message if isinstance(message, str) else "",
        result=raw.get("result"),
        args=args if isinstance(args, list) else [],
        request_id=request_id if isinstance(request_id, str) else None,
    )


def parse_user_get_result(result: object, code_lengths: tuple[int, int] | None = None) -> SlotValue:
    """The result of ``sendCommand get``: ``{"userIdStatus": 1, "userCode": "0123"}``, each
    value within bounds (:func:`check_value`)."""
    if not isinstance(result, dict):
        raise PayloadError("result: expected an object with userIdStatus and userCode")
    status = result.get("userIdStatus", MISSING)
    code = result.get("userCode", MISSING)
    if status is MISSING and code is MISSING:
        raise PayloadError("result: neither userIdStatus nor userCode")
    check_value("userIdStatus", status, "result.userIdStatus")
    check_value("userCode", code, "result.userCode", code_lengths)
    return slot_value(status, code)
