"""The external contract, section 10 (docs/native-protocol.md): the native lock protocol, against
the simulated lock and against a lock written here from the contract alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from drivers.native.protocol import ERRORS as NATIVE_ERRORS
from gateway.model import Json
from tests.conftest import ConfigFactory
from tests.contract import (
    first_message,
    is_uuid,
)
from tests.harness import (
    Recorder,
    Site,
    barrier,
    create,
    device,
    get_code,
    is_event,
    ok,
    payload_json,
    running_site,
)
from tests.helpers import Probe

# -- section 10: the native lock protocol -------------------------------------------------------


async def test_simulated_lock_topics_and_gateway_commands(make_config: ConfigFactory) -> None:
    config = make_config(timing={"resync_interval": "15m"})
    async with running_site(config) as site:
        availability = await first_message(
            await site.api.subscribe("locks/front_door/availability")
        )
        assert availability.retain
        assert payload_json(availability) == {"state": "online"}
        slots = await first_message(await site.api.subscribe("locks/front_door/slots"))
        assert slots.retain
        table = payload_json(slots)
        assert set(table) == {"capacity", "code_lengths", "slots"}
        assert table["capacity"] == 30
        assert table["code_lengths"] == [4, 8]
        assert set(table["slots"]) == {str(n) for n in range(1, 31)}

        commands = await Recorder.commands(site)
        results = await Recorder.of(site, "locks/front_door/result")
        made = await create(site, device_id="front_door", code="4821")
        await barrier(site)
        (command,) = commands.pull()
        assert set(command) == {"id", "op", "slot", "code"}
        assert (command["op"], command["code"]) == ("set", "4821")
        assert is_uuid(command["id"])
        assert command["slot"] == (await get_code(site, made["access_code_id"]))["slot"]
        assert results.pull() == [{"id": command["id"], "ok": True}]

        await site.advance(900)  # resync_interval: a read of the whole table
        await barrier(site)
        (read,) = commands.pull()[1:]
        assert set(read) == {"id", "op"}
        assert read["op"] == "read"

        ok(await site.api.call("access_codes/delete", access_code_id=made["access_code_id"]))
        await barrier(site)
        (clear,) = commands.pull()[2:]
        assert set(clear) == {"id", "op", "slot"}
        assert (clear["op"], clear["slot"]) == ("clear", command["slot"])
        # Commands and results are not retained: a newcomer finds none.
        late = await site.api.subscribe("locks/+/command")
        late_results = await site.api.subscribe("locks/+/result")
        with pytest.raises(TimeoutError):
            await first_message(late, timeout=0.2)
        assert late_results.empty()


def test_native_error_words() -> None:
    assert set(NATIVE_ERRORS) == {
        "slot_out_of_range",
        "invalid_code",
        "duplicate_code",
        "busy",
        "internal",
    }


async def until(probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5.0) -> None:
    """Ask ``probe`` again until it answers ``expected`` (for changes no event announces)."""
    async with asyncio.timeout(timeout):
        while await probe() != expected:
            await asyncio.sleep(0.01)


class HandLock:
    """A lock written from section 10 alone, on a plain MQTT client, with extra fields in every
    payload (the gateway must ignore what it does not know)."""

    def __init__(self, probe: Probe, base: str, capacity: int = 4) -> None:
        self.probe = probe
        self.base = base
        self.capacity = capacity
        self.slots: dict[str, str | None] = {str(n): None for n in range(1, capacity + 1)}
        self.commands: list[Json] = []

    async def announce(self, online: bool = True) -> None:
        state = {"state": "online" if online else "offline", "battery": 87}
        await self.probe.publish(f"{self.base}/availability", state, retain=True)
        if online:
            await self.publish_table()

    async def publish_table(self) -> None:
        table = {
            "capacity": self.capacity,
            "code_lengths": [4, 6],
            "slots": self.slots,
            "firmware": "1.2.3",
        }
        await self.probe.publish(f"{self.base}/slots", table, retain=True)

    async def serve(self) -> None:
        while True:
            command = await self.probe.next(f"{self.base}/command", timeout=3600)
            self.commands.append(command)
            if command["op"] == "set":
                self.slots[str(command["slot"])] = command["code"]
            elif command["op"] == "clear":
                self.slots[str(command["slot"])] = None
            await self.publish_table()
            answer = {"id": command["id"], "ok": True, "slots": self.slots, "took_ms": 3}
            await self.probe.publish(f"{self.base}/result", answer)


async def test_a_lock_written_from_the_contract(make_config: ConfigFactory, probe: Probe) -> None:
    config = make_config(
        devices=[{"device_id": "hand", "name": "Hand", "driver": "native", "topic": "it/hand"}]
    )
    hand = HandLock(probe, "it/hand")
    await probe.subscribe("it/hand/command")
    await hand.announce()
    server = asyncio.create_task(hand.serve())
    try:
        async with running_site(config, simulate=False) as site:
            assert hand.commands, "the gateway reads the table at start"
            for read in hand.commands:
                assert set(read) == {"id", "op"}
                assert read["op"] == "read"
                assert is_uuid(read["id"])
            found = await device(site, "hand")
            assert found["properties"]["online"] is True
            assert found["properties"]["max_active_codes_supported"] == 4
            assert found["properties"]["supported_code_lengths"] == [4, 5, 6]
            assert found["errors"] == []

            made = await create(site, device_id="hand", code="48213")
            await site.settled()
            command = hand.commands[-1]
            assert set(command) == {"id", "op", "slot", "code"}
            assert (command["op"], command["code"]) == ("set", "48213")
            got = await get_code(site, made["access_code_id"])
            assert (got["status"], got["slot"], got["errors"]) == ("set", command["slot"], [])
            assert hand.slots[str(command["slot"])] == "48213"

            # Typed in at the keypad: the lock republishes its table on its own.
            free = next(k for k, v in hand.slots.items() if v is None)
            hand.slots[free] = "7777"
            await hand.publish_table()

            async def unmanaged() -> list[tuple[int, str]]:
                reply = ok(await site.api.call("access_codes/unmanaged/list", device_id="hand"))
                return [(c["slot"], c["code"]) for c in reply["access_codes"]]

            await until(unmanaged, [(int(free), "7777")])

            ok(await site.api.call("access_codes/delete", access_code_id=made["access_code_id"]))
            await site.settled()
            clear = hand.commands[-1]
            assert set(clear) == {"id", "op", "slot"}
            assert (clear["op"], clear["slot"]) == ("clear", command["slot"])
            assert hand.slots[str(command["slot"])] is None

            events = await Recorder.events(site)
            await hand.announce(online=False)
            await events.wait(is_event("device.disconnected", device_id="hand"))
            await site.settled()
            found = await device(site, "hand")
            assert found["properties"]["online"] is False
            assert [e["error_code"] for e in found["errors"]] == ["device_disconnected"]
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


# -- section 11: T/event ------------------------------------------------------------------------


async def test_a_lock_written_from_the_contract_tells_who_opened_the_door(
    make_config: ConfigFactory, probe: Probe
) -> None:
    config = make_config(
        devices=[{"device_id": "hand", "name": "Hand", "driver": "native", "topic": "it/hand"}]
    )
    hand = HandLock(probe, "it/hand")
    await probe.subscribe("it/hand/command")
    await hand.announce()
    server = asyncio.create_task(hand.serve())

    async def set_on_lock(site: Site, events: Recorder, **params: Any) -> tuple[str, int]:
        made = await create(site, device_id="hand", **params)
        cid = made["access_code_id"]
        await events.wait(is_event("access_code.set_on_device", access_code_id=cid))
        return cid, (await get_code(site, cid))["slot"]

    try:
        async with running_site(config, simulate=False) as site:
            events = await Recorder.events(site)
            assert (await device(site, "hand"))["properties"]["has_native_entry_events"] is False
            guest, slot = await set_on_lock(site, events, code="48213")
            # Not retained, with fields the contract does not name.
            await probe.publish(
                "it/hand/event",
                {"type": "unlocked", "method": "keycode", "slot": slot, "user_name": "Jo"},
            )
            (event,) = await events.wait(is_event("lock.unlocked"))
            assert event["device_id"] == "hand"
            assert event["access_code_id"] == guest
            assert (event["access_code_is_managed"], event["method"]) == (True, "keycode")
            assert event["slot"] == slot
            await barrier(site)
            assert (await device(site, "hand"))["properties"]["has_native_entry_events"] is True

            once, slot = await set_on_lock(site, events, code="13579", is_one_time_use=True)
            await probe.publish(
                "it/hand/event", {"type": "unlocked", "method": "keycode", "slot": slot}
            )
            await events.wait(is_event("access_code.deleted", access_code_id=once))
            assert hand.slots[str(slot)] is None
            assert hand.commands[-1] == {"id": hand.commands[-1]["id"], "op": "clear", "slot": slot}
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
