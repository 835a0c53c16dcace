"""Every endpoint, fuzzed from its own parameter declarations (issue 7).

Whatever a client sends, it gets a reply that is strict JSON, either ``ok: true`` or a documented
error other than ``internal_error``; and a refused request changes nothing a client can see.
One broker and one gateway serve the whole run: a site per example would cost seconds each.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api import access_codes, events
from gateway.api.errors import ErrorType
from gateway.api.params import (
    ID_PATTERN,
    Integer,
    ListOf,
    Nullable,
    OneOf,
    Parser,
    Text,
    UuidOf,
    boolean,
    device_id,
    digits,
    timestamp,
    window_timestamp,
)
from gateway.api.router import Endpoint
from gateway.clock import ManualClock, isoformat
from gateway.config import parse_config
from gateway.model import Json
from gateway.mqtt import build_client
from tests.broker import Broker
from tests.conftest import site_dict
from tests.harness import Site, ok, running_site
from tests.helpers import Probe
from tests.test_hostile_requests import Asker

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DEVICES = ("front_door", "back_door")
ERROR_TYPES = frozenset(get_args(ErrorType)) - {"internal_error"}

# -- values, derived from the parsers an endpoint declares -------------------------------------

ODD_STRINGS = st.sampled_from(
    ["", " ", "\x00", "\ud800", "a\udfff", "\uffff", "\u0085", "＄", "٣", "x" * 300, "null"]
)
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | ODD_STRINGS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=1)),
        timezone(-timedelta(hours=1)),
        timezone(timedelta(hours=14)),
    ]
)
TIMESTAMPS = st.one_of(
    # Near the site's clock, in any zone and at any precision: the ones that may succeed.
    st.builds(
        lambda seconds, zone: (NOW + timedelta(seconds=seconds)).astimezone(zone).isoformat(),
        st.floats(-7200, 7200, allow_nan=False),
        ZONES,
    ),
    # Anywhere in years 1 to 9999 (the ends are drawn often), with or without an offset.
    st.builds(
        lambda when, offset: when.isoformat() + offset,
        st.datetimes(),
        st.sampled_from(["Z", "+01:00", "-01:00", "+14:00", "-23:59", ""]),
    ),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",  # fine as written, before year 1 in UTC
            "9999-12-31T23:59:59.999999-01:00",  # after year 9999 in UTC
            "2030-01-01T12:00:00.0000001Z",
            "2030-02-30T00:00:00Z",
            "2030-01-01",
            "now",
        ]
    ),
)


@dataclass
class Known:
    """Ids that exist on the site, so that well-typed requests also reach the handlers."""

    access_code_ids: list[str]


def well_typed(parser: Parser, known: Known) -> st.SearchStrategy[Any]:
    """Values of the type ``parser`` takes, in and around the range it accepts."""
    if isinstance(parser, Integer):
        return st.integers(parser.low - 1, parser.high + 1) | st.integers()
    if isinstance(parser, Text):
        return st.text(max_size=12) | st.just("n" * (parser.max_length + 1))
    if isinstance(parser, ListOf):
        return st.lists(well_typed(parser.item, known), max_size=4) | st.just(
            ["00000000-0000-0000-0000-000000000000"] * (parser.max_items + 1)
        )
    if isinstance(parser, Nullable):
        inner = well_typed(parser.inner, known)
        return st.one_of(st.none(), inner, inner)
    if isinstance(parser, OneOf):
        return st.sampled_from(parser.choices) | st.text(max_size=8)
    if isinstance(parser, UuidOf):
        ids = st.sampled_from(known.access_code_ids)
        return ids | ids.map(str.upper) | st.uuids().map(str) | st.text(max_size=36)
    return BY_FUNCTION[parser]


#: The plain-function parsers. A parser that is in neither place fails the fuzzer at once, so a
#: new kind of parameter cannot go unfuzzed.
BY_FUNCTION: dict[Parser, st.SearchStrategy[Any]] = {
    device_id: st.sampled_from([*DEVICES, "nope", "FRONT_DOOR"])
    | st.from_regex(ID_PATTERN, fullmatch=True)
    | ODD_STRINGS,
    boolean: st.booleans(),
    digits: st.from_regex(r"[0-9]{0,10}", fullmatch=True) | ODD_STRINGS,
    timestamp: TIMESTAMPS,
    window_timestamp: TIMESTAMPS,
    events.event_type: st.sampled_from(sorted(events.EVENT_TYPES)) | st.text(max_size=8),
    events.event_types: st.lists(st.sampled_from(sorted(events.EVENT_TYPES)), max_size=3),
    access_codes.common_code_key: st.sampled_from(["guest-1", "guest-2", ""]) | ODD_STRINGS,
    access_codes.shared_device_ids: st.lists(st.sampled_from([*DEVICES, "nope"]), max_size=3)
    | st.just(["front_door"] * 101),
}


def value_for(parser: Parser, known: Known) -> st.SearchStrategy[Any]:
    """Mostly well typed, sometimes anything at all."""
    typed = well_typed(parser, known)
    return st.one_of(typed, typed, typed, ANY_JSON)


ENVELOPE = {
    "request_id": ANY_JSON,
    "idempotency_key": st.sampled_from(["k-1", "k-2"]) | st.text(max_size=4) | ANY_JSON,
    "reply_to": st.sampled_from(["it/fuzz/elsewhere", "a/+", "", "$x"]) | ODD_STRINGS,
}


@st.composite
def requests(draw: st.DrawFn, endpoints: list[Endpoint], known: Known) -> tuple[str, bytes]:
    """An endpoint (now and then one that does not exist) and a payload for it."""
    endpoint = draw(st.sampled_from(endpoints))
    name = draw(st.sampled_from([endpoint.name] * 19 + ["devices/frobnicate"]))
    body: dict[str, Any] = {}
    for field, spec in endpoint.fields.items():
        # Required fields are usually there, optional ones half the time.
        if draw(st.integers(0, 9)) < (8 if spec.required else 5):
            body[field] = draw(value_for(spec.parse, known))
    for field, values in ENVELOPE.items():
        if draw(st.integers(0, 9)) < 2:
            body[field] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.sampled_from(["colour", "Device_id", "\ud800", ""]))] = draw(ANY_JSON)
    payload = json.dumps(body).encode()  # ASCII: lone surrogates go as \\ud800 escapes
    odd = st.sampled_from(
        [
            payload.replace(b"}", b', "x": NaN}', 1) if payload != b"{}" else b'{"x": NaN}',
            b"[" * 5000 + b"]" * 5000,
            b'{"limit": ' + b"9" * 5000 + b"}",
            payload[: len(payload) // 2],
        ]
    )
    return name, draw(st.one_of(st.just(payload), st.just(payload), odd))


# -- one site for the whole run ------------------------------------------------------------------


@dataclass
class Fuzz:
    site: Site
    asker: Asker
    known: Known
    endpoints: list[Endpoint]


@pytest.fixture(scope="module")
def fuzz_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path]]:
    workdir = tmp_path_factory.mktemp("fuzz")
    broker = Broker(workdir)
    broker.start()
    yield broker, workdir
    broker.kill()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz(fuzz_broker: tuple[Broker, Path]) -> AsyncIterator[Fuzz]:
    broker, workdir = fuzz_broker
    devices = [
        {
            "device_id": d,
            "driver": "native",
            "slots": 6,
            "backup_pool": {"enabled": True, "size": 2},
        }
        for d in DEVICES
    ]
    config = parse_config(site_dict(broker, workdir, devices=devices), base_dir=workdir)
    async with running_site(config, ManualClock(NOW)) as site:
        window: Json = {"starts_at": isoformat(NOW), "ends_at": isoformat(NOW + timedelta(hours=2))}
        stay = ok(await site.api.call("access_codes/create", device_id="front_door", **window))
        plain = ok(await site.api.call("access_codes/create", device_id="back_door", code="8642"))
        known = Known(
            [stay["access_code"]["access_code_id"], plain["access_code"]["access_code_id"]]
        )
        async with Probe(broker, identifier="fuzz-probe") as probe:
            await probe.subscribe("it/odd")
            async with build_client(config.mqtt, identifier="fuzz-client") as client:
                assert site.gateway.router is not None
                yield Fuzz(site, Asker(client, config, probe), known, site.gateway.router.endpoints)


async def snapshot(site: Site) -> Json:
    """What a client can see of the gateway's state: devices, every code, the event count."""
    seen: Json = {"devices": ok(await site.api.call("devices/list"))["devices"]}
    for device in DEVICES:
        listed = await site.api.call(
            "access_codes/list", device_id=device, include_backup_pool=True
        )
        seen[device] = ok(listed)["access_codes"]
    count = 0
    since: Json = {"since": "0001-01-01T00:00:00Z"}
    while True:
        batch = ok(await site.api.call("events/list", limit=1000, **since))["events"]
        count += len(batch)
        if len(batch) < 1000:
            break
        since = {"after_event_id": batch[-1]["event_id"]}
    seen["events"] = count
    return seen


@pytest.mark.asyncio(loop_scope="module")
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
async def test_every_request_is_answered_and_a_refusal_changes_nothing(
    fuzz: Fuzz, data: st.DataObject
) -> None:
    endpoint, payload = data.draw(requests(fuzz.endpoints, fuzz.known), label="request")
    await fuzz.site.settled()
    before = await snapshot(fuzz.site)
    reply = await fuzz.asker.ask(endpoint, payload)  # parsed strictly: no NaN, valid UTF-8
    assert set(reply) >= {"ok", "request_id"}, reply
    if reply["ok"] is True:
        return
    assert reply["error"]["type"] in ERROR_TYPES, reply
    await fuzz.site.settled()
    assert await snapshot(fuzz.site) == before, (endpoint, payload, reply)
