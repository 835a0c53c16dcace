"""Requests written to hurt (issue 7): reply topics the broker refuses, odd but well-formed JSON,
reused idempotency keys, and a database the gateway may not write. Each against the real
gateway over a real broker, or the real ``lockgate run`` process."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.api.router import encode_reply
from gateway.config import Config
from gateway.model import Json
from gateway.mqtt import TopicRefused, build_client
from tests.broker import Broker
from tests.conftest import ConfigFactory, site_dict
from tests.harness import Site, at, device, ok, running_site
from tests.helpers import Probe, untimed

ROOT = Path(__file__).resolve().parent.parent
PIN = "4242"  # sent in hostile requests; it must never reach a log line above DEBUG

#: reply_to values mosquitto refuses as a PUBLISH topic (it then drops the publisher's whole
#: connection), plus the two the API refuses on its own ('$' topics, over 1024 characters).
REFUSED_REPLY_TO = [
    "\x01",
    "a/\x00/b",
    "a\x7f",
    "a/\x85",
    "a\x9f",
    "a\ufffe",
    "a\uffff",
    "a/\U0001fffe",
    "a\U0010ffff",
    "a\ufdd0",
    "a\ud800",
    "\udc00/b",
    "a/+",
    "+",
    "#",
    "a/#",
    "",
    "x" * 65536,  # also makes the request too large: refused, and unanswerable
    "$SYS/lockgate",
    "r" * 1025,
]
#: MQTT 5 Response Topics the broker forwards although it would refuse a PUBLISH to them.
REFUSED_RESPONSE_TOPICS = ["a/+", "#", "", "+/b"]


def strict_json(raw: bytes) -> Any:
    """Parse as RFC 8259 says: UTF-8, and no NaN or Infinity."""

    def refuse(literal: str) -> Any:
        raise AssertionError(f"reply holds {literal}, which is not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


async def send(
    client: aiomqtt.Client,
    config: Config,
    endpoint: str,
    payload: bytes,
    response_topic: str | None = None,
) -> None:
    """Publish a raw request as any MQTT client could (no lockgate code in the way)."""
    properties = None
    if response_topic is not None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = response_topic
    await client.publish(
        f"{config.prefix}/api/{endpoint}", payload, qos=1, properties=properties, timeout=5
    )


def log_lines(text: str) -> list[Json]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# -- 1. reply topics the broker refuses ----------------------------------------------------------


async def test_unusable_reply_topics_neither_disconnect_nor_execute(
    make_config: ConfigFactory, probe: Probe, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config()
    async with running_site(config) as site:
        status = f"{config.prefix}/status"
        await probe.subscribe(status, f"{config.prefix}/events/device.disconnected", "it/ok/#")
        assert (await probe.next(status))["state"] == "online"
        capsys.readouterr()
        hostile: list[tuple[str, bytes, str | None]] = []
        for i, topic in enumerate(REFUSED_REPLY_TO):
            if i % 2:
                body: Json = {"device_id": "back_door", "is_managed": False}
                endpoint = "devices/update"
            else:
                body = {"device_id": "front_door", "code": PIN}
                endpoint = "access_codes/create"
            body |= {"reply_to": topic, "request_id": f"hostile-{i}"}
            hostile.append((endpoint, json.dumps(body).encode(), None))
        for topic in REFUSED_RESPONSE_TOPICS:
            body = {"device_id": "front_door", "code": PIN, "reply_to": "it/ok/never"}
            hostile.append(("access_codes/create", json.dumps(body).encode(), topic))
        assert len(hostile) >= 20

        async def attack() -> None:
            async with build_client(config.mqtt, identifier="hostile") as client:
                for endpoint, payload, response_topic in hostile:
                    await send(client, config, endpoint, payload, response_topic)

        # Another client's requests run through the same gateway meanwhile; none may be lost.
        others = [
            site.api.call("devices/get", timeout=5, device_id="front_door", request_id=n)
            for n in range(10)
        ]
        attacker = asyncio.create_task(attack())
        replies = await asyncio.gather(*others)
        await attacker
        assert [r["request_id"] for r in replies] == list(range(10))
        assert all(r["ok"] for r in replies)
        # Still connected: a plain reply_to request is answered at once.
        async with build_client(config.mqtt, identifier="plain") as client:
            body = {"request_id": "after", "reply_to": "it/ok/1"}
            await send(client, config, "devices/list", json.dumps(body).encode())
            after = strict_json(await probe.next_raw("it/ok/1", timeout=2))
        assert after["ok"] is True
        assert after["request_id"] == "after"
        await site.settled()

        assert [s["state"] for s in probe.seen(status)] == ["online"]
        assert probe.seen(f"{config.prefix}/events/device.disconnected") == []
        since: Json = {"since": "2000-01-01T00:00:00Z", "event_types": ["device.disconnected"]}
        assert ok(await site.api.call("events/list", **since))["events"] == []
        assert site.gateway.session.connections == 1
        # Nothing was carried out, and the reply meant for it/ok/never was never sent.
        assert (await device(site, "back_door"))["is_managed"] is True
        assert (
            ok(await site.api.call("access_codes/list", device_id="front_door"))["access_codes"]
            == []
        )
        assert "it/ok/never" not in [t for t, _ in probe.history]
        # One warning each, without the PIN.
        out = capsys.readouterr().out
        lines = log_lines(out)
        unanswered = [line for line in lines if line["event"] == "api.unanswerable"]
        assert len(unanswered) == len(hostile)
        assert {line["level"] for line in unanswered} == {"warning"}
        assert PIN not in untimed(out)
        assert not [line for line in lines if line["level"] in ("error", "critical")]


async def test_publish_guard_refuses_locally_and_stays_connected(
    make_config: ConfigFactory, probe: Probe
) -> None:
    """The last line of defence: whatever code path asks, such a topic is never sent."""
    config = make_config()
    async with running_site(config) as site:
        status = f"{config.prefix}/status"
        await probe.subscribe(status)
        session = site.gateway.session
        for topic in ("a/+", "", "a\x00", "a\ud800", "x" * 65536):
            with pytest.raises(TopicRefused):
                await session.publish(topic, {"ok": True})
        assert session.is_connected
        assert ok(await site.api.call("devices/list", timeout=2))
        assert [s["state"] for s in probe.seen(status)] == ["online"]
        assert session.connections == 1


# -- 2. odd but well-formed input ----------------------------------------------------------------


class Asker:
    """Raw requests with an MQTT 5 Response Topic; raw replies, parsed strictly."""

    def __init__(self, client: aiomqtt.Client, config: Config, probe: Probe) -> None:
        self._client, self._config, self._probe = client, config, probe

    async def ask(self, endpoint: str, payload: bytes | Json) -> Any:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await send(self._client, self._config, endpoint, raw, response_topic="it/odd")
        return strict_json(await self._probe.next_raw("it/odd"))

    async def refused(self, endpoint: str, payload: bytes | Json, field: str) -> Json:
        reply: Json = await self.ask(endpoint, payload)
        assert reply["ok"] is False, reply
        assert reply["error"]["type"] == "invalid_input", reply
        assert field in reply["error"]["message"], reply
        return reply


async def test_odd_but_well_formed_input_is_invalid_input(
    make_config: ConfigFactory, probe: Probe, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config()
    async with running_site(config) as site:
        await probe.subscribe("it/odd")
        capsys.readouterr()
        async with build_client(config.mqtt, identifier="odd") as client:
            asker = Asker(client, config, probe)
            await check_odd_json(asker)
            await check_lone_surrogates(asker)
            await check_timestamps(asker, site)
            await check_numbers_and_types(asker)
        # Nothing above changed anything, and nothing failed inside the gateway.
        assert (
            ok(await site.api.call("access_codes/list", device_id="front_door"))["access_codes"]
            == []
        )
        assert (await device(site, "back_door"))["is_managed"] is True
        lines = log_lines(capsys.readouterr().out)
        assert not [line for line in lines if line["level"] in ("error", "critical")]


async def check_odd_json(asker: Asker) -> None:
    deep = b'{"request_id": "deep", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    reply = await asker.refused("devices/list", deep, "payload")
    assert reply["request_id"] is None  # nothing of it could be read
    # Nested less than Python's recursion limit, but deeper than any parameter.
    nested = b'{"request_id": "n", "x": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert (await asker.refused("devices/list", nested, "nested"))["request_id"] == "n"
    huge = "9" * 4301
    reply = await asker.refused(
        "events/list", f'{{"since": "2030-01-01T00:00:00Z", "limit": {huge}}}'.encode(), "digits"
    )
    reply = await asker.refused("devices/list", f'{{"request_id": {huge}}}'.encode(), "payload")
    assert reply["request_id"] is None
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        raw = f'{{"request_id": {literal}, "device_id": "front_door"}}'
        assert (await asker.refused("devices/get", raw.encode(), "payload"))["request_id"] is None
        raw = f'{{"request_id": "r", "limit": {literal}, "since": "2030-01-01T00:00:00Z"}}'
        assert (await asker.refused("events/list", raw.encode(), "payload"))["request_id"] == "r"


async def check_lone_surrogates(asker: Asker) -> None:
    base: Json = {"device_id": "front_door", "code": "1357", "request_id": "s"}
    for field in ("name", "code", "idempotency_key", "reply_to", "device_id"):
        reply = await asker.refused("access_codes/create", base | {field: "a\ud800"}, field)
        assert reply["request_id"] == "s"
    # The request's own id cannot be echoed: the refusal carries null instead.
    reply = await asker.refused("devices/list", {"request_id": "r-\udfff"}, "request_id")
    assert reply["request_id"] is None
    await asker.refused("devices/list", {"\ud800": 1}, "surrogate")
    await asker.refused(
        "events/list",
        {"since": "2030-01-01T00:00:00Z", "event_types": ["device.connected", "\udc00"]},
        "event_types[1]",
    )


async def check_timestamps(asker: Asker, site: Site) -> None:
    for since in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        await asker.refused("events/list", {"since": since}, "since")
    # Year 1 in UTC is a real instant: "everything so far".
    assert (await asker.ask("events/list", {"since": "0001-01-01T00:00:00Z"}))["ok"] is True
    create: Json = {"device_id": "front_door", "code": "1357"}
    for field, value in (
        ("starts_at", "0001-01-01T00:00:00+01:00"),
        ("ends_at", "9999-12-31T23:59:59-01:00"),
        ("starts_at", "0001-01-01T00:00:00Z"),
        ("ends_at", "9999-12-31T23:59:59Z"),
    ):
        window = {"starts_at": at(site, 0), "ends_at": at(site, 3600), field: value}
        await asker.refused("access_codes/create", create | window, field)
    # 1 µs long: stored at millisecond precision it would be empty.
    start = site.clock.now().replace(microsecond=0) + timedelta(hours=1)
    tiny = {"starts_at": stamp(start), "ends_at": stamp(start + MICROSECOND)}
    await asker.refused("access_codes/create", create | tiny, "ends_at")
    window = {"starts_at": at(site, 3600), "ends_at": at(site, 7200)}
    code = ok(await asker.ask("access_codes/create", create | window))["access_code"]
    starts = datetime.fromisoformat(code["starts_at"].replace("Z", "+00:00"))
    update = {"access_code_id": code["access_code_id"], "ends_at": stamp(starts + MICROSECOND)}
    await asker.refused("access_codes/update", update, "ends_at")
    ok(await asker.ask("access_codes/delete", {"access_code_id": code["access_code_id"]}))


MICROSECOND = timedelta(microseconds=1)


def stamp(when: datetime) -> str:
    return when.isoformat(timespec="microseconds")


async def check_numbers_and_types(asker: Asker) -> None:
    since = {"since": "2030-01-01T00:00:00Z"}
    for limit in (10**50, 0, -1, 5.0, True, "5", None, [5]):
        await asker.refused("events/list", since | {"limit": limit}, "limit")
    for flag in (1, 0, "true", None):
        await asker.refused(
            "devices/update", {"device_id": "back_door", "is_managed": flag}, "is_managed"
        )
    create: Json = {"device_id": "front_door"}
    for length in (4.0, True, 17, 0, "4"):
        await asker.refused(
            "access_codes/create",
            create | {"preferred_code_length": length},
            "preferred_code_length",
        )
    await asker.refused("access_codes/create", create | {"code": 1357}, "code")
    await asker.refused("access_codes/create", create | {"code": "١٣٥٧"}, "code")  # Arabic digits
    await asker.refused("access_codes/create", create | {"name": "n" * 201}, "name")
    ids = ["00000000-0000-0000-0000-000000000000"] * 1001
    await asker.refused("access_codes/list", {"access_code_ids": ids}, "access_code_ids")
    await asker.refused(
        "access_codes/update", {"access_code_id": "x", "type": ["ongoing"]}, "access_code_id"
    )


def test_a_reply_that_cannot_be_strict_json_becomes_a_bare_internal_error() -> None:
    """The last line for replies: whatever a handler returns, what goes out parses strictly."""
    for body in ({"ok": True, "x": float("nan")}, {"ok": True, "name": "\ud800"}):
        reply = strict_json(encode_reply(body))
        assert reply == {
            "ok": False,
            "request_id": None,
            "error": {"type": "internal_error", "message": reply["error"]["message"]},
        }


# -- 4. idempotency keys belong to one request ---------------------------------------------------


async def test_idempotency_key_is_bound_to_endpoint_and_parameters(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        params: Json = {"device_id": "front_door", "name": "Ada", "code": "2580"}
        first = ok(await site.api.call("access_codes/create", idempotency_key="k", **params))
        cid = first["access_code"]["access_code_id"]

        def refused(reply: Json) -> None:
            assert reply["ok"] is False, reply
            assert reply["error"]["type"] == "invalid_input"
            assert "idempotency_key" in reply["error"]["message"]

        # Other parameters, or another endpoint: refused, never someone else's reply.
        refused(
            await site.api.call(
                "access_codes/create", idempotency_key="k", **params | {"name": "Bob"}
            )
        )
        refused(
            await site.api.call(
                "access_codes/create", idempotency_key="k", **params | {"name": None}
            )
        )
        refused(await site.api.call("devices/update", idempotency_key="k", device_id="front_door"))
        refused(await site.api.call("access_codes/delete", idempotency_key="k", access_code_id=cid))
        # The same request again, also written differently but meaning the same, with another
        # request_id and reply address: the first reply, with its own request_id.
        again = await site.api.call(
            "access_codes/create", idempotency_key="k", request_id="retry", **params
        )
        assert again["request_id"] == "retry"
        assert again["access_code"] == first["access_code"]
        update: Json = {"access_code_id": cid, "starts_at": at(site, 60), "ends_at": at(site, 120)}
        updated = ok(await site.api.call("access_codes/update", idempotency_key="u", **update))
        same = update | {
            "access_code_id": cid.upper(),
            "starts_at": update["starts_at"].replace("Z", "+00:00"),
        }
        assert (await site.api.call("access_codes/update", idempotency_key="u", **same)) == updated
        # Nothing but the first create and the update happened.
        codes = ok(await site.api.call("access_codes/list", device_id="front_door"))
        assert [c["access_code_id"] for c in codes["access_codes"]] == [cid]
        assert codes["access_codes"][0]["name"] == "Ada"
        assert (await device(site, "front_door"))["is_managed"] is True


async def test_idempotency_rows_from_before_fingerprints_match_their_endpoint(
    make_config: ConfigFactory,
) -> None:
    """A row stored by an older lockgate (no fingerprint) still answers a retry on its own
    endpoint, and refuses the key on any other."""
    async with running_site(make_config()) as site:
        first = ok(
            await site.api.call(
                "devices/update", idempotency_key="old", device_id="back_door", is_managed=False
            )
        )
        store = site.gateway.store
        assert store is not None
        await store.write(
            lambda tx: tx.execute("UPDATE idempotency SET fingerprint = NULL WHERE key = 'old'")
        )
        again = await site.api.call(
            "devices/update", idempotency_key="old", device_id="back_door", is_managed=False
        )
        assert again["device"] == first["device"]
        other = await site.api.call(
            "access_codes/create", idempotency_key="old", device_id="front_door"
        )
        assert other["error"]["type"] == "invalid_input"
        assert "idempotency_key" in other["error"]["message"]


# -- 3. a database the gateway may not write -----------------------------------------------------


def _without_dac_override() -> None:
    """In the child, before exec: root without CAP_DAC_OVERRIDE/READ_SEARCH is held to file
    modes like any user, so a read-only directory is read-only to it too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _unwritable_dir(base: Path) -> Path:
    path = base / "read-only"
    path.mkdir()
    path.chmod(0o555)
    return path / "lockgate.db"


def _unwritable_dir_holding_database(base: Path) -> Path:
    path = base / "read-only"
    path.mkdir()
    (path / "lockgate.db").touch(mode=0o600)
    path.chmod(0o555)
    return path / "lockgate.db"


def _unwritable_file(base: Path) -> Path:
    path = base / "lockgate.db"
    path.touch(mode=0o400)
    return path


@pytest.mark.parametrize(
    "unwritable",
    [_unwritable_dir, _unwritable_dir_holding_database, _unwritable_file],
    ids=["read-only directory", "read-only directory holding it", "read-only file"],
)
def test_unwritable_database_is_one_line_and_exit_1(
    tmp_path: Path, broker: Broker, unwritable: Callable[[Path], Path]
) -> None:
    data = site_dict(broker, tmp_path)
    data["database"] = str(unwritable(tmp_path))
    config_file = tmp_path / "lockgate.yaml"
    config_file.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "-c", str(config_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lockgate: ")
    assert data["database"] in lines[0]


async def test_giant_messages_never_reach_the_gateway(make_config: ConfigFactory) -> None:
    """The gateway tells the broker its Maximum Packet Size: a 2 MiB request or lock report is
    dropped at the broker, so it costs the gateway nothing, and everything else goes on."""
    config = make_config()
    async with running_site(config) as site:
        replies = await site.api.subscribe("giant/replies")
        giant = {"reply_to": "giant/replies", "name": "x" * 2_000_000}
        await site.api.publish(f"{config.prefix}/api/devices/list", giant)
        await site.api.publish("locks/front_door/slots", giant)
        # Requests are answered in order: had the giant one arrived, its refusal came first.
        ok(await site.api.call("devices/list"))
        assert replies.empty(), "the 2 MiB request reached the gateway"
        front = await device(site)
        assert front["errors"] == []
        assert front["properties"]["online"] is True
