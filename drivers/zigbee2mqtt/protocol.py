"""Payloads and topics of a lock behind Zigbee2MQTT, shared by driver and simulator.

Pure functions and dataclasses, no I/O. Zigbee2MQTT numbers users from 0; these functions speak
Zigbee2MQTT's ``user`` numbers and leave the translation to gateway slots (``user + 1``) to their
callers. Parsers are lenient about what they do not know (a state message carries many unrelated
attributes) and strict about the shape of what they use: a wrong shape raises ``PayloadError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from drivers.base import SlotValue, Unreadable
from drivers.bounds import MAX_SLOTS, check_pin, decimal_key, shown
from drivers.payloads import PayloadError, parse_availability
from drivers.payloads import json_object as _object

__all__ = [
    "PROGRAMMING_ACTIONS",
    "STATUSES",
    "BadRequest",
    "JsonObject",
    "PayloadError",
    "PinRequest",
    "StateReport",
    "Status",
    "Topics",
    "UserEntry",
    "availability_payload",
    "clear_payload",
    "logging_error_payload",
    "parse_availability",
    "parse_get",
    "parse_logging_error",
    "parse_set",
    "parse_state",
    "read_all_payload",
    "read_payload",
    "set_payload",
    "state_payload",
    "user_entry_payload",
]

JsonObject = dict[str, Any]
Status = Literal["available", "enabled", "disabled"]
STATUSES: Final[tuple[Status, ...]] = ("available", "enabled", "disabled")
#: Actions saying a user's PIN was changed (at the keypad or by anyone else).
PROGRAMMING_ACTIONS: Final = frozenset({"pin_code_added", "pin_code_deleted", "pin_code_changed"})


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


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One entry of ``users`` in the state message; ``pin_code`` only with ``expose_pin``."""

    status: Status
    pin_code: str | None = None

    def value(self) -> SlotValue:
        """What the gateway's slot table makes of this entry.

        ``available`` is empty. ``enabled`` is the PIN, or occupied-but-unreadable when the PIN
        is not exposed. ``disabled`` holds a code that does not open: occupied, never ours, so
        it is neither overwritten as free nor taken for a code the gateway set.
        """
        if self.status == "available":
            return None
        if self.status == "enabled" and self.pin_code is not None:
            return self.pin_code
        return Unreadable.OCCUPIED


@dataclass(frozen=True, slots=True)
class StateReport:
    """A parsed state message ``B/N``: the (possibly stale) ``users`` cache and any action."""

    users: Mapping[int, UserEntry]
    action: str | None = None
    action_user: int | None = None

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
    if status not in STATUSES:
        raise PayloadError(f"users.{user}.status: expected one of {', '.join(STATUSES)}")
    pin = raw.get("pin_code")
    if pin is not None and not isinstance(pin, str):
        # A number would have lost its leading zeros: not a PIN one can trust.
        raise PayloadError(f"users.{user}.pin_code: expected a string")
    if pin:  # an empty slot reads "" with expose_pin
        check_pin(pin, f"users.{user}.pin_code", code_lengths)
    return UserEntry(status=status, pin_code=pin or None)


# -- Zigbee2MQTT -> gateway ---------------------------------------------------------------------


def parse_state(
    payload: bytes | str,
    *,
    capacity: int | None = None,
    code_lengths: tuple[int, int] | None = None,
) -> StateReport:
    """The device's state message. Entries of ``users`` may be stale: see the driver.

    Within bounds (drivers/bounds.py) or ``PayloadError`` for all of it. Users beyond the
    lock's ``capacity`` (its configured ``slots``) are left out unread: Zigbee2MQTT keeps every
    user anyone ever read in its cache, so they are not a lie, just not the gateway's; a user
    number beyond the ceiling of slots, or a PIN that is not one, is.
    """
    raw = _object(payload)
    users_raw = raw.get("users", {})
    if users_raw is None:
        users_raw = {}
    if not isinstance(users_raw, dict):
        raise PayloadError("users: expected an object of user number -> entry")
    users: dict[int, UserEntry] = {}
    for key, value in users_raw.items():
        user = _user_key(key)
        if capacity is None or user < capacity:
            users[user] = _entry(user, value, code_lengths)
    action = raw.get("action")
    if action is not None and not isinstance(action, str):
        raise PayloadError("action: expected a string")
    action_user = raw.get("action_user")
    if action_user is not None:
        action_user = _user(action_user, "action_user")
    return StateReport(users=users, action=action or None, action_user=action_user)


def parse_logging_error(payload: bytes | str, friendly_name: str) -> str | None:
    """The message of an error line on ``B/bridge/logging`` about this device, else None."""
    try:
        raw = _object(payload)
    except PayloadError:
        return None
    message = raw.get("message")
    if raw.get("level") != "error" or not isinstance(message, str):
        return None
    return message if f"'{friendly_name}'" in message else None


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
    if pin is None:
        return {"status": "available"}
    if expose_pin:
        return {"status": "enabled", "pin_code": pin}
    return {"status": "enabled"}


def state_payload(
    users: Mapping[int, JsonObject],
    *,
    action: str | None = None,
    action_user: int | None = None,
    **attributes: Any,
) -> JsonObject:
    payload: JsonObject = dict(attributes)
    payload["users"] = {str(user): dict(entry) for user, entry in sorted(users.items())}
    if action is not None:
        payload["action"] = action
        if action_user is not None:
            payload["action_user"] = action_user
    return payload


def logging_error_payload(friendly_name: str, verb: str, detail: str) -> JsonObject:
    return {
        "level": "error",
        "message": f"Publish '{verb}' 'pin_code' to '{friendly_name}' failed: '{detail}'",
    }
