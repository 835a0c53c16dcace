"""The zigbee2mqtt protocol, pure: topics, the requests the driver builds, and parsing of state,
availability and logging messages (bad ones included), with PINs redacted from error lines."""

from __future__ import annotations

import pytest

from drivers.base import Unreadable
from drivers.zigbee2mqtt.protocol import (
    PayloadError,
    PinRequest,
    StateReport,
    Topics,
    UserEntry,
    clear_payload,
    parse_availability,
    parse_get,
    parse_logging_error,
    parse_set,
    parse_state,
    range_error_payload,
    read_all_payload,
    read_payload,
    redact_pins,
    set_payload,
    set_timeout_payload,
)
from gateway.mqtt import encode

# -- payloads ------------------------------------------------------------------------------------


def test_topics() -> None:
    topics = Topics("z2m", "hall/lock")
    assert (topics.state, topics.set, topics.get, topics.availability) == (
        "z2m/hall/lock",
        "z2m/hall/lock/set",
        "z2m/hall/lock/get",
        "z2m/hall/lock/availability",
    )
    assert (topics.bridge_state, topics.bridge_logging) == (
        "z2m/bridge/state",
        "z2m/bridge/logging",
    )


def test_requests_are_built_as_zigbee2mqtt_wants_them() -> None:
    assert encode(set_payload(3, "0123")) == (
        b'{"pin_code":{"user":3,"user_type":"unrestricted","user_enabled":true,"pin_code":"0123"}}'
    )
    assert clear_payload(0) == {
        "pin_code": {
            "user": 0,
            "user_type": "unrestricted",
            "user_enabled": False,
            "pin_code": None,
        }
    }
    assert read_payload(7) == {"pin_code": {"user": 7}}
    # And the simulator understands them.
    assert parse_set(encode(set_payload(3, "0123"))) == PinRequest(user=3, pin_code="0123")
    assert parse_set(encode(clear_payload(3))) == PinRequest(user=3, pin_code=None)
    assert parse_get(encode(read_payload(7))) == PinRequest(user=7)
    assert parse_get(encode(read_all_payload())) == PinRequest(user=None)
    for bad in (b"{}", b'{"pin_code": {"user": -1}}', b'{"pin_code": {"user": true}}', b"[]"):
        with pytest.raises(PayloadError):
            parse_set(bad)
        with pytest.raises(PayloadError):
            parse_get(bad)


def test_state_message_users() -> None:
    report = parse_state(
        b'{"battery": 80, "lock_state": "locked", "users": {'
        b'"0": {"status": "enabled", "pin_code": "0123"},'
        b'"1": {"status": "available"},'
        b'"2": {"status": "enabled"},'
        b'"3": {"status": "disabled", "pin_code": "5555"}}}'
    )
    assert report.action is None
    assert report.users == {
        0: UserEntry("enabled", "0123"),
        1: UserEntry("available"),
        2: UserEntry("enabled"),
        3: UserEntry("disabled", "5555"),
    }
    values = {user: entry.value() for user, entry in report.users.items()}
    # expose_pin off: an enabled user is occupied but unreadable; disabled never counts as ours.
    assert values == {0: "0123", 1: None, 2: Unreadable.OCCUPIED, 3: Unreadable.OCCUPIED}
    assert parse_state(b'{"battery": 80}') == StateReport(users={})


def test_state_message_actions() -> None:
    added = parse_state(b'{"action": "pin_code_added", "action_user": 4, "users": {}}')
    assert (added.action, added.action_user, added.programming_user) == ("pin_code_added", 4, 4)
    for action in ("pin_code_deleted", "pin_code_changed"):
        report = parse_state(f'{{"action": "{action}", "action_user": 0}}')
        assert report.programming_user == 0
    unlock = parse_state(
        b'{"action": "unlock", "action_source_name": "keypad", "action_user": 2, "users": {}}'
    )
    assert unlock.programming_user is None  # an unlock programs nothing


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'"users"',
        b'{"users": []}',
        b'{"action": "pin_code_added", "action_user": "x"}',
    ],
)
def test_bad_state_messages(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_state(payload)


@pytest.mark.parametrize(
    ("entry", "refused"),
    [
        ('"one": {"status": "enabled"}', "users.one: user keys must be decimal numbers from 0"),
        ('"01": {"status": "enabled"}', "users.01: user keys must be decimal numbers from 0"),
        ('"1": {"status": 3}', "users.1.status: expected a string"),
        ('"1": "enabled"', "users.1: expected an object"),
        ('"1": {"status": "enabled", "pin_code": 123}', "users.1.pin_code: expected a string"),
    ],
)
def test_one_bad_entry_hides_no_other(entry: str, refused: str) -> None:
    """Finding 1: Zigbee2MQTT republishes a bad entry in every later message, for good; it is
    left out on its own, and the message still answers for every other user."""
    report = parse_state(f'{{"users": {{{entry}, "4": {{"status": "available"}}}}}}')
    assert report.users == {4: UserEntry("available")}
    assert report.refused == (refused,)


def test_a_status_the_converter_does_not_know_is_an_occupied_slot() -> None:
    """Finding 1: ``not_supported_<n>`` (0xFF past the lock's real users) is no refusal."""
    report = parse_state(
        b'{"users": {"2": {"status": "not_supported_255"}, "3": {"status": "not_supported_NaN"},'
        b' "4": {"status": "enabled", "pin_code": "4444"}}}'
    )
    assert report.refused == ()
    assert {user: entry.value() for user, entry in report.users.items()} == {
        2: Unreadable.OCCUPIED,
        3: Unreadable.OCCUPIED,
        4: "4444",
    }
    assert not report.users[2].hides_pin  # says nothing about expose_pin


def test_what_the_deep_merge_leaves_behind() -> None:
    """Finding 9: an empty slot reads ``""`` with expose_pin; an answer without ``pin_code``
    keeps the old one in Zigbee2MQTT's cache, which then betrays that PINs are hidden."""
    empty = UserEntry("available", "")
    assert (empty.value(), empty.hides_pin) == (None, False)
    leftover = UserEntry("available", "1234")  # cleared, read without expose_pin
    assert (leftover.value(), leftover.hides_pin) == (None, True)
    masked = UserEntry("enabled")
    assert (masked.value(), masked.hides_pin) == (Unreadable.OCCUPIED, True)
    stale = UserEntry("enabled", "1234")  # may be a leftover: not trusted once PINs are hidden
    assert (stale.value(), stale.value(pins_hidden=True)) == ("1234", Unreadable.OCCUPIED)
    assert UserEntry("enabled", "").value() is Unreadable.OCCUPIED


def test_pins_in_the_stacks_error_lines_are_redacted() -> None:
    """Finding 2: herdsman's text quotes the ZCL payload, PIN included."""
    line = set_timeout_payload("zb", 6, "7777")
    assert '"pincodevalue":"7777"' in line["message"]  # as the real stack says it
    error = parse_logging_error(encode(line), "zb")
    assert error is not None
    assert "7777" not in error.message
    assert '"pincodevalue":***' in error.message
    assert (error.verb, error.key, error.user) == ("set", "pin_code", 6)
    assert error.about_pin_codes
    for text, hidden in [
        ('{"user":1,"pin_code":"0123"}', "0123"),
        ("code=4826 tail", "4826"),
        ('pincodevalue: {"type":"Buffer","data":[55,55]}', "55,55"),
        ("'pin_code': '9911'", "9911"),
    ]:
        assert hidden not in redact_pins(text)
    assert redact_pins("Publish 'set' 'pin_code' to 'zb'") == "Publish 'set' 'pin_code' to 'zb'"


def test_availability_and_logging() -> None:
    assert parse_availability(b'{"state": "online"}') is True
    assert parse_availability(b'{"state": "offline"}') is False
    assert parse_availability(b"online") is True  # Zigbee2MQTT 1.x
    with pytest.raises(PayloadError):
        parse_availability(b'{"state": "maybe"}')
    line = b"{\"level\":\"error\",\"message\":\"Publish 'set' 'pin_code' to 'zb' failed: 'x'\"}"
    assert parse_logging_error(line, "zb") is not None
    assert parse_logging_error(line, "other") is None
    assert parse_logging_error(b'{"level":"info","message":"\'zb\'"}', "zb") is None
    assert parse_logging_error(b"garbage", "zb") is None
    # Finding 5: other lines about the lock are no answer to a pin_code request.
    for other in (
        "Failed to configure 'zb', attempt 2 (Error: timeout)",
        "Publish 'set' 'state' to 'zb' failed: 'Error: timeout'",
    ):
        error = parse_logging_error(encode({"level": "error", "message": other}), "zb")
        assert error is not None
        assert not error.about_pin_codes
    ranged = parse_logging_error(encode(range_error_payload("zb", "get")), "zb")
    assert ranged is not None
    assert ranged.out_of_range
