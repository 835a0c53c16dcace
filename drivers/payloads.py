"""Payload pieces every lock protocol shares: the error for a malformed payload, a size-bounded
JSON reader, and the ``{"state": "online"|"offline"}`` availability that native locks and
Zigbee2MQTT both publish."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

#: The largest message from a lock or its stack that is parsed at all (see drivers/bounds.py).
#: The heaviest a driver reads in captured traffic is far below it: a Z-Wave JS UI value topic
#: is ~60 bytes and an API reply a few hundred; a Zigbee2MQTT state message with 250 users
#: cached and PINs exposed is about 13 KiB.
MAX_PAYLOAD_BYTES: Final = 64 * 1024


class PayloadError(ValueError):
    """A payload of the wrong shape; the message starts with the field at fault."""


def check_payload_size(payload: bytes | str) -> None:
    """Refuse a payload too large to be a report, before any time is spent parsing it."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload: {size} bytes exceed the limit of {MAX_PAYLOAD_BYTES}")


def json_value(payload: bytes | str) -> Any:
    """Any JSON value; a payload over :data:`MAX_PAYLOAD_BYTES` is refused unparsed."""
    check_payload_size(payload)
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise PayloadError(f"payload: not valid JSON ({exc})") from None


def json_object(payload: bytes | str) -> Mapping[str, Any]:
    value = json_value(payload)
    if not isinstance(value, dict):
        raise PayloadError(f"payload: expected a JSON object, got {type(value).__name__}")
    return value


def parse_availability(payload: bytes | str) -> bool:
    """True for online: ``{"state": "online"|"offline"}``, or the bare word older firmware
    (and Zigbee2MQTT 1.x) sends."""
    check_payload_size(payload)
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    if text.strip() in ("online", "offline"):
        return text.strip() == "online"
    state = json_object(payload).get("state")
    if state in ("online", "offline"):
        return bool(state == "online")
    raise PayloadError("state: expected 'online' or 'offline'")
