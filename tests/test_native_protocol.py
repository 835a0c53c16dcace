"""The native protocol's payloads: what locks send is parsed leniently but never half-parsed."""

from __future__ import annotations

import json

import pytest

from drivers.native.protocol import (
    BadCommand,
    Command,
    PayloadError,
    Result,
    SlotReport,
    Topics,
    availability_payload,
    command_payload,
    event_payload,
    parse_availability,
    parse_command,
    parse_event,
    parse_result,
    parse_slots,
    result_payload,
    slots_payload,
)
from gateway.domain import EntryEvent, EntryKind, EntryMethod
from gateway.mqtt import encode


def test_topics_hang_off_the_base_topic() -> None:
    topics = Topics("locks/front_door")
    assert topics.availability == "locks/front_door/availability"
    assert topics.slots == "locks/front_door/slots"
    assert topics.command == "locks/front_door/command"
    assert topics.result == "locks/front_door/result"
    assert topics.event == "locks/front_door/event"


# -- availability -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b'{"state":"online"}', True),
        (b'{"state":"offline"}', False),
        (b'{"state":"online","battery":80}', True),
        (b"online", True),
        (b"offline", False),
    ],
)
def test_availability(payload: bytes, online: bool) -> None:
    assert parse_availability(payload) is online


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"state":"sleeping"}', "state"),
        (b"{}", "state"),
        (b"[]", "payload"),
        (b"not json", "payload"),
        (b"\xff\xfe", "payload"),
    ],
)
def test_availability_refuses_wrong_shapes(payload: bytes, field: str) -> None:
    with pytest.raises(PayloadError, match=f"^{field}:"):
        parse_availability(payload)


def test_availability_round_trips() -> None:
    for online in (True, False):
        assert parse_availability(encode(availability_payload(online))) is online


# -- slots ----------------------------------------------------------------------------------


def test_slots_full_report() -> None:
    payload = b'{"capacity":3,"code_lengths":[4,8],"slots":{"1":"4821","2":null,"3":"0007"}}'
    assert parse_slots(payload) == SlotReport(
        capacity=3, code_lengths=(4, 8), slots={1: "4821", 2: None, 3: "0007"}
    )


def test_slots_tolerate_extra_fields_and_missing_metadata() -> None:
    payload = b'{"slots":{"2":"1234"},"firmware":"1.2","battery":{"level":80}}'
    assert parse_slots(payload) == SlotReport(capacity=None, code_lengths=None, slots={2: "1234"})


def test_slots_builder_writes_every_slot_and_round_trips() -> None:
    payload = slots_payload(4, (4, 6), {2: "1234", 4: "000000"})
    assert payload == {
        "capacity": 4,
        "code_lengths": [4, 6],
        "slots": {"1": None, "2": "1234", "3": None, "4": "000000"},
    }
    report = parse_slots(encode(payload))
    assert report.slots == {1: None, 2: "1234", 3: None, 4: "000000"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"capacity": 3}, "slots"),
        ({"slots": []}, "slots"),
        ({"slots": {"0": None}}, "slots.0"),
        ({"slots": {"01": None}}, "slots.01"),
        ({"slots": {"-1": None}}, "slots.-1"),
        ({"slots": {"one": None}}, "slots.one"),
        ({"slots": {" 1": None}}, "slots. 1"),
        ({"slots": {"3": 1234}}, "slots.3"),
        ({"slots": {"3": ["1234"]}}, "slots.3"),
        ({"capacity": 2, "slots": {"3": None}}, "slots.3"),
        ({"capacity": "30", "slots": {}}, "capacity"),
        ({"capacity": True, "slots": {}}, "capacity"),
        ({"capacity": 0, "slots": {}}, "capacity"),
        ({"code_lengths": [4], "slots": {}}, "code_lengths"),
        ({"code_lengths": "4-8", "slots": {}}, "code_lengths"),
        ({"code_lengths": [8, 4], "slots": {}}, r"code_lengths\[1\]"),
        ({"code_lengths": [0, 4], "slots": {}}, r"code_lengths\[0\]"),
    ],
)
def test_slots_refuse_wrong_shapes(payload: dict[str, object], field: str) -> None:
    with pytest.raises(PayloadError, match=f"^{field}:"):
        parse_slots(json.dumps(payload).encode())


# -- results --------------------------------------------------------------------------------


def test_results() -> None:
    assert parse_result(b'{"id":"a","ok":true}') == Result(id="a", ok=True)
    assert parse_result(b'{"id":"a","ok":false,"error":"busy"}') == Result("a", False, "busy")
    # A refusal without a reason is still a refusal.
    assert parse_result(b'{"id":"a","ok":false}') == Result("a", False, "internal")


def test_result_may_carry_the_table() -> None:
    payload = b'{"id":"a","ok":true,"slots":{"1":"1234"},"capacity":30}'
    assert parse_result(payload) == Result(id="a", ok=True)


def test_results_round_trip() -> None:
    assert parse_result(encode(result_payload("x"))) == Result("x", True)
    assert parse_result(encode(result_payload("x", "duplicate_code"))) == Result(
        "x", False, "duplicate_code"
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"ok": True}, "id"),
        ({"id": "", "ok": True}, "id"),
        ({"id": 7, "ok": True}, "id"),
        ({"id": "a"}, "ok"),
        ({"id": "a", "ok": "true"}, "ok"),
        ({"id": "a", "ok": False, "error": 5}, "error"),
    ],
)
def test_results_refuse_wrong_shapes(payload: dict[str, object], field: str) -> None:
    with pytest.raises(PayloadError, match=f"^{field}:"):
        parse_result(json.dumps(payload).encode())


# -- commands -------------------------------------------------------------------------------


def test_command_payloads() -> None:
    assert command_payload("a", "set", 3, "4821") == {
        "id": "a",
        "op": "set",
        "slot": 3,
        "code": "4821",
    }
    assert command_payload("b", "clear", 3) == {"id": "b", "op": "clear", "slot": 3}
    assert command_payload("c", "read") == {"id": "c", "op": "read"}


@pytest.mark.parametrize(
    "command",
    [Command("a", "set", 3, "0123"), Command("b", "clear", 1), Command("c", "read")],
)
def test_commands_round_trip(command: Command) -> None:
    payload = command_payload(command.id, command.op, command.slot, command.code)
    assert parse_command(encode(payload)) == command


def test_command_ignores_extra_fields_and_a_code_on_clear() -> None:
    payload = b'{"id":"a","op":"clear","slot":2,"code":"1234","trace":"x"}'
    assert parse_command(payload) == Command("a", "clear", 2)


@pytest.mark.parametrize(
    ("payload", "command_id", "error", "field"),
    [
        (b"[1]", None, "internal", "payload"),
        (b"{", None, "internal", "payload"),
        (b'{"op":"read"}', None, "internal", "id"),
        (b'{"id":"a","op":"unlock"}', "a", "internal", "op"),
        (b'{"id":"a","op":"set","code":"1234"}', "a", "slot_out_of_range", "slot"),
        (b'{"id":"a","op":"clear","slot":"3"}', "a", "slot_out_of_range", "slot"),
        (b'{"id":"a","op":"read","slot":true}', "a", "slot_out_of_range", "slot"),
        (b'{"id":"a","op":"set","slot":3,"code":1234}', "a", "invalid_code", "code"),
        (b'{"id":"a","op":"set","slot":3}', "a", "invalid_code", "code"),
    ],
)
def test_bad_commands_say_whom_to_answer_and_with_what(
    payload: bytes, command_id: str | None, error: str, field: str
) -> None:
    with pytest.raises(BadCommand, match=f"^{field}:") as caught:
        parse_command(payload)
    assert caught.value.id == command_id
    assert caught.value.error == error


# -- events (contract section 11) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        (
            {"type": "unlocked", "method": "keycode", "slot": 3},
            EntryEvent(EntryKind.UNLOCKED, EntryMethod.KEYCODE, 3),
        ),
        (
            {"type": "access_denied", "method": "keycode"},
            EntryEvent(EntryKind.ACCESS_DENIED, EntryMethod.KEYCODE),
        ),
        (
            {"type": "locked", "method": "automatic"},
            EntryEvent(EntryKind.LOCKED, EntryMethod.AUTOMATIC),
        ),
        # A slot counts for keycode only; extra fields are ignored.
        (
            {"type": "unlocked", "method": "manual", "slot": 3, "battery": 80},
            EntryEvent(EntryKind.UNLOCKED, EntryMethod.MANUAL),
        ),
        # The door did operate: a method missing or not known yet is "unknown".
        ({"type": "locked"}, EntryEvent(EntryKind.LOCKED)),
        ({"type": "unlocked", "method": "fingerprint"}, EntryEvent(EntryKind.UNLOCKED)),
    ],
)
def test_events(payload: dict[str, object], event: EntryEvent) -> None:
    assert parse_event(encode(payload)) == event


@pytest.mark.parametrize(
    "event",
    [
        EntryEvent(EntryKind.UNLOCKED, EntryMethod.KEYCODE, 7),
        EntryEvent(EntryKind.ACCESS_DENIED, EntryMethod.KEYCODE),
        EntryEvent(EntryKind.LOCKED, EntryMethod.REMOTE),
    ],
)
def test_events_round_trip(event: EntryEvent) -> None:
    assert parse_event(encode(event_payload(event))) == event


def test_an_event_payload_names_a_slot_for_keycode_only() -> None:
    assert event_payload(EntryEvent(EntryKind.UNLOCKED, EntryMethod.MANUAL, 3)) == {
        "type": "unlocked",
        "method": "manual",
    }


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "type"),
        ({"type": "opened"}, "type"),
        ({"type": ["unlocked"]}, "type"),
        ({"type": "unlocked", "method": 7}, "method"),
        ({"type": "unlocked", "method": "keycode", "slot": "3"}, "slot"),
        ({"type": "unlocked", "method": "keycode", "slot": 0}, "slot"),
        ({"type": "unlocked", "method": "keycode", "slot": True}, "slot"),
        ([], "payload"),
    ],
)
def test_events_refuse_wrong_shapes(payload: object, field: str) -> None:
    with pytest.raises(PayloadError, match=f"^{field}"):
        parse_event(encode(payload))  # type: ignore[arg-type]


def test_an_oversized_event_is_refused_unparsed() -> None:
    with pytest.raises(PayloadError, match=r"^payload"):
        parse_event(b'{"type": "unlocked", "pad": "' + b"x" * 70_000 + b'"}')
