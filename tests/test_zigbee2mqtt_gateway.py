"""The zigbee2mqtt driver end to end through the gateway, against the simulated lock: codes on the
lock, masked PINs, and resync reading only the slots the gateway answers for."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import ConfigFactory
from tests.harness import Recorder, barrier, get_code, is_event, new_code, running_site
from tests.zigbee2mqtt_helpers import PIN, TIMEOUT, TOPICS, ZB, logged, zb_config

# -- end to end ----------------------------------------------------------------------------------


async def test_through_the_gateway(make_config: ConfigFactory) -> None:
    config = zb_config(make_config)
    async with running_site(config) as site:
        events = await Recorder.events(site)
        lock = site.lock(ZB)
        cid = await new_code(site, "4826", device_id=ZB, name="Gus")
        await barrier(site)
        got = await get_code(site, cid)
        assert (got["status"], got["errors"]) == ("set", [])
        slot = got["slot"]
        assert lock.slots[slot] == "4826"

        # Cleared at the keypad: the action makes the driver look, the gateway restores it.
        changed = is_event("access_code.modified_external_to_gateway", access_code_id=cid)
        await lock.control({"keypad": {"slot": slot, "code": None}})
        await events.wait(changed)
        await barrier(site)
        assert lock.slots[slot] == "4826"
        assert (await get_code(site, cid))["status"] == "set"

        # A code added at the keypad in a free slot shows up as unmanaged.
        await lock.control({"keypad": {"slot": 9, "code": "9191"}})

        async def unmanaged() -> list[tuple[int, str]]:
            reply = await site.api.call("access_codes/unmanaged/list", device_id=ZB)
            return [(c["slot"], c["code"]) for c in reply["access_codes"]]

        async with asyncio.timeout(5):
            while (9, "9191") not in await unmanaged():
                await asyncio.sleep(0.02)
        assert (1, PIN) in await unmanaged()


async def test_masked_pins_through_the_gateway(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """expose_pin off is a setting gone wrong: codes still go on, but the device says why their
    PINs cannot be checked, and the log says it once."""
    async with running_site(zb_config(make_config, expose_pin=False)) as site:
        cid = await new_code(site, "4826", device_id=ZB)
        await barrier(site)
        got = await get_code(site, cid)
        assert got["status"] == "set"
        assert [e["error_code"] for e in got["errors"]] == ["invalid_report_from_device"]
        assert "expose_pin" in got["errors"][0]["message"]
        assert site.lock(ZB).slots[got["slot"]] == "4826"
        assert got["slot"] != 1  # slot 1 is occupied, though its PIN cannot be read
    assert logged(capsys.readouterr().out, "z2m.pins_hidden") == 1


async def test_resync_reads_only_the_slots_the_gateway_answers_for(
    make_config: ConfigFactory,
) -> None:
    """A Zigbee lock pays battery and airtime for every read: after the first full read, the
    periodic resync asks only for the slots holding the gateway's codes."""
    config = make_config(
        timing={"command_timeout": TIMEOUT, "resync_interval": "15m"},
        devices=[{"device_id": ZB, "driver": "zigbee2mqtt", "slots": 10}],
        simulator={"latency": "1ms"},
    )
    async with running_site(config) as site:
        cid = await new_code(site, "4826", device_id=ZB)
        await barrier(site)
        slot = (await get_code(site, cid))["slot"]
        gets = await site.api.subscribe(TOPICS.get)
        await site.advance(15 * 60)
        asked = []
        while not gets.empty():
            message = await gets.get()
            assert isinstance(message.payload, bytes)
            asked.append(json.loads(message.payload)["pin_code"]["user"])
        assert asked == [slot - 1]  # one read, of the code's own slot (users count from 0)
