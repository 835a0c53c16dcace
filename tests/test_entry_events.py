"""Entry events and one-time codes (contract section 11) on native locks: who opened the door,
as the guest's property manager sees it on ``P/events/lock.*`` and in ``events/list``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import Config
from gateway.model import Json
from tests.backup_pool_helpers import (
    pool_config,
    pooled,
    refused,
    retained_device,
    stay_with_backup,
)
from tests.conftest import ConfigFactory, codes_on_lock
from tests.contract import ENTRY_EVENT_FIELDS, ENTRY_METHODS, EPOCH, EVENT_BASE_KEYS, is_uuid
from tests.harness import (
    Recorder,
    Site,
    barrier,
    create,
    device,
    get_code,
    is_event,
    ok,
    running_site,
    window,
)
from tests.helpers import Probe

FRONT = "front_door"
#: A PIN no backup can take: backups are never trivial (two digits alternating), so a pool
#: drawn at random cannot have taken it before a test creates it.
PIN = "4545"


async def stored(site: Site, event_type: str) -> list[Json]:
    """The stored events of one type, oldest first (``events/list``)."""
    found: list[Json] = ok(
        await site.api.call("events/list", since=EPOCH, event_types=[event_type], limit=1000)
    )["events"]
    return found


async def hears_entries(site: Site, device_id: str = FRONT) -> bool:
    value: bool = (await device(site, device_id))["properties"]["has_native_entry_events"]
    return value


async def learn(site: Site, events: Recorder, device_id: str = FRONT) -> None:
    """Someone locks the door by hand: the lock's first event shows it reports operations."""
    await site.lock(device_id).control({"operate": {"type": "locked", "method": "manual"}})
    await events.wait(is_event("lock.locked", device_id=device_id))
    await site.settled()
    assert await hears_entries(site, device_id)


async def set_code(site: Site, events: Recorder, **params: Any) -> Json:
    """A code created on the front door and settled on the lock."""
    code = await create(site, device_id=FRONT, **params)
    await events.wait(is_event("access_code.set_on_device", access_code_id=code["access_code_id"]))
    await site.settled()
    return await get_code(site, code["access_code_id"])


def assert_entry_shape(event: Json) -> None:
    assert set(event) == EVENT_BASE_KEYS | ENTRY_EVENT_FIELDS, event
    assert is_uuid(event["event_id"])
    assert event["method"] in ENTRY_METHODS
    assert isinstance(event["access_code_is_managed"], bool)


async def test_a_pin_at_the_keypad_names_its_code_and_slot(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        assert await hears_entries(site) is False
        code = await set_code(site, events, code=PIN, name="Guest")
        await site.lock(FRONT).control({"enter": PIN})
        (event,) = await events.wait(is_event("lock.unlocked"))
        assert_entry_shape(event)
        assert event["device_id"] == FRONT
        assert event["access_code_id"] == code["access_code_id"]
        assert event["access_code_is_managed"] is True
        assert event["method"] == "keycode"
        assert event["slot"] == code["slot"]
        await barrier(site)
        assert await stored(site, "lock.unlocked") == [event]
        # The lock has shown it reports who opened the door.
        assert await hears_entries(site) is True
        # The code's timeline tells it too.
        timeline = ok(
            await site.api.call("access_codes/get_timeline", access_code_id=code["access_code_id"])
        )["timeline"]
        assert timeline[-1] == event


async def test_a_backup_code_is_named_by_its_own_id_in_its_guests_story(
    make_config: ConfigFactory,
) -> None:
    async with running_site(pool_config(make_config)) as site:
        events = await Recorder.events(site)
        guest, backup = await stay_with_backup(site, hours=30)
        lock = site.lock(FRONT)
        await lock.control({"enter": backup["code"]})
        (event,) = await events.wait(is_event("lock.unlocked"))
        assert (event["access_code_id"], event["slot"]) == (
            backup["access_code_id"],
            backup["slot"],
        )
        assert event["access_code_is_managed"] is True
        timeline = ok(
            await site.api.call("access_codes/get_timeline", access_code_id=guest["access_code_id"])
        )["timeline"]
        assert timeline[-1] == event
        # One still waiting in the pool is named too.
        spare = (await pooled(site))[0]
        await lock.control({"enter": spare["code"]})
        await events.wait(is_event("lock.unlocked", access_code_id=spare["access_code_id"]))


async def test_a_wrong_pin_is_access_denied_naming_no_code(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        await set_code(site, events, code=PIN)
        await site.lock(FRONT).control({"enter": "0000"})
        (event,) = await events.wait(is_event("lock.access_denied"))
        assert_entry_shape(event)
        assert event["access_code_id"] is None  # present, and null
        assert event["access_code_is_managed"] is False
        assert event["method"] == "keycode"
        assert event["slot"] is None
        await barrier(site)
        assert await stored(site, "lock.access_denied") == [event]


async def test_a_pin_the_gateway_did_not_put_there_is_unmanaged(
    make_config: ConfigFactory,
) -> None:
    config = make_config(simulator={"locks": codes_on_lock({"5": "7777"})["locks"]})
    async with running_site(config) as site:
        events = await Recorder.events(site)
        await site.lock(FRONT).control({"enter": "7777"})
        (event,) = await events.wait(is_event("lock.unlocked"))
        assert event["access_code_id"] is None
        assert event["access_code_is_managed"] is False
        assert event["slot"] == 5


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("unlocked", "manual"),
        ("unlocked", "remote"),
        ("locked", "automatic"),
        ("locked", "unknown"),
    ],
)
async def test_operations_by_hand_remote_and_automatic(
    make_config: ConfigFactory, kind: str, method: str
) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        await site.lock(FRONT).control({"operate": {"type": kind, "method": method}})
        (event,) = await events.wait(is_event(f"lock.{kind}"))
        assert_entry_shape(event)
        assert (event["method"], event["slot"], event["access_code_id"]) == (method, None, None)
        assert event["access_code_is_managed"] is False


async def test_a_lock_that_reports_no_operations(make_config: ConfigFactory) -> None:
    """Old firmware (the ``entry_events`` fault off): nothing is heard, nothing is claimed, and
    a one-time code is refused there."""
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        lock = site.lock(FRONT)
        await lock.control({"entry_events": False})
        await set_code(site, events, code=PIN)
        await lock.control({"enter": PIN})
        await lock.control({"enter": "0000"})
        await lock.control({"operate": {"type": "unlocked", "method": "manual"}})
        await barrier(site)
        assert not [e for e in events.pull() if e["event_type"].startswith("lock.")]
        assert await hears_entries(site) is False
        reply = await site.api.call(
            "access_codes/create", device_id=FRONT, code="1357", is_one_time_use=True
        )
        refused(reply, "invalid_input", "is_one_time_use")


async def test_what_the_lock_showed_survives_a_restart(make_config: ConfigFactory) -> None:
    config = make_config()
    async with running_site(config) as site:
        events = await Recorder.events(site)
        await learn(site, events)
        await barrier(site)
        assert (await retained_device(site))["properties"]["has_native_entry_events"] is True
    async with running_site(config) as site:
        # Not heard again since the restart (the simulator is fresh, its events silenced).
        await site.lock(FRONT).control({"entry_events": False})
        assert await hears_entries(site) is True
        ok(
            await site.api.call(
                "access_codes/create", device_id=FRONT, code=PIN, is_one_time_use=True
            )
        )


async def test_a_one_time_code_ends_with_its_first_unlock(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        await learn(site, events)
        code = await set_code(site, events, code=PIN, name="Courier", is_one_time_use=True)
        cid, slot = code["access_code_id"], code["slot"]
        assert code["is_one_time_use"] is True
        assert code["status"] == "set"
        lock = site.lock(FRONT)
        assert lock.slots[slot] == PIN

        await lock.control({"enter": PIN})
        (unlocked,) = await events.wait(is_event("lock.unlocked", access_code_id=cid))
        assert unlocked["slot"] == slot
        await events.wait(is_event("access_code.removed_from_device", access_code_id=cid))
        await events.wait(is_event("access_code.deleted", access_code_id=cid))
        await site.settled()
        assert slot not in lock.slots  # the PIN opens the door no more
        refused(
            await site.api.call("access_codes/get", access_code_id=cid),
            "access_code_not_found",
            "access_code_id",
        )
        mine = [e["event_type"] for e in events.pull() if e.get("access_code_id") == cid]
        assert mine[-3:] == [
            "lock.unlocked",
            "access_code.removed_from_device",
            "access_code.deleted",
        ]
        # The second try at the door is denied.
        await lock.control({"enter": PIN})
        denied = await events.wait(is_event("lock.access_denied"))
        assert denied[0]["access_code_id"] is None


async def test_an_ordinary_code_and_a_lock_event_leave_a_one_time_code_alone(
    make_config: ConfigFactory,
) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        await learn(site, events)
        once = await set_code(site, events, code=PIN, is_one_time_use=True)
        usual = await set_code(site, events, code="1357")
        lock = site.lock(FRONT)
        await lock.control({"enter": "1357"})
        await lock.control({"operate": {"type": "unlocked", "method": "remote"}})
        await events.wait(is_event("lock.unlocked", method="remote"))
        await site.settled()
        assert (await get_code(site, once["access_code_id"]))["status"] == "set"
        assert (await get_code(site, usual["access_code_id"]))["status"] == "set"
        assert lock.try_code(PIN) == once["slot"]


async def test_one_time_refusals(make_config: ConfigFactory) -> None:
    config = make_config(
        devices=[
            {
                "device_id": FRONT,
                "driver": "native",
                "slots": 10,
                "backup_pool": {"enabled": True, "size": 2},
            }
        ]
    )
    async with running_site(config) as site:
        events = await Recorder.events(site)
        stay = window(site, -60, 3600)
        # Not before the lock has shown it reports who opened the door.
        refused(
            await site.api.call(
                "access_codes/create", device_id=FRONT, code=PIN, is_one_time_use=True, **stay
            ),
            "invalid_input",
            "is_one_time_use",
        )
        assert ok(await site.api.call("access_codes/list", device_id=FRONT))["access_codes"] == []
        guest = await set_code(site, events, code=PIN, **stay)
        gid = guest["access_code_id"]
        refused(
            await site.api.call("access_codes/update", access_code_id=gid, is_one_time_use=True),
            "invalid_input",
            "is_one_time_use",
        )
        for bad in ("yes", None, 1):
            refused(
                await site.api.call(
                    "access_codes/create", device_id=FRONT, code="9753", is_one_time_use=bad
                ),
                "invalid_input",
                "is_one_time_use",
            )
        await learn(site, events)
        # Now it may; and a one-time code gets no backup.
        changed = ok(
            await site.api.call("access_codes/update", access_code_id=gid, is_one_time_use=True)
        )["access_code"]
        assert changed["is_one_time_use"] is True
        refused(
            await site.api.call("access_codes/pull_backup_access_code", access_code_id=gid),
            "invalid_input",
            "access_code_id",
        )
        # Back to an ordinary code: it may have one, and then cannot turn one-time.
        ok(await site.api.call("access_codes/update", access_code_id=gid, is_one_time_use=False))
        ok(await site.api.call("access_codes/pull_backup_access_code", access_code_id=gid))
        refused(
            await site.api.call("access_codes/update", access_code_id=gid, is_one_time_use=True),
            "invalid_input",
            "is_one_time_use",
        )
        assert (await get_code(site, gid))["is_one_time_use"] is False


async def test_a_pass_with_only_entry_events_sends_nothing(make_config: ConfigFactory) -> None:
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        await set_code(site, events, code=PIN)
        await barrier(site)
        commands = await Recorder.commands(site)
        lock = site.lock(FRONT)
        await lock.control({"enter": PIN})
        await lock.control({"enter": "0000"})
        await lock.control({"operate": {"type": "locked", "method": "automatic"}})
        await events.wait(is_event("lock.locked"))
        await barrier(site)
        assert commands.pull() == []


async def test_events_are_stored_while_a_command_waits_for_the_lock(
    make_config: ConfigFactory,
) -> None:
    """A slow lock holds its next command for seconds; the guest's unlock is not held back."""
    config = make_config(timing={"command_timeout": "10s"})
    async with running_site(config) as site:
        events = await Recorder.events(site)
        guest = await set_code(site, events, code=PIN)
        lock = site.lock(FRONT)
        await lock.control({"latency": 3})
        commands = await Recorder.commands(site)
        late = await create(site, device_id=FRONT, code="1357")
        await commands.wait(lambda c: c.get("op") == "set")  # on its way, answered in 3 s
        loop = asyncio.get_running_loop()
        start = loop.time()
        await lock.control({"enter": PIN})
        await events.wait(is_event("lock.unlocked", access_code_id=guest["access_code_id"]))
        assert loop.time() - start < 2.5
        # The unlock did not wait for the write ahead of it.
        late_set = is_event("access_code.set_on_device", access_code_id=late["access_code_id"])
        assert not [e for e in events.pull() if late_set(e)]
        await events.wait(late_set, timeout=10)


async def test_an_unmanaged_device_still_tells_who_opened(make_config: ConfigFactory) -> None:
    """Hands off the lock, but the door's story is still told (no code is the gateway's)."""
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        code = await set_code(site, events, code=PIN)
        ok(await site.api.call("devices/update", device_id=FRONT, is_managed=False))
        await site.settled()
        await site.lock(FRONT).control({"enter": PIN})
        (event,) = await events.wait(is_event("lock.unlocked"))
        assert event["slot"] == code["slot"]
        assert (event["access_code_id"], event["access_code_is_managed"]) == (None, False)


async def test_bad_events_from_the_lock_are_dropped(
    make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config: Config = make_config(devices=[{"device_id": FRONT, "driver": "native", "slots": 10}])
    async with running_site(config) as site:
        events = await Recorder.events(site)
        topic = f"locks/{FRONT}/event"
        for payload in (
            b"{not json",
            b'{"type": "opened"}',
            b'{"type": ["unlocked"]}',
            b'{"type": "unlocked", "method": "keycode", "slot": "3"}',
            b'{"type": "unlocked", "method": 7}',
            b'{"type": "unlocked", "pad": "' + b"x" * 70_000 + b'"}',
        ):
            await site.api.publish(topic, payload)
        # Extra fields are ignored; a slot beyond the lock's 10 names no code; an unknown
        # method is still an operation.
        await site.api.publish(
            topic, b'{"type": "unlocked", "method": "keycode", "slot": 11, "battery": 80}'
        )
        await site.api.publish(topic, b'{"type": "locked", "method": "fingerprint"}')
        first = await events.wait(is_event("lock.unlocked"))
        assert (first[0]["slot"], first[0]["method"]) == (None, "keycode")
        second = await events.wait(is_event("lock.locked"))
        assert second[0]["method"] == "unknown"
        await barrier(site)
        assert len([e for e in events.pull() if e["event_type"].startswith("lock.")]) == 2
        out = capsys.readouterr().out
        assert "native.bad_event" in out
        assert "native.event_slot_out_of_range" in out
        # The lock goes on working.
        await set_code(site, events, code=PIN)


async def test_an_event_left_retained_on_the_broker_is_no_news(
    make_config: ConfigFactory, probe: Probe
) -> None:
    await probe.publish(
        f"locks/{FRONT}/event", {"type": "unlocked", "method": "manual"}, retain=True
    )
    async with running_site(make_config()) as site:
        events = await Recorder.events(site)
        await site.lock(FRONT).control({"operate": {"type": "locked", "method": "manual"}})
        await events.wait(is_event("lock.locked"))
        await barrier(site)
        assert await stored(site, "lock.unlocked") == []
