"""The API router without a broker: ``Router.handle`` on a topic and a payload, against a real
SQLite store. What a client would notice: the reply (or none), its address, and what changed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.api import access_codes, devices
from gateway.api.router import MAX_REQUEST_BYTES, Endpoint, Reply, Router
from gateway.clock import ManualClock
from gateway.model import Json
from gateway.store import Store, Tx
from gateway.store import codes as code_store
from tests.fakes import DEVICE, opened_store, unit_config

PREFIX = "lockgate/unit"
REPLY_TO = "client/replies"


def fail_after_writing(tx: Tx, params: dict[str, Any]) -> Json:
    """An endpoint with a bug: it writes, then crashes."""
    code_store.insert_code(
        tx, device_id=DEVICE, name=None, code="4321", starts_at=None, ends_at=None
    )
    raise RuntimeError("a bug")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(unit_config(tmp_path), ManualClock()) as instance:
        yield instance


@pytest.fixture
def router(store: Store) -> Router:
    broken = Endpoint("broken/write", {}, fail_after_writing, writes=True)
    return Router(store, PREFIX, [*devices.ENDPOINTS, *access_codes.ENDPOINTS, broken])


async def ask(
    router: Router, endpoint: str, payload: bytes | None = None, **body: Any
) -> Reply | None:
    raw = payload if payload is not None else json.dumps({"reply_to": REPLY_TO, **body}).encode()
    return await router.handle(f"{PREFIX}/api/{endpoint}", raw)


async def answer(router: Router, endpoint: str, **body: Any) -> Json:
    reply = await ask(router, endpoint, **body)
    assert reply is not None
    assert reply.topic == REPLY_TO
    return reply.body


async def code_count(store: Store) -> int:
    row = await store.fetchone("SELECT count(*) AS n FROM access_codes")
    assert row is not None
    count: int = row["n"]
    return count


def error_type(body: Json) -> str:
    assert body["ok"] is False, body
    kind: str = body["error"]["type"]
    return kind


async def test_a_read_is_answered_with_the_request_id(router: Router) -> None:
    body = await answer(router, "devices/get", device_id=DEVICE, request_id="r-1")
    assert body["ok"] is True
    assert body["request_id"] == "r-1"
    assert body["device"]["device_id"] == DEVICE


async def test_an_unknown_endpoint_is_named_in_the_refusal(router: Router) -> None:
    body = await answer(router, "devices/explode", request_id=7)
    assert error_type(body) == "unknown_endpoint"
    assert "devices/explode" in body["error"]["message"]
    assert body["request_id"] == 7


async def test_a_bad_parameter_is_invalid_input_and_changes_nothing(
    router: Router, store: Store
) -> None:
    body = await answer(router, "access_codes/create", device_id=DEVICE, code="12ab")
    assert error_type(body) == "invalid_input"
    assert body["error"]["message"].startswith("code")
    assert await code_count(store) == 0


async def test_the_response_topic_wins_and_correlation_data_comes_back(router: Router) -> None:
    reply = await router.handle(
        f"{PREFIX}/api/devices/list",
        json.dumps({"reply_to": REPLY_TO}).encode(),
        response_topic="client/v5",
        correlation_data=b"\x01\x02",
    )
    assert reply is not None
    assert (reply.topic, reply.correlation_data) == ("client/v5", b"\x01\x02")
    assert reply.body["ok"] is True


async def test_without_a_reply_address_nothing_is_answered(router: Router) -> None:
    assert await ask(router, "devices/list", payload=b"{}") is None


async def test_an_unusable_reply_address_is_neither_answered_nor_carried_out(
    router: Router, store: Store
) -> None:
    reply = await ask(router, "access_codes/create", reply_to="a/+/b", device_id=DEVICE)
    assert reply is None
    assert await code_count(store) == 0


async def test_an_oversized_request_is_refused_to_its_reply_address(router: Router) -> None:
    padding = "x" * MAX_REQUEST_BYTES
    payload = json.dumps({"reply_to": REPLY_TO, "request_id": "big", "name": padding}).encode()
    reply = await ask(router, "access_codes/create", payload=payload)
    assert reply is not None
    assert reply.topic == REPLY_TO
    assert error_type(reply.body) == "payload_too_large"
    assert reply.body["request_id"] == "big"


async def test_a_request_that_is_not_strict_json_is_refused(router: Router) -> None:
    payload = b'{"reply_to": "client/replies", "device_id": NaN}'
    reply = await ask(router, "devices/get", payload=payload)
    assert reply is not None
    assert error_type(reply.body) == "invalid_input"


async def test_an_idempotency_key_replays_the_first_reply(router: Router, store: Store) -> None:
    params = {"device_id": DEVICE, "code": "1234", "idempotency_key": "booking-1"}
    first = await answer(router, "access_codes/create", **params)
    again = await answer(router, "access_codes/create", **params)
    assert first["ok"] is True
    assert again["access_code"] == first["access_code"]
    assert await code_count(store) == 1


async def test_an_idempotency_key_reused_for_another_request_is_refused(
    router: Router, store: Store
) -> None:
    await answer(router, "access_codes/create", device_id=DEVICE, code="1234", idempotency_key="k")
    body = await answer(
        router, "access_codes/create", device_id=DEVICE, code="5678", idempotency_key="k"
    )
    assert error_type(body) == "invalid_input"
    assert "idempotency_key" in body["error"]["message"]
    assert await code_count(store) == 1


async def test_a_crashing_endpoint_is_an_internal_error_and_rolls_back(
    router: Router, store: Store
) -> None:
    body = await answer(router, "broken/write", request_id="r")
    assert error_type(body) == "internal_error"
    assert await code_count(store) == 0
