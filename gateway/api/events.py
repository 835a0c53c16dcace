"""``events/list``: the stored event history, for clients that were offline or start fresh.

A client starts with ``since`` and then pages with ``after_event_id`` set to the last event it
got; paging by event rather than by time gives every event exactly once, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.api.errors import ApiError, invalid
from gateway.api.params import Integer, ListOf, UuidOf, access_code_id, device_id, param, timestamp
from gateway.api.router import Endpoint
from gateway.model import EventType, Json
from gateway.schema import Invalid
from gateway.store import Tx
from gateway.store import events as store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
EVENT_TYPES = frozenset(t.value for t in EventType)
#: Echoed names are cut short: the message also goes to the log.
MAX_ECHO = 100


event_id = UuidOf("an event id")


def event_type(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if value not in EVENT_TYPES:
        shown = value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "..."
        raise Invalid(f"unknown event type '{shown}'")
    return value


def event_types(value: object) -> list[str]:
    parsed = ListOf(event_type, 10 * len(EVENT_TYPES))(value)
    if not parsed:
        raise Invalid("must name at least one event type (leave it out for all)")
    return parsed


@dataclass(frozen=True, slots=True, kw_only=True)
class EventQuery:
    since: datetime | None = param(timestamp, default=None)
    after_event_id: str | None = param(event_id, default=None)
    device_id: str | None = param(device_id, default=None)
    access_code_id: str | None = param(access_code_id, default=None)
    event_types: list[str] | None = param(event_types, default=None)
    limit: int = param(Integer(1, MAX_LIMIT), default=DEFAULT_LIMIT)


def list_events(tx: Tx, params: EventQuery) -> Json:
    since = params.since
    after = params.after_event_id
    if since is None and after is None:
        raise ApiError("invalid_input", "since or after_event_id is required (one of the two)")
    if since is not None and after is not None:
        raise ApiError(
            "invalid_input", "since and after_event_id cannot be used together; give one"
        )
    try:
        events = store.list_events(
            tx,
            since=since,
            after_event_id=after,
            device_id=params.device_id,
            access_code_id=params.access_code_id,
            event_types=params.event_types,
            limit=params.limit,
        )
    except LookupError:
        raise invalid("after_event_id", f"no event '{after}' on this gateway") from None
    return {"events": events}


ENDPOINTS = (Endpoint.typed("events/list", EventQuery, list_events),)
