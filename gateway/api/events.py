"""``events/list``: the stored event history, for clients that were offline or start fresh.

A client starts with ``since`` and then pages with ``after_event_id`` set to the last event it
got; paging by event rather than by time gives every event exactly once, in order.
"""

from __future__ import annotations

from typing import Any

from gateway.api.errors import ApiError, invalid
from gateway.api.params import Field, Integer, ListOf, UuidOf, access_code_id, device_id, timestamp
from gateway.api.router import Endpoint
from gateway.model import EventType, Json
from gateway.store import Tx
from gateway.store import events as store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
EVENT_TYPES = frozenset(t.value for t in EventType)
#: Echoed names are cut short: the message also goes to the log.
MAX_ECHO = 100


event_id = UuidOf("an event id")


def event_type(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if value not in EVENT_TYPES:
        shown = value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "..."
        raise invalid(name, f"unknown event type '{shown}'")
    return value


def event_types(name: str, value: Any) -> list[str]:
    parsed: list[str] = ListOf(event_type, 10 * len(EVENT_TYPES))(name, value)
    if not parsed:
        raise invalid(name, "must name at least one event type (leave it out for all)")
    return parsed


async def list_events(tx: Tx, params: dict[str, Any]) -> Json:
    since = params.get("since")
    after = params.get("after_event_id")
    if since is None and after is None:
        raise ApiError("invalid_input", "since or after_event_id is required (one of the two)")
    if since is not None and after is not None:
        raise ApiError(
            "invalid_input", "since and after_event_id cannot be used together; give one"
        )
    try:
        events = await store.list_events(
            tx,
            since=since,
            after_event_id=after,
            device_id=params.get("device_id"),
            access_code_id=params.get("access_code_id"),
            event_types=params.get("event_types"),
            limit=params.get("limit", DEFAULT_LIMIT),
        )
    except LookupError:
        raise invalid("after_event_id", f"no event '{after}' on this gateway") from None
    return {"events": events}


ENDPOINTS = (
    Endpoint(
        "events/list",
        {
            "since": Field(timestamp),
            "after_event_id": Field(event_id),
            "device_id": Field(device_id),
            "access_code_id": Field(access_code_id),
            "event_types": Field(event_types),
            "limit": Field(Integer(1, MAX_LIMIT)),
        },
        list_events,
    ),
)
