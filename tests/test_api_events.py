"""``events/list`` through the real router and a real database (no broker needed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

import pytest

from gateway.api.events import ENDPOINTS
from gateway.api.router import Router
from gateway.clock import ManualClock, isoformat
from gateway.model import EventType, Json
from gateway.store import Store
from gateway.store.events import list_events

PREFIX = "lockgate/test-hub"
CODE_A = str(uuid.UUID(int=0xA))
CODE_B = str(uuid.UUID(int=0xB))


@dataclass
class Site:
    store: Store
    clock: ManualClock
    router: Router

    async def call(self, **params: Any) -> Json:
        reply = await self.router.handle(
            f"{PREFIX}/api/events/list", json.dumps(params).encode(), response_topic="x"
        )
        assert reply is not None
        return reply.body

    async def ok(self, **params: Any) -> list[Json]:
        body = await self.call(**params)
        assert body["ok"] is True, body
        events: list[Json] = body["events"]
        return events

    async def refused(self, **params: Any) -> str:
        body = await self.call(**params)
        assert body["ok"] is False, body
        assert body["error"]["type"] == "invalid_input", body
        message: str = body["error"]["message"]
        return message

    async def emit(
        self,
        event_type: EventType,
        device_id: str | None = "front_door",
        access_code_id: str | None = None,
        **fields: Any,
    ) -> Json:
        event = await self.store.write(
            lambda tx: tx.emit(event_type, device_id, access_code_id, **fields)
        )
        return event.to_json()


@pytest.fixture
async def site(tmp_path: Any) -> AsyncIterator[Site]:
    clock = ManualClock()
    store = await Store.open(tmp_path / "lockgate.db", clock)
    try:
        yield Site(store, clock, Router(store, PREFIX, ENDPOINTS))
    finally:
        await store.close()


def ids(events: list[Json]) -> list[str]:
    return [e["event_id"] for e in events]


async def emit_mixed(site: Site) -> list[Json]:
    """Events on two devices and two codes, of several types, a second apart."""
    plan: list[tuple[EventType, str, str | None]] = [
        (EventType.DEVICE_CONNECTED, "front_door", None),
        (EventType.DEVICE_CONNECTED, "back_door", None),
        (EventType.CODE_CREATED, "front_door", CODE_A),
        (EventType.CODE_CREATED, "back_door", CODE_B),
        (EventType.CODE_SET, "front_door", CODE_A),
        (EventType.CODE_SET, "back_door", CODE_B),
        (EventType.DEVICE_DISCONNECTED, "front_door", None),
        (EventType.CODE_CHANGED, "front_door", CODE_A),
        (EventType.CODE_DELETED, "back_door", CODE_B),
    ]
    emitted = []
    for event_type, device, code in plan:
        emitted.append(await site.emit(event_type, device, code))
        site.clock.advance(1)
    return emitted


async def test_reply_carries_the_stored_event_bodies(site: Site) -> None:
    start = site.clock.now()
    first = await site.emit(EventType.CODE_SET, "front_door", CODE_A, code="4821")
    second = await site.emit(EventType.DEVICE_ERROR_ADDED, "back_door", error_code="x")
    body = await site.call(since=isoformat(start), request_id="r7")
    assert body == {"ok": True, "request_id": "r7", "events": [first, second]}
    assert first["code"] == "4821"
    assert first["access_code_id"] == CODE_A
    assert "access_code_id" not in second


@pytest.mark.parametrize("start", ["since", "after_event_id"])
async def test_paging_gives_every_event_once_in_order(site: Site, start: str) -> None:
    before = await site.emit(EventType.DEVICE_CONNECTED)
    site.clock.advance(60)
    since = site.clock.now()
    emitted = []
    for i in range(250):
        emitted.append(await site.emit(EventType.CODE_CHANGED, access_code_id=CODE_A, n=i))
        if i % 7 == 0:
            site.clock.advance(0.0004)  # several events share a millisecond
    first: dict[str, Any] = (
        {"since": isoformat(since)} if start == "since" else {"after_event_id": before["event_id"]}
    )
    pages = [await site.ok(limit=100, **first)]
    while pages[-1]:
        pages.append(await site.ok(limit=100, after_event_id=pages[-1][-1]["event_id"]))
    assert [len(p) for p in pages] == [100, 100, 50, 0]
    seen = [e for page in pages for e in page]
    assert ids(seen) == ids(emitted)
    assert [e["n"] for e in seen] == list(range(250))


async def test_events_added_while_paging_are_seen_once(site: Site) -> None:
    since = site.clock.now()
    emitted = [await site.emit(EventType.CODE_CHANGED, n=i) for i in range(15)]
    seen = await site.ok(since=isoformat(since), limit=10)
    emitted += [await site.emit(EventType.CODE_CHANGED, n=i) for i in range(15, 20)]
    while True:
        page = await site.ok(after_event_id=seen[-1]["event_id"], limit=10)
        if not page:
            break
        seen += page
    assert ids(seen) == ids(emitted)


async def test_default_limit_is_100(site: Site) -> None:
    since = site.clock.now()
    for _ in range(101):
        await site.emit(EventType.DEVICE_CONNECTED)
    assert len(await site.ok(since=isoformat(since))) == 100
    assert len(await site.ok(since=isoformat(since), limit=1000)) == 101
    assert len(await site.ok(since=isoformat(since), limit=1)) == 1


async def test_since_is_inclusive_and_millisecond_exact(site: Site) -> None:
    await site.emit(EventType.DEVICE_CONNECTED)
    site.clock.advance(1)
    at = site.clock.now()
    on_time = await site.emit(EventType.DEVICE_DISCONNECTED)
    site.clock.advance(0.001)
    later = await site.emit(EventType.DEVICE_CONNECTED)
    assert ids(await site.ok(since=isoformat(at))) == ids([on_time, later])
    # Any zone is accepted; the instant is what counts.
    local = at.astimezone(timezone(timedelta(hours=-5, minutes=-30))).isoformat()
    assert ids(await site.ok(since=local)) == ids([on_time, later])
    # Past the millisecond it was stamped with, the event no longer qualifies.
    just_after = (at + timedelta(microseconds=500)).isoformat()
    assert ids(await site.ok(since=just_after)) == ids([later])


async def test_after_event_id_ignores_the_filters_for_its_anchor(site: Site) -> None:
    emitted = await emit_mixed(site)
    anchor = emitted[1]  # back_door's event, used as a cursor for a front_door query
    page = await site.ok(after_event_id=anchor["event_id"], device_id="front_door")
    assert ids(page) == ids([e for e in emitted[2:] if e["device_id"] == "front_door"])
    # Upper case uuids are the same event.
    page = await site.ok(after_event_id=anchor["event_id"].upper(), device_id="front_door")
    assert ids(page) == ids([e for e in emitted[2:] if e["device_id"] == "front_door"])


@pytest.mark.parametrize(
    "filters",
    [
        {"device_id": "front_door"},
        {"device_id": "back_door"},
        {"access_code_id": CODE_A},
        {"access_code_id": CODE_B.upper()},
        {"event_types": ["access_code.created"]},
        {"event_types": ["access_code.set_on_device", "device.connected", "device.connected"]},
        {"device_id": "front_door", "event_types": ["device.connected", "device.disconnected"]},
        {"access_code_id": CODE_A, "event_types": ["access_code.changed"]},
        {"device_id": "back_door", "access_code_id": CODE_B},
        {"device_id": "back_door", "access_code_id": CODE_A},
        {
            "device_id": "front_door",
            "access_code_id": CODE_A,
            "event_types": ["access_code.created", "access_code.set_on_device"],
        },
    ],
)
async def test_filters_alone_and_combined(site: Site, filters: dict[str, Any]) -> None:
    start = site.clock.now()
    emitted = await emit_mixed(site)

    def wanted(event: Json) -> bool:
        code = filters.get("access_code_id")
        types = filters.get("event_types")
        return (
            filters.get("device_id") in (None, event["device_id"])
            and (code is None or event.get("access_code_id") == code.lower())
            and (types is None or event["event_type"] in types)
        )

    expected = [e for e in emitted if wanted(e)]
    assert expected or filters == {"device_id": "back_door", "access_code_id": CODE_A}
    by_since = await site.ok(since=isoformat(start), **filters)
    assert ids(by_since) == ids(expected)
    # The same through small pages.
    paged = await site.ok(since=isoformat(start), limit=1, **filters)
    while paged and (
        page := await site.ok(after_event_id=paged[-1]["event_id"], limit=1, **filters)
    ):
        paged += page
    assert ids(paged) == ids(expected)


async def test_empty_results_are_empty_lists(site: Site) -> None:
    assert await site.ok(since="2000-01-01T00:00:00Z") == []
    emitted = await emit_mixed(site)
    assert await site.ok(since=isoformat(site.clock.now() + timedelta(days=1))) == []
    assert await site.ok(since="9999-12-31T23:59:59.9999Z") == []
    assert await site.ok(after_event_id=emitted[-1]["event_id"]) == []
    assert await site.ok(since="2000-01-01T00:00:00Z", device_id="garage") == []
    assert await site.ok(since="2000-01-01T00:00:00Z", access_code_id=str(uuid.uuid4())) == []
    assert await site.ok(since="2000-01-01T00:00:00Z", event_types=["device.error_added"]) == []


@pytest.mark.parametrize("limit", [0, -1, 1001, "5", True, 5.0, None, [5]])
async def test_limit_bounds(site: Site, limit: Any) -> None:
    message = await site.refused(since="2030-01-01T00:00:00Z", limit=limit)
    assert message.startswith("limit:")


async def test_neither_since_nor_after_event_id(site: Site) -> None:
    message = await site.refused(device_id="front_door")
    assert "since" in message
    assert "after_event_id" in message


async def test_both_since_and_after_event_id(site: Site) -> None:
    event = await site.emit(EventType.DEVICE_CONNECTED)
    message = await site.refused(since="2030-01-01T00:00:00Z", after_event_id=event["event_id"])
    assert "since" in message
    assert "after_event_id" in message


@pytest.mark.parametrize(
    "since",
    [
        "2030-01-01T12:00:00",  # no zone: refused, not guessed
        "garbage",
        "",
        "2030-13-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before the first representable UTC instant
        1893456000,
        None,
    ],
)
async def test_bad_since(site: Site, since: Any) -> None:
    message = await site.refused(since=since)
    assert message.startswith("since:")


@pytest.mark.parametrize(
    ("event_types", "expected"),
    [
        (["device.connected", "foo"], "event_types[1]: unknown event type 'foo'"),
        (["device.connected", 7], "event_types[1]: must be a string"),
        (["Device.Connected"], "event_types[0]: unknown event type 'Device.Connected'"),
        ("device.connected", "event_types: must be a list"),
        ([], "event_types: must name at least one event type"),
        (["x" * 500], "event_types[0]: unknown event type 'xxx"),
    ],
)
async def test_bad_event_types(site: Site, event_types: Any, expected: str) -> None:
    message = await site.refused(since="2030-01-01T00:00:00Z", event_types=event_types)
    assert message.startswith(expected)
    assert len(message) < 200


async def test_unknown_after_event_id(site: Site) -> None:
    await site.emit(EventType.DEVICE_CONNECTED)
    missing = str(uuid.uuid4())
    message = await site.refused(after_event_id=missing)
    assert message.startswith("after_event_id:")
    assert missing in message


@pytest.mark.parametrize("after", ["abc", 5, "", str(uuid.uuid4())[:-1]])
async def test_malformed_after_event_id(site: Site, after: Any) -> None:
    message = await site.refused(after_event_id=after)
    assert message.startswith("after_event_id:")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"device_id": "a/b"}, "device_id"),
        ({"access_code_id": "front_door"}, "access_code_id"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_filters(site: Site, params: dict[str, Any], field: str) -> None:
    message = await site.refused(since="2030-01-01T00:00:00Z", **params)
    assert message.startswith(f"{field}:")


async def test_store_raises_lookup_error_for_an_unknown_anchor(site: Site) -> None:
    with pytest.raises(LookupError):
        await site.store.read(
            lambda tx: list_events(
                tx,
                since=None,
                after_event_id=str(uuid.uuid4()),
                device_id=None,
                access_code_id=None,
                event_types=None,
                limit=10,
            )
        )


async def test_since_survives_a_clock_that_stepped_back(site: Site) -> None:
    """occurred_at need not grow with seq: since still filters by time, output stays in seq."""
    late = await site.emit(EventType.DEVICE_CONNECTED)
    await site.store.write(
        lambda tx: tx.execute(
            "UPDATE events SET occurred_at = ? WHERE event_id = ?",
            (isoformat(site.clock.now() + timedelta(hours=1)), late["event_id"]),
        )
    )
    stepped_back = await site.emit(EventType.DEVICE_DISCONNECTED)
    site.clock.advance(60)
    since = site.clock.now()
    after = await site.emit(EventType.DEVICE_CONNECTED)
    assert stepped_back["occurred_at"] < isoformat(since)
    assert ids(await site.ok(since=isoformat(since))) == ids([late, after])
