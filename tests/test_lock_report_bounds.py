"""Everything a lock or its stack reports is bounded (issue 7).

A capacity of 10^9 on a native ``T/slots`` once took the gateway to 18 GB. Now a report out of
bounds is refused as a whole: the previous table stays in effect, the device carries
``invalid_report_from_device`` naming what was wrong, the log says so once per lock, and a valid
report clears it. The parsers' bounds first, then each driver through the real gateway, the
simulated lock made to lie with its ``report`` switch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from drivers.base import CommandFailed, SlotTable, Unreadable
from drivers.bounds import MAX_PIN_LENGTH, MAX_SLOTS
from drivers.native.protocol import PayloadError, parse_slots
from drivers.payloads import MAX_PAYLOAD_BYTES
from drivers.zigbee2mqtt.protocol import parse_state
from drivers.zwave_js_ui.driver import ZwaveJsUiDriver
from drivers.zwave_js_ui.protocol import (
    Topics,
    check_value,
    parse_api_request,
    parse_user_get_result,
)
from gateway.model import Json
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.harness import Recorder, Site, device, get_code, is_event, new_code, running_site
from tests.helpers import Probe, Wakes, running, session_for

ERROR = "invalid_report_from_device"
LONG_PIN = "7" * 100_000  # the 100,000-digit PIN of the report


# -- the parsers --------------------------------------------------------------------------------


def refusal(parse: Callable[[], object]) -> str:
    with pytest.raises(PayloadError) as caught:
        parse()
    return str(caught.value)


def slots(payload: Json, **bounds: Any) -> str:
    return refusal(lambda: parse_slots(json.dumps(payload), **bounds))


def test_native_capacity_is_bounded_by_the_configured_slots_else_the_ceiling() -> None:
    huge = {"capacity": 10**9, "slots": {"1": None}}
    assert slots(huge, max_slots=30) == "capacity: 1000000000 exceeds the limit of 30 slots"
    assert slots(huge) == f"capacity: 1000000000 exceeds the limit of {MAX_SLOTS} slots"
    assert slots({"capacity": 31, "slots": {}}, max_slots=30).startswith("capacity: 31 exceeds")
    at_limit = {"capacity": 30, "slots": {str(n): None for n in range(1, 31)}}
    assert len(parse_slots(json.dumps(at_limit), max_slots=30).slots) == 30


def test_native_slot_numbers_are_within_the_capacity() -> None:
    assert slots({"capacity": 30, "slots": {"31": None}}) == "slots.31: slot 31 is outside 1-30"
    # Without a capacity, the configured slots (or the ceiling) bound the numbers.
    assert slots({"slots": {"31": None}}, max_slots=30) == "slots.31: slot 31 is outside 1-30"
    assert slots({"slots": {"1001": None}}).startswith("slots.1001: slot 1001 is outside 1-1000")
    # A key of thousands of digits is refused without being converted, and not repeated whole.
    message = slots({"slots": {"9" * 5000: None}})
    assert message.startswith("slots.999999999999...: slot ")
    assert len(message) < 100


@pytest.mark.parametrize(
    ("pin", "lengths", "expected"),
    [
        ("98x76", None, "slots.2: the PIN is not a string of digits"),
        ("", None, "slots.2: the PIN is not a string of digits"),
        ("１２３４", None, "slots.2: the PIN is not a string of digits"),  # fullwidth digits
        ("1" * 17, None, "slots.2: a PIN of 17 characters exceeds the limit of 16"),
        ("123", (4, 8), "slots.2: a PIN of 3 digits is outside the lock's code lengths 4-8"),
        ("123456789", (4, 8), "slots.2: a PIN of 9 digits is outside the lock's code lengths 4-8"),
    ],
)
def test_native_pins_are_digit_strings_of_a_sane_length(
    pin: str, lengths: tuple[int, int] | None, expected: str
) -> None:
    payload: Json = {"slots": {"2": pin}}
    if lengths is not None:
        payload["code_lengths"] = list(lengths)
    message = slots(payload)
    assert message == expected
    assert pin not in message or not pin


def test_native_pins_fit_the_configured_lengths_when_the_lock_gives_none() -> None:
    assert slots({"slots": {"1": "123456"}}, code_lengths=(4, 5)).endswith("code lengths 4-5")
    # What the lock says of itself wins over the configuration.
    report = parse_slots('{"code_lengths": [4, 6], "slots": {"1": "123456"}}', code_lengths=(4, 5))
    assert report.slots == {1: "123456"}


def test_native_code_lengths_are_sane() -> None:
    limit = f"<= {MAX_PIN_LENGTH}"
    assert slots({"code_lengths": [4, 17], "slots": {}}).endswith(limit)
    assert slots({"code_lengths": [4, 100_000], "slots": {}}).endswith(limit)
    assert slots({"code_lengths": [0, 4], "slots": {}}).startswith("code_lengths[0]:")


def test_an_oversized_message_is_refused_before_it_is_parsed() -> None:
    payload = json.dumps({"slots": {"1": LONG_PIN}})
    message = refusal(lambda: parse_slots(payload))
    assert message == f"payload: {len(payload)} bytes exceed the limit of {MAX_PAYLOAD_BYTES}"
    # Not even parsed: what is not JSON at all is refused for its size alone.
    assert refusal(lambda: parse_slots(b"[" * (MAX_PAYLOAD_BYTES + 1))).startswith("payload: ")
    assert refusal(lambda: parse_state(b" " * (MAX_PAYLOAD_BYTES + 1))).startswith("payload: ")


def state(payload: Json, **bounds: Any) -> str:
    """Why a Zigbee2MQTT state message's entries were left out (one bad entry hides no other:
    Zigbee2MQTT republishes it in every message), or why the message was refused."""
    try:
        report = parse_state(json.dumps(payload), **bounds)
    except PayloadError as exc:
        return str(exc)
    assert report.refused, "nothing was refused"
    return report.refused[0]


def test_zigbee2mqtt_users_and_pins_are_bounded() -> None:
    entry = {"status": "enabled", "pin_code": "1234"}
    assert state({"users": {"1000": entry}}) == (
        "users.1000: user 1000 (slot 1001) exceeds the limit of 1000 slots"
    )
    assert parse_state(json.dumps({"users": {"999": entry}})).users[999].pin_code == "1234"
    assert state({"users": {"1" * 40: entry}}).startswith("users.111111111111...: user ")
    for pin, problem in [
        ("98x76", "the PIN is not a string of digits"),
        (LONG_PIN[:20], "a PIN of 20 characters exceeds the limit of 16"),
        ("123", "a PIN of 3 digits is outside the lock's code lengths 4-8"),
    ]:
        message = state(
            {"users": {"0": {"status": "enabled", "pin_code": pin}}},
            capacity=10,
            code_lengths=(4, 8),
        )
        assert message == f"users.0.pin_code: {problem}"
    # Users beyond the configured slots ride along in Zigbee2MQTT's cache (someone read them):
    # not the gateway's, left out unread, whatever they hold.
    report = parse_state(
        json.dumps({"users": {"0": entry, "40": {"status": "not_supported_NaN"}}}), capacity=10
    )
    assert set(report.users) == {0}


def test_zwave_values_are_bounded() -> None:
    def value(prop: Any, raw: object, lengths: tuple[int, int] | None = None) -> str:
        return refusal(lambda: check_value(prop, raw, "userCode/3", lengths))

    assert (
        value("userCode", "1" * 30) == "userCode/3: a PIN of 30 characters exceeds the limit of 16"
    )
    assert value("userCode", "123456789", (4, 8)).endswith("outside the lock's code lengths 4-8")
    assert value("userCode", "*" * 20).endswith("a code of 20 characters exceeds the limit of 16")
    assert value("userCode", " " * 65).endswith("65 characters exceed the limit of 64")
    assert value("userCode", {"type": "Buffer", "data": [49] * 65}).endswith("limit of 64")
    assert value("userCode", {"nested": ["x"]}).startswith("userCode/3: expected a code")
    assert value("userIdStatus", 256).endswith("expected a status number 0-255")
    assert value("userIdStatus", "1").endswith("expected a status number 0-255")
    # What a real lock sends stays as it was: masked, padded, not digits, a Buffer.
    for raw in (
        "**********",
        "1234\x00\x00\x00\x00\x00\x00",
        "12ab",
        {"type": "Buffer", "data": [49, 50, 51, 52]},
    ):
        assert check_value("userCode", raw, "userCode/3", (4, 8)) == raw
    assert refusal(
        lambda: parse_user_get_result({"userIdStatus": 1, "userCode": "5" * 40})
    ).startswith("result.userCode: a PIN of 40 characters")
    assert (
        parse_user_get_result({"userIdStatus": 1, "userCode": "**********"}) is Unreadable.OCCUPIED
    )


def test_zwave_slot_numbers_in_topics_saturate() -> None:
    topics = Topics.for_node("zwave", 5, "gw")
    assert topics.parse_value_topic(topics.user_code(7)) == ("userCode", 7)
    found = topics.parse_value_topic(f"{topics.user_code(1)[:-1]}{'9' * 5000}")
    assert found is not None
    assert found[1] > MAX_SLOTS
    assert topics.parse_value_topic(f"{topics.user_code(1)[:-1]}0") is None


def test_no_table_beyond_the_ceiling_can_exist() -> None:
    assert SlotTable(capacity=MAX_SLOTS).capacity == MAX_SLOTS
    with pytest.raises(ValueError, match="capacity"):
        SlotTable(capacity=10**9)


# -- through the real gateway -------------------------------------------------------------------


async def observed_rows(site: Site, device_id: str) -> int:
    assert site.gateway.store is not None
    row = await site.gateway.store.fetchone(
        "SELECT COUNT(*) AS n FROM observed_slots WHERE device_id = ?", (device_id,)
    )
    assert row is not None
    return int(row["n"])


def refused_with(device_id: str, fragment: str) -> Callable[[Json], bool]:
    """A device object carrying the error, its message naming ``fragment``."""

    def match(found: Json) -> bool:
        return found.get("device_id") == device_id and any(
            e["error_code"] == ERROR and fragment in e["message"] for e in found["errors"]
        )

    return match


def warnings_logged(out: str, event: str, device_id: str) -> int:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return sum(
        1
        for line in lines
        if line.get("event") == event
        and line.get("device_id") == device_id
        and line.get("level") == "warning"
    )


async def lie(site: Site, device_id: str, payload: object, **where: object) -> None:
    """The simulated lock publishes ``payload`` as its report (see docs/simulator.md)."""
    await site.lock(device_id).control({"report": {"payload": payload, **where}})


async def prompt(site: Site, device_id: str) -> Json:
    """``devices/get``, which must answer at once even while a lock lies."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    found = await device(site, device_id)
    assert loop.time() - started < 1.0
    return found


async def watched_with_a_set_code(
    site: Site, device_id: str, pin: str
) -> tuple[Recorder, Recorder, str]:
    """Events and the device's objects recorded from now on, and a code already ``set``."""
    events = await Recorder.events(site)
    objects = await Recorder.of(site, f"{site.config.prefix}/devices/{device_id}")
    cid = await new_code(site, pin, device_id=device_id)
    await site.settled()
    assert (await get_code(site, cid))["status"] == "set"
    return events, objects, cid


async def test_a_native_lock_lying_about_its_capacity_changes_nothing(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        devices=[{"device_id": "front_door", "name": "Front", "driver": "native", "slots": 30}]
    )
    async with running_site(config) as site:
        events, objects, cid = await watched_with_a_set_code(site, "front_door", "1357")
        assert await observed_rows(site, "front_door") == 30
        capsys.readouterr()

        # The message that took the gateway to 18 GB.
        await lie(site, "front_door", {"capacity": 10**9, "slots": {"1": None}})
        added = is_event("device.error_added", device_id="front_door", error_code=ERROR)
        await events.wait(added)
        found = await prompt(site, "front_door")
        (error,) = [e for e in found["errors"] if e["error_code"] == ERROR]
        assert error["message"] == (
            "The lock's last report was refused:"
            " capacity: 1000000000 exceeds the limit of 30 slots."
        )
        assert found["properties"]["max_active_codes_supported"] == 30
        # The codes on it carry the device's error, as they carry device_disconnected.
        assert ERROR in {e["error_code"] for e in (await get_code(site, cid))["errors"]}

        # The old table stays in effect: nothing stored, nothing thought removed or rewritten.
        await site.advance(60)
        assert await observed_rows(site, "front_door") == 30
        assert (await get_code(site, cid))["status"] == "set"
        assert site.lock("front_door").slots == {1: "1357"}

        # More lies of every kind: each named in turn, none logged again, none a new event.
        for payload, fragment in [
            ({"capacity": 30, "slots": {"1": "1357", "2": "98x76"}}, "slots.2: the PIN is not"),
            ({"capacity": 30, "slots": {"1": "1" * 17}}, "slots.1: a PIN of 17 characters"),
            ({"capacity": 30, "slots": {"1": LONG_PIN}}, "payload: 100"),
            ({"capacity": 30, "slots": {"31": None}}, "slots.31: slot 31 is outside 1-30"),
            ({"slots": {"1": None}, "pad": "x" * MAX_PAYLOAD_BYTES}, "bytes exceed the limit"),
            ({"capacity": 30, "code_lengths": [4, 100], "slots": {}}, "code_lengths: [4, 100]"),
        ]:
            await lie(site, "front_door", payload)
            await objects.wait(refused_with("front_door", fragment))
            await prompt(site, "front_door")
        await site.settled()
        assert await observed_rows(site, "front_door") == 30
        assert (await get_code(site, cid))["status"] == "set"
        assert events.count(added) == 1
        out = capsys.readouterr().out
        assert warnings_logged(out, "native.report_refused", "front_door") == 1
        assert "98x76" not in out
        assert "1" * 17 not in out
        assert LONG_PIN[:50] not in out

        # A good table again (a PIN typed at the keypad republishes it): the error goes.
        await site.lock("front_door").control({"keypad": {"slot": 5, "code": "2468"}})
        cleared = is_event("device.error_cleared", device_id="front_door", error_code=ERROR)
        await events.wait(cleared)
        await site.settled()
        assert ERROR not in {e["error_code"] for e in (await device(site))["errors"]}
        assert (await get_code(site, cid))["status"] == "set"

        # Lying again is a new episode: logged again, raised again.
        await lie(site, "front_door", {"capacity": 10**7, "slots": {}})
        await events.wait(added, count=2)
        assert warnings_logged(capsys.readouterr().out, "native.report_refused", "front_door") == 1
        assert await observed_rows(site, "front_door") == 30


async def test_a_zigbee2mqtt_state_message_out_of_bounds_is_refused(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        devices=[{"device_id": "zb", "name": "Zigbee door", "driver": "zigbee2mqtt", "slots": 10}]
    )
    async with running_site(config) as site:
        events, objects, cid = await watched_with_a_set_code(site, "zb", "4826")
        capsys.readouterr()

        pin = {"status": "enabled", "pin_code": "3" * 20}
        await lie(site, "zb", {"users": {"0": pin}, "battery": 80})
        added = is_event("device.error_added", device_id="zb", error_code=ERROR)
        await events.wait(added)
        await objects.wait(refused_with("zb", "users.0.pin_code: a PIN of 20 characters"))
        await lie(site, "zb", {"users": {"5000": {"status": "available"}}})
        await objects.wait(refused_with("zb", "users.5000: user 5000 (slot 5001) exceeds"))
        await lie(site, "zb", {"users": {"2": {"status": "enabled", "pin_code": "98x76"}}})
        await objects.wait(refused_with("zb", "users.2.pin_code: the PIN is not"))
        await prompt(site, "zb")
        await site.advance(60)
        assert (await get_code(site, cid))["status"] == "set"
        out = capsys.readouterr().out
        assert warnings_logged(out, "z2m.report_refused", "zb") == 1
        assert "3" * 20 not in out
        assert "98x76" not in out

        # A good state message (the keypad's programming event) clears it.
        await site.lock("zb").control({"keypad": {"slot": 5, "code": "2468"}})
        await events.wait(is_event("device.error_cleared", device_id="zb", error_code=ERROR))
        await site.settled()
        assert (await get_code(site, cid))["status"] == "set"
        assert events.count(added) == 1


async def test_a_zwave_value_out_of_bounds_is_refused_until_its_topic_is_good(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        devices=[
            {
                "device_id": "zw",
                "name": "Z-Wave door",
                "driver": "zwave_js_ui",
                "node_id": 5,
                "slots": 10,
            }
        ]
    )
    async with running_site(config) as site:
        events, objects, cid = await watched_with_a_set_code(site, "zw", "4826")
        capsys.readouterr()

        await lie(site, "zw", {"time": 1, "value": "1" * 30}, slot=1)
        added = is_event("device.error_added", device_id="zw", error_code=ERROR)
        await events.wait(added)
        await objects.wait(refused_with("zw", "userCode/1: a PIN of 30 characters"))
        await lie(site, "zw", {"time": 2, "value": 1}, slot=5000)
        await objects.wait(refused_with("zw", "userCode/5000: slot 5000 is outside 1-1000"))
        await prompt(site, "zw")
        await site.advance(60)
        assert (await get_code(site, cid))["status"] == "set"  # slot 1 still shows the code

        # Slot 1 reports its code again: its refusal goes, slot 5000's stands.
        await lie(site, "zw", {"time": 3, "value": "4826"}, slot=1)
        await lie(site, "zw", {"time": 4, "value": "12ab"}, slot=2)  # a marker: not a refusal
        await objects.wait(refused_with("zw", "userCode/5000"))
        # The stack takes its retained lie back (an empty retained message): cleared.
        await lie(site, "zw", "", slot=5000)
        await events.wait(is_event("device.error_cleared", device_id="zw", error_code=ERROR))
        await site.settled()
        assert (await get_code(site, cid))["status"] == "set"
        assert events.count(added) == 1
        out = capsys.readouterr().out
        assert warnings_logged(out, "zwave.report_refused", "zw") == 1
        assert "1" * 30 not in out


async def test_a_zwave_users_count_beyond_the_ceiling_is_refused(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> None:
    """Without configured slots the capacity is the lock's getUsersCount: bounded too."""
    config = make_config()
    topics = Topics.for_node("zwave", 5, "gw")
    await probe.subscribe(topics.api_request("sendCommand"))
    await probe.publish(topics.gateway_status, {"value": True}, retain=True)
    await probe.publish(topics.node_status, {"value": True, "status": "Alive"}, retain=True)
    session = session_for(broker, "gateway")
    driver = ZwaveJsUiDriver("zw", topics, session, config.timing)
    wakes = Wakes()
    await driver.start(wakes)
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.online)

        async def answer(count: int) -> None:
            raw = await probe.next_raw(topics.api_request("sendCommand"))
            args, origin = parse_api_request(raw)
            reply = {
                "success": True,
                "message": "",
                "result": count,
                "args": args,
                "origin": origin,
            }
            await probe.publish(topics.api_reply("sendCommand"), reply)

        read = asyncio.create_task(driver.read(), name="test-read")
        await answer(10**9)
        with pytest.raises(CommandFailed):
            await read
        assert driver.refused_report == "getUsersCount: 1000000000 exceeds the limit of 1000 slots"
        assert driver.table is None

        # Beyond the configured slots is not a lie: ignored, whatever it holds.
        bounded = ZwaveJsUiDriver(
            "zw2", Topics.for_node("zwave", 6, "gw"), session, config.timing, slots=10
        )
        await bounded.start(wakes)
        other = Topics.for_node("zwave", 6, "gw")
        await probe.publish(other.user_code(20), {"time": 1, "value": "x" * 500})
        await probe.publish(other.user_code(3), {"time": 1, "value": "9" * 17})
        await wakes.until(lambda: bounded.refused_report is not None)
        assert (
            bounded.refused_report == "userCode/3: a PIN of 17 characters exceeds the limit of 16"
        )
