"""The external contract, sections 3 to 5 (docs/api.md): the topics, the reply envelope with every
error type, and every endpoint's reply key, against the real gateway and lock simulator.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, get_args

import aiomqtt
import pytest

import gateway
from gateway.api.errors import ErrorType
from gateway.api.router import MAX_REQUEST_BYTES
from gateway.config import PinLookupLimits
from gateway.model import Json
from tests.conftest import ConfigFactory, codes_on_lock
from tests.contract import (
    ACCESS_CODE_KEYS,
    EPOCH,
    ERROR_TYPES,
    first_message,
)
from tests.harness import (
    api_client,
    at,
    barrier,
    create,
    device,
    ok,
    payload_json,
    running_site,
    window,
)

# -- section 3: topics --------------------------------------------------------------------------


async def test_status_topic_retained_online_then_offline(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        message = await first_message(await site.api.subscribe(f"{config.prefix}/status"))
        assert message.retain
        assert payload_json(message) == {"state": "online", "version": gateway.__version__}
    async with api_client(config) as api:
        message = await first_message(await api.subscribe(f"{config.prefix}/status"))
        assert message.retain
        assert payload_json(message) == {"state": "offline", "version": gateway.__version__}


async def test_device_topic_is_retained_and_is_the_device_object(
    make_config: ConfigFactory,
) -> None:
    config = make_config()
    async with running_site(config) as site:
        queue = await site.api.subscribe(f"{config.prefix}/devices/front_door")
        message = await first_message(queue)
        assert message.retain
        assert payload_json(message) == await device(site)
        # Republished on a change.
        await site.api.call("devices/update", device_id="front_door", is_managed=False)
        changed = await first_message(queue)
        assert payload_json(changed) == await device(site)
        assert payload_json(changed)["is_managed"] is False


async def test_event_topics_are_qos1_and_not_retained(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        queue = await site.api.subscribe(f"{config.prefix}/events/#")
        made = await create(site, device_id="front_door", code="4821")
        await barrier(site)
        seen: list[aiomqtt.Message] = []
        while not queue.empty():
            seen.append(queue.get_nowait())
        types = []
        for message in seen:
            body = payload_json(message)
            assert message.topic.value == f"{config.prefix}/events/{body['event_type']}"
            assert message.qos == 1
            assert not message.retain
            types.append(body["event_type"])
        assert types[:2] == ["access_code.created", "access_code.set_on_device"]
        assert all(payload_json(m)["access_code_id"] == made["access_code_id"] for m in seen)
        # Nothing is left behind for a late subscriber.
        late = await site.api.subscribe(f"{config.prefix}/events/+")
        with pytest.raises(TimeoutError):
            await first_message(late, timeout=0.3)


# -- section 4: the envelope and every error type -----------------------------------------------


def test_error_type_names_are_the_contracts() -> None:
    assert set(get_args(ErrorType)) == ERROR_TYPES


async def test_every_error_type_is_produced_in_the_failure_envelope(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=[
            {"device_id": "front_door", "driver": "native", "slots": 10},
            {"device_id": "back_door", "driver": "native"},
            {"device_id": "tiny", "driver": "native", "slots": 1},
            {"device_id": "side_door", "driver": "native"},
        ]
    )
    produced: set[str] = set()

    def check(reply: Json, request_id: object, error_type: str, named: str) -> None:
        assert set(reply) == {"ok", "request_id", "error"}, reply
        assert reply["ok"] is False
        assert reply["request_id"] == request_id
        assert set(reply["error"]) == {"type", "message"}, reply
        assert reply["error"]["type"] == error_type, reply
        message = reply["error"]["message"]
        assert isinstance(message, str)
        assert named in message, reply
        produced.add(error_type)

    async with running_site(config) as site:

        async def refused(endpoint: str, error_type: str, named: str, **params: Any) -> None:
            request_id = f"req-{error_type}"
            reply = await site.api.call(endpoint, request_id=request_id, **params)
            check(reply, request_id, error_type, named)

        await refused("devices/get", "invalid_input", "device_id", device_id=5)
        await refused("devices/frobnicate", "unknown_endpoint", "devices/frobnicate")
        body = {"request_id": "big", "device_id": "front_door", "name": "x" * MAX_REQUEST_BYTES}
        reply = await site.api.call_raw("devices/update", json.dumps(body).encode())
        check(reply, "big", "payload_too_large", str(64 * 1024))
        await refused("devices/get", "device_not_found", "device_id", device_id="nope")
        ok(await site.api.call("devices/update", device_id="back_door", is_managed=False))
        await refused(
            "access_codes/create", "device_not_managed", "device_id", device_id="back_door"
        )
        await refused(
            "access_codes/get",
            "access_code_not_found",
            "access_code_id",
            access_code_id=str(uuid.uuid4()),
        )
        await create(site, device_id="front_door", code="1357")
        await refused(
            "access_codes/create",
            "duplicate_access_code",
            "code",
            device_id="front_door",
            code="1357",
        )
        await refused(
            "access_codes/create",
            "code_constraints_violated",
            "code",
            device_id="front_door",
            code="12",
        )
        await refused(
            "devices/update",
            "backup_pool_not_supported",
            "backup_access_code_pool_enabled",
            device_id="tiny",
            backup_access_code_pool_enabled=True,
        )
        ok(
            await site.api.call(
                "devices/update", device_id="front_door", backup_access_code_pool_enabled=True
            )
        )
        await refused(
            "devices/update",
            "backup_pool_cannot_be_disabled",
            "backup_access_code_pool_enabled",
            device_id="front_door",
            backup_access_code_pool_enabled=False,
        )
        # A trivial PIN: no backup of the pool, drawn at random, can have taken it first.
        ongoing = await create(site, device_id="front_door", code="2323")
        await refused(
            "access_codes/pull_backup_access_code",
            "access_code_not_time_bound",
            "access_code_id",
            access_code_id=ongoing["access_code_id"],
        )
        stay = await create(site, device_id="side_door", code="3579", **window(site, 0, 3600))
        await refused(
            "access_codes/pull_backup_access_code",
            "no_backup_access_code_available",
            "access_code_id",
            access_code_id=stay["access_code_id"],
        )
        limits = PinLookupLimits()
        for _ in range(min(limits.per_device.burst, limits.per_client.burst) + 1):
            reply = await site.api.call(
                "access_codes/get", request_id="req-limited", device_id="side_door", code="3579"
            )
            if not reply["ok"]:
                break
        check(reply, "req-limited", "rate_limited", "code")
    assert produced == ERROR_TYPES - {"internal_error"}


# -- section 5: endpoints and their reply keys --------------------------------------------------


def answered(reply: Json, key: str | None, request_id: str) -> Any:
    """The success envelope exactly: ok, request_id, and the one resource key (or none)."""
    assert reply.get("ok") is True, reply
    assert reply["request_id"] == request_id
    assert set(reply) == {"ok", "request_id"} | ({key} if key else set()), reply
    return reply[key] if key else None


async def test_every_endpoint_answers_with_its_reply_key(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[{"device_id": "front_door", "driver": "native", "slots": 10}],
        backup_pool={"size": 2},
        simulator={"latency": "1ms", **codes_on_lock({"10": "5550"})},
    )
    async with running_site(config) as site:

        async def call(endpoint: str, key: str | None, **params: Any) -> Any:
            request_id = f"req-{endpoint}"
            return answered(
                await site.api.call(endpoint, request_id=request_id, **params), key, request_id
            )

        devices = await call("devices/list", "devices")
        assert [d["device_id"] for d in devices] == ["front_door"]
        assert (await call("devices/get", "device", device_id="front_door"))["name"]
        updated = await call("devices/update", "device", device_id="front_door", is_managed=True)
        assert updated["is_managed"] is True

        made = await call(
            "access_codes/create",
            "access_code",
            device_id="front_door",
            name="Guest",
            use_backup_access_code_pool=True,
            allow_external_modification=False,
            **window(site, 0, 3600),
        )
        cid = made["access_code_id"]
        assert made["type"] == "time_bound"
        assert made["is_external_modification_allowed"] is False
        assert re.fullmatch(r"\d{4,8}", made["code"])
        sized = await call(
            "access_codes/create",
            "access_code",
            device_id="front_door",
            preferred_code_length=6,
        )
        assert re.fullmatch(r"\d{6}", sized["code"])
        assert sized["type"] == "ongoing"
        await site.settled()
        got = await call("access_codes/get", "access_code", access_code_id=cid)
        assert got["status"] == "set"
        by_pin = await call(
            "access_codes/get", "access_code", device_id="front_door", code=made["code"]
        )
        assert by_pin["access_code_id"] == cid

        listed = await call("access_codes/list", "access_codes", device_id="front_door")
        assert {c["access_code_id"] for c in listed} == {cid, sized["access_code_id"]}
        with_pool = await call(
            "access_codes/list",
            "access_codes",
            device_id="front_door",
            include_backup_pool=True,
        )
        backups = [c for c in with_pool if c["is_backup"]]
        assert len(backups) == 2
        for backup in backups:
            assert backup["type"] == "ongoing"
            assert re.fullmatch(r"Backup [0-9a-f]{4}", backup["name"])
        by_ids = await call("access_codes/list", "access_codes", access_code_ids=[cid])
        assert [c["access_code_id"] for c in by_ids] == [cid]

        renamed = await call("access_codes/update", "access_code", access_code_id=cid, name="G2")
        assert renamed["name"] == "G2"
        endless = await call(
            "access_codes/update",
            "access_code",
            access_code_id=sized["access_code_id"],
            **window(site, 0, 7200),
        )
        assert endless["type"] == "time_bound"
        dropped = await call(
            "access_codes/update",
            "access_code",
            access_code_id=sized["access_code_id"],
            type="ongoing",
        )
        assert (dropped["type"], dropped["starts_at"], dropped["ends_at"]) == (
            "ongoing",
            None,
            None,
        )

        request_id = "req-pull"
        reply = await site.api.call(
            "access_codes/pull_backup_access_code", request_id=request_id, access_code_id=cid
        )
        assert reply.get("ok") is True, reply
        assert set(reply) == {"ok", "request_id", "access_code", "backup_access_code"}
        original, backup = reply["access_code"], reply["backup_access_code"]
        assert original["access_code_id"] == cid
        assert original["pulled_backup_access_code_id"] == backup["access_code_id"]
        assert backup["is_backup"] is True
        assert backup["type"] == "time_bound"
        assert backup["ends_at"] == original["ends_at"]
        again = await site.api.call("access_codes/pull_backup_access_code", access_code_id=cid)
        assert again["backup_access_code"]["access_code_id"] == backup["access_code_id"]

        generated = await call(
            "access_codes/generate_code", "generated_code", device_id="front_door"
        )
        assert set(generated) == {"device_id", "code"}
        assert generated["device_id"] == "front_door"
        assert re.fullmatch(r"\d{4,8}", generated["code"])

        unmanaged = await call(
            "access_codes/unmanaged/list", "access_codes", device_id="front_door"
        )
        assert [(c["code"], c["slot"], c["is_managed"]) for c in unmanaged] == [("5550", 10, False)]

        events = await call("events/list", "events", since=EPOCH)
        assert events
        after = await call("events/list", "events", after_event_id=events[0]["event_id"], limit=1)
        assert [e["event_id"] for e in after] == [events[1]["event_id"]]

        assert await call("access_codes/delete", None, access_code_id=cid) is None
        await site.settled()
        gone = await site.api.call("access_codes/get", access_code_id=cid)
        assert gone["error"]["type"] == "access_code_not_found"


async def test_unmanaged_codes_are_access_code_objects(make_config: ConfigFactory) -> None:
    config = make_config(simulator={"latency": "1ms", **codes_on_lock({"3": "5550"})})
    async with running_site(config) as site:
        reply = ok(await site.api.call("access_codes/unmanaged/list", device_id="front_door"))
        (found,) = reply["access_codes"]
        assert (found["code"], found["slot"], found["is_managed"]) == ("5550", 3, False)
        assert set(found) == ACCESS_CODE_KEYS, ACCESS_CODE_KEYS - set(found)


# -- bits of the contract checked once more, end to end ----------------------------------------


async def test_pull_with_idempotency_key_answers_the_first_reply(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "front_door",
                "driver": "native",
                "slots": 10,
                "backup_pool": {"enabled": True, "size": 2},
            }
        ]
    )
    async with running_site(config) as site:
        # A trivial PIN: no backup of the pool, drawn at random, can have taken it first.
        stay = await create(site, device_id="front_door", code="4545", **window(site, 0, 3600))
        await site.settled()
        params = {"access_code_id": stay["access_code_id"], "idempotency_key": "pull-1"}
        first = ok(await site.api.call("access_codes/pull_backup_access_code", **params))
        again = ok(await site.api.call("access_codes/pull_backup_access_code", **params))
        assert again["backup_access_code"] == first["backup_access_code"]
        pulled = ok(
            await site.api.call(
                "events/list",
                since=at(site, -3600),
                event_types=["access_code.backup_access_code_pulled"],
            )
        )["events"]
        assert len(pulled) == 1
