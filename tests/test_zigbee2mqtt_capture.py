"""What a real Zigbee2MQTT 2.14.1 said for one run of PIN traffic (tests/fixtures/zigbee2mqtt/,
recorded by ``python -m tests.zigbee2mqtt_real.capture``): the driver's parsers take every
message, and the simulator speaks the same shapes. Needs no Node.js."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drivers.zigbee2mqtt.protocol import (
    Topics,
    parse_availability,
    parse_get,
    parse_logging_error,
    parse_set,
    parse_state,
    user_entry_payload,
)

CAPTURE = Path(__file__).parent / "fixtures" / "zigbee2mqtt" / "capture.jsonl"
TOPICS = Topics("zigbee2mqtt", "front_door")
RECORDS: list[dict[str, Any]] = [json.loads(line) for line in CAPTURE.read_text().splitlines()]


def on(topic: str) -> list[Any]:
    return [r["payload"] for r in RECORDS if r["topic"] == topic]


def test_the_capture_has_every_kind_of_message() -> None:
    states = on(TOPICS.state)
    assert {s.get("action") for s in states} >= {None, "pin_code_added", "unlock"}
    assert any("users" in s for s in states)
    for topic in (TOPICS.set, TOPICS.get, TOPICS.availability):
        assert on(topic), topic
    assert on(TOPICS.bridge_state) == [{"state": "online"}, {"state": "offline"}]
    assert on(TOPICS.bridge_logging)


@pytest.mark.parametrize("capacity", [30, None], ids=["slots-30", "no-capacity"])
def test_the_driver_parses_every_state_message(capacity: int | None) -> None:
    for payload in on(TOPICS.state):
        report = parse_state(json.dumps(payload), capacity=capacity)
        if payload.get("action") in ("pin_code_added", "unlock"):
            assert report.action == payload["action"]
            assert report.action_user == payload["action_user"]


def test_the_driver_parses_availability_requests_and_error_lines() -> None:
    for topic in (TOPICS.availability, TOPICS.bridge_state):
        assert [parse_availability(json.dumps(p)) for p in on(topic)][:1] == [True]
    for payload in on(TOPICS.set):
        parse_set(json.dumps(payload))
    for payload in on(TOPICS.get):
        parse_get(json.dumps(payload))
    for payload in on(TOPICS.bridge_logging):
        assert parse_logging_error(json.dumps(payload), TOPICS.friendly_name) is not None


def test_the_simulator_answers_reads_in_the_same_shape() -> None:
    """A read's entry, with expose_pin, as the real converters make it (an empty slot too)."""
    answers: dict[str, dict[str, Any]] = {}
    for payload in on(TOPICS.state):
        for entry in payload.get("users", {}).values():
            answers.setdefault(entry["status"], entry)
    real_enabled, real_empty = answers["enabled"], answers["available"]
    assert user_entry_payload(real_enabled["pin_code"], expose_pin=True) == real_enabled
    assert user_entry_payload(None, expose_pin=True) == real_empty
