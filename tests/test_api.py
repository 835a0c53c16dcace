"""The API envelope and the devices endpoints, against a real broker and a real database."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt
import pytest

from gateway.api.router import MAX_REQUEST_BYTES
from gateway.config import Config
from gateway.model import Json
from gateway.mqtt import build_client
from tests.conftest import ConfigFactory
from tests.harness import create, device, next_json, running_site, wait_for_json


async def send(client: aiomqtt.Client, config: Config, endpoint: str, body: Json) -> None:
    """A request as a plain MQTT client (no lockgate code, no MQTT 5 properties) sends it."""
    await client.publish(f"{config.prefix}/api/{endpoint}", json.dumps(body), qos=1)


def next_conversion(events: asyncio.Queue[aiomqtt.Message], timeout: float = 5.0) -> Any:
    return wait_for_json(events, lambda e: e["event_type"].startswith("device.converted_"), timeout)


async def test_devices_list_and_get(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        reply = await site.api.call("devices/list", request_id="r1")
        assert reply["ok"] is True
        assert reply["request_id"] == "r1"
        assert [d["device_id"] for d in reply["devices"]] == ["back_door", "front_door"]
        found = await device(site, "front_door")
        assert found["name"] == "Front door"
        assert found["driver"] == "native"
        assert found["is_managed"] is True
        props = found["properties"]
        assert props["backup_access_code_pool_enabled"] is False
        assert props["backup_codes_available"] == 0


@pytest.mark.parametrize(
    ("endpoint", "params", "error_type", "field"),
    [
        ("devices/get", {"device_id": "nope"}, "device_not_found", "device_id"),
        ("devices/get", {"device_id": "a/b"}, "invalid_input", "device_id"),
        ("devices/get", {"device_id": "x+"}, "invalid_input", "device_id"),
        ("devices/get", {"device_id": 5}, "invalid_input", "device_id"),
        ("devices/get", {}, "invalid_input", "device_id"),
        ("devices/get", {"device_id": "front_door", "colour": 1}, "invalid_input", "colour"),
        (
            "devices/update",
            {"device_id": "front_door", "is_managed": "no"},
            "invalid_input",
            "is_managed",
        ),
        (
            "devices/update",
            {"device_id": "front_door", "is_managed": 0},
            "invalid_input",
            "is_managed",
        ),
        ("devices/frobnicate", {}, "unknown_endpoint", "devices/frobnicate"),
        ("nothing", {}, "unknown_endpoint", "nothing"),
        ("devices/list", {"idempotency_key": 7}, "invalid_input", "idempotency_key"),
    ],
)
async def test_refusals_name_the_field(
    make_config: ConfigFactory, endpoint: str, params: dict[str, Any], error_type: str, field: str
) -> None:
    async with running_site(make_config()) as site:
        reply = await site.api.call(endpoint, request_id=42, **params)
        assert reply["ok"] is False
        assert reply["request_id"] == 42
        assert reply["error"]["type"] == error_type
        assert field in reply["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"", "not valid JSON"),
    ],
)
async def test_malformed_payloads(
    make_config: ConfigFactory, payload: bytes, fragment: str
) -> None:
    async with running_site(make_config()) as site:
        reply = await site.api.call_raw("devices/list", payload)
        assert reply["ok"] is False
        assert reply["error"]["type"] == "invalid_input"
        assert fragment in reply["error"]["message"]
        # The daemon is still serving.
        assert (await site.api.call("devices/list"))["ok"] is True


async def test_oversized_request_is_refused(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        big = json.dumps({"device_id": "front_door", "name": "x" * MAX_REQUEST_BYTES}).encode()
        reply = await site.api.call_raw("devices/update", big)
        assert reply == {
            "ok": False,
            "request_id": None,
            "error": {"type": "payload_too_large", "message": reply["error"]["message"]},
        }
        assert "65536" in reply["error"]["message"]
        # Exactly at the limit is still parsed (and refused for its content, not its size).
        at_limit = b'{"x":"' + b"y" * (MAX_REQUEST_BYTES - 8) + b'"}'
        assert len(at_limit) == MAX_REQUEST_BYTES
        reply = await site.api.call_raw("devices/list", at_limit)
        assert reply["error"]["type"] == "invalid_input"


async def test_reply_to_without_mqtt5_properties(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        replies = await site.api.subscribe("it/replies/#")
        client = build_client(config.mqtt, identifier="plain-client")
        async with client:
            await send(
                client,
                config,
                "devices/get",
                {"device_id": "back_door", "reply_to": "it/replies/1", "request_id": "abc"},
            )
            reply = await next_json(replies)
            assert reply["ok"] is True
            assert reply["request_id"] == "abc"
            assert reply["device"]["device_id"] == "back_door"
            # A bad reply_to cannot be answered; the request is refused and nothing changes.
            await send(
                client,
                config,
                "devices/update",
                {"device_id": "back_door", "is_managed": False, "reply_to": "a/#"},
            )
            # An error reply also goes to reply_to.
            await send(
                client, config, "devices/get", {"device_id": "zzz", "reply_to": "it/replies/2"}
            )
            reply = await next_json(replies)
            assert reply["error"]["type"] == "device_not_found"
        assert (await device(site, "back_door"))["is_managed"] is True


async def test_request_without_reply_address_is_executed(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        devices = await site.api.subscribe(f"{config.prefix}/devices/back_door")
        await wait_for_json(devices, lambda d: d["is_managed"] is True)
        client = build_client(config.mqtt, identifier="fire-and-forget")
        async with client:
            await send(
                client, config, "devices/update", {"device_id": "back_door", "is_managed": False}
            )
        await wait_for_json(devices, lambda d: d["is_managed"] is False)
        assert (await device(site, "back_door"))["is_managed"] is False


async def test_idempotent_update_changes_once(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        events = await site.api.subscribe(f"{config.prefix}/events/#")
        key = str(uuid.uuid4())
        first = await site.api.call(
            "devices/update", device_id="front_door", is_managed=False, idempotency_key=key
        )
        assert first["ok"] is True
        # Someone else flips it back; a redelivery of the first request must not undo that.
        await site.api.call("devices/update", device_id="front_door", is_managed=True)
        again = await site.api.call(
            "devices/update", device_id="front_door", is_managed=False, idempotency_key=key
        )
        assert again["device"] == first["device"]
        assert (await device(site, "front_door"))["is_managed"] is True
        kinds = [(await next_conversion(events))["event_type"] for _ in range(2)]
        assert kinds == ["device.converted_to_unmanaged", "device.converted_to_managed"]
        # The key belongs to that request: with other parameters it is refused, not answered
        # with the front door's reply, and nothing changes.
        other = await site.api.call(
            "devices/update", device_id="back_door", is_managed=False, idempotency_key=key
        )
        assert other["ok"] is False
        assert other["error"]["type"] == "invalid_input"
        assert "idempotency_key" in other["error"]["message"]
        assert (await device(site, "back_door"))["is_managed"] is True


async def test_idempotent_concurrent_redelivery(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        events = await site.api.subscribe(f"{config.prefix}/events/#")
        replies = await asyncio.gather(
            *(
                site.api.call(
                    "devices/update",
                    device_id="back_door",
                    is_managed=False,
                    idempotency_key="same",
                )
                for _ in range(5)
            )
        )
        assert all(r["ok"] for r in replies)
        assert len({json.dumps(r["device"], sort_keys=True) for r in replies}) == 1
        assert (await next_conversion(events))["event_type"] == "device.converted_to_unmanaged"
        with pytest.raises(TimeoutError):
            await next_conversion(events, timeout=0.3)


async def test_device_object_is_retained_and_republished(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        live = await site.api.subscribe(f"{config.prefix}/devices/front_door")
        await site.api.call("devices/update", device_id="front_door", is_managed=False)
        await wait_for_json(live, lambda d: d["is_managed"] is False)
        # A client that subscribes later gets the latest state, retained.
        late = await site.api.subscribe(f"{config.prefix}/devices/+")
        seen: dict[str, Any] = {}
        while len(seen) < 2:
            message: aiomqtt.Message = await asyncio.wait_for(late.get(), 5)
            assert message.retain
            assert isinstance(message.payload, bytes)
            body = json.loads(message.payload)
            seen[body["device_id"]] = body
        assert seen["front_door"]["is_managed"] is False
        assert seen["back_door"]["is_managed"] is True


async def test_the_device_object_is_published_when_it_changes_only(
    make_config: ConfigFactory,
) -> None:
    """Every event about a code touches its device; the retained object goes out again only
    when it reads differently (an MQTT message per device per code would be wasted on a busy
    site)."""
    config = make_config()
    async with running_site(config) as site:
        live = await site.api.subscribe(f"{config.prefix}/devices/front_door")
        await wait_for_json(live, lambda d: d["properties"]["online"] is True)
        for pin in ("4821", "5932", "6043"):
            await create(site, device_id="front_door", code=pin)
        await site.settled()
        assert set(site.lock("front_door").slots.values()) == {"4821", "5932", "6043"}
        await site.api.call("devices/update", device_id="front_door", is_managed=False)
        changed = await wait_for_json(live, lambda d: True)
        assert changed["is_managed"] is False  # the codes brought no republish before it


async def test_pool_cannot_be_disabled_and_needs_support(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "front_door",
                "driver": "native",
                "slots": 10,
                "backup_pool": {"enabled": True},
            },
            {"device_id": "tiny", "driver": "native", "slots": 1},
            {"device_id": "plain", "driver": "native", "slots": 10},
        ]
    )
    async with running_site(config) as site:
        reply = await site.api.call(
            "devices/update", device_id="front_door", backup_access_code_pool_enabled=False
        )
        assert reply["error"]["type"] == "backup_pool_cannot_be_disabled"
        reply = await site.api.call(
            "devices/update", device_id="tiny", backup_access_code_pool_enabled=True
        )
        assert reply["error"]["type"] == "backup_pool_not_supported"
        found = await device(site, "tiny")
        assert found["properties"]["backup_access_code_pool_enabled"] is False
        reply = await site.api.call(
            "devices/update", device_id="plain", backup_access_code_pool_enabled=True
        )
        assert reply["device"]["properties"]["backup_access_code_pool_enabled"] is True
        reply = await site.api.call(
            "devices/update", device_id="plain", backup_access_code_pool_enabled=False
        )
        assert reply["error"]["type"] == "backup_pool_cannot_be_disabled"


async def test_oversized_request_is_refused_to_reply_to_too(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        replies = await site.api.subscribe("it/big/#")
        body = {
            "device_id": "front_door",
            "is_managed": False,
            "reply_to": "it/big/1",
            "request_id": "big-1",
            "name": "x" * MAX_REQUEST_BYTES,
        }
        client = build_client(config.mqtt, identifier="big-plain-client")
        async with client:
            await send(client, config, "devices/update", body)
            reply = await next_json(replies)
        assert reply["ok"] is False
        assert reply["request_id"] == "big-1"
        assert reply["error"]["type"] == "payload_too_large"
        found = await device(site, "front_door")
        assert found["is_managed"] is True  # refused means not executed


async def test_a_device_removed_from_the_config_disappears(make_config: ConfigFactory) -> None:
    async with running_site(make_config()):
        pass
    config = make_config(devices=[{"device_id": "front_door", "driver": "native"}])
    async with running_site(config) as site:
        listed = (await site.api.call("devices/list"))["devices"]
        assert [d["device_id"] for d in listed] == ["front_door"]
        reply = await site.api.call("devices/get", device_id="back_door")
        assert reply["error"]["type"] == "device_not_found"
        # Its retained object is withdrawn: a new subscriber sees only front_door.
        retained = await site.api.subscribe(f"{config.prefix}/devices/+")
        first = await next_json(retained)
        assert first["device_id"] == "front_door"
        with pytest.raises(TimeoutError):
            await next_json(retained, timeout=0.3)
