"""Payload pieces every lock protocol shares: the error for a malformed payload, a JSON object
reader, and the ``{"state": "online"|"offline"}`` availability that native locks and
Zigbee2MQTT both publish."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class PayloadError(ValueError):
    """A payload of the wrong shape; the message starts with the field at fault."""


def json_object(payload: bytes | str) -> Mapping[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise PayloadError(f"payload: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise PayloadError(f"payload: expected a JSON object, got {type(value).__name__}")
    return value


def parse_availability(payload: bytes | str) -> bool:
    """True for online: ``{"state": "online"|"offline"}``, or the bare word older firmware
    (and Zigbee2MQTT 1.x) sends."""
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    if text.strip() in ("online", "offline"):
        return text.strip() == "online"
    state = json_object(payload).get("state")
    if state in ("online", "offline"):
        return bool(state == "online")
    raise PayloadError("state: expected 'online' or 'offline'")
