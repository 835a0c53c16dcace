"""Door operations stored in a real store transaction (``gateway.store.entries``): which code a
slot names, what the stored event says, and the end of a one-time code."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.domain import EntryEvent, EntryKind, EntryMethod, SlotValue
from gateway.model import CodeStatus, Json
from gateway.rules.slots import Written
from gateway.store import Store, Tx, slot_writes
from gateway.store import codes as code_store
from gateway.store import devices as device_store
from gateway.store.entries import note_entry_events, record_entries
from tests.fakes import DEVICE, add_code, opened_store, stored_code, unit_config

KEYPAD = EntryMethod.KEYCODE


@dataclass
class Lab:
    store: Store

    async def hear(
        self, *events: EntryEvent, table: Mapping[int, SlotValue] | None = None
    ) -> list[Json]:
        """Record ``events`` as the worker does; the ``lock.*`` events stored, as published."""

        def unit(tx: Tx) -> None:
            device = device_store.get_device(tx, DEVICE)
            assert device is not None
            record_entries(tx, device, events, table)

        await self.store.write(unit)
        rows = await self.store.read(
            lambda tx: tx.fetchall(
                "SELECT body FROM events WHERE event_type LIKE 'lock.%' ORDER BY seq"
            )
        )
        return [json.loads(row["body"]) for row in rows]

    async def in_slot(self, access_code_id: str, slot: int) -> None:
        def unit(tx: Tx) -> None:
            code = code_store.get_code(tx, access_code_id)
            assert code is not None
            code_store.set_slot(tx, code, slot)
            code_store.set_status(tx, code, CodeStatus.SET)

        await self.store.write(unit)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with opened_store(unit_config(tmp_path), ManualClock()) as store:
        yield Lab(store)


def named(event: Json) -> tuple[object, object, object]:
    return event["access_code_id"], event["access_code_is_managed"], event["slot"]


async def test_a_slot_names_the_code_whose_pin_the_lock_holds_there(lab: Lab) -> None:
    guest = await add_code(lab.store, "4821")
    await lab.in_slot(guest, 2)
    (event,) = await lab.hear(EntryEvent(EntryKind.UNLOCKED, KEYPAD, 2), table={2: "4821"})
    assert event["event_type"] == "lock.unlocked"
    assert named(event) == (guest, True, 2)
    assert event["method"] == "keycode"


async def test_a_pin_still_in_a_slot_given_to_another_code_names_its_owner(lab: Lab) -> None:
    """A backup evicted a moment ago still sits in the slot its successor was given."""
    before = await add_code(lab.store, "1111")
    after = await add_code(lab.store, "2222")
    await lab.store.write(
        lambda tx: slot_writes.record(tx, Written(before, 3, "1111", settled=True), DEVICE)
    )
    await lab.in_slot(after, 3)
    (event,) = await lab.hear(EntryEvent(EntryKind.UNLOCKED, KEYPAD, 3), table={3: "1111"})
    assert named(event) == (before, True, 3)


async def test_without_a_table_the_slot_given_to_a_code_names_it(lab: Lab) -> None:
    guest = await add_code(lab.store, "4821")
    await lab.in_slot(guest, 4)
    (event,) = await lab.hear(EntryEvent(EntryKind.UNLOCKED, KEYPAD, 4))
    assert named(event) == (guest, True, 4)


async def test_what_names_no_managed_code(lab: Lab) -> None:
    guest = await add_code(lab.store, "4821")
    await lab.in_slot(guest, 1)
    events = await lab.hear(
        EntryEvent(EntryKind.UNLOCKED, KEYPAD, 5),  # a PIN someone else put there
        EntryEvent(EntryKind.ACCESS_DENIED, KEYPAD),
        EntryEvent(EntryKind.UNLOCKED, EntryMethod.MANUAL),
        EntryEvent(EntryKind.LOCKED, EntryMethod.AUTOMATIC),
        table={1: "4821", 5: "7777"},
    )
    assert [e["event_type"] for e in events] == [
        "lock.unlocked",
        "lock.access_denied",
        "lock.unlocked",
        "lock.locked",
    ]
    assert [named(e) for e in events] == [
        (None, False, 5),
        (None, False, None),
        (None, False, None),
        (None, False, None),
    ]
    assert all("access_code_id" in e for e in events)  # null, never left out


async def test_a_code_of_the_same_pin_waiting_elsewhere_is_not_named(lab: Lab) -> None:
    """Someone typed a PIN in at the keypad that a code scheduled for next week also has."""
    await add_code(lab.store, "7777")
    (event,) = await lab.hear(EntryEvent(EntryKind.UNLOCKED, KEYPAD, 5), table={5: "7777"})
    assert named(event) == (None, False, 5)


async def test_an_unmanaged_device_names_no_code(lab: Lab) -> None:
    guest = await add_code(lab.store, "4821")
    await lab.in_slot(guest, 1)
    await lab.store.write(
        lambda tx: tx.execute("UPDATE devices SET is_managed = 0 WHERE device_id = ?", (DEVICE,))
    )
    (event,) = await lab.hear(EntryEvent(EntryKind.UNLOCKED, KEYPAD, 1), table={1: "4821"})
    assert named(event) == (None, False, 1)


async def test_a_one_time_code_is_removed_by_its_first_unlock_only(lab: Lab) -> None:
    once = await add_code(lab.store, "4821")
    other = await add_code(lab.store, "1357")
    await lab.in_slot(once, 1)
    await lab.in_slot(other, 2)
    await lab.store.write(
        lambda tx: tx.execute(
            "UPDATE access_codes SET is_one_time_use = 1 WHERE access_code_id = ?", (once,)
        )
    )
    table = {1: "4821", 2: "1357"}
    await lab.hear(
        EntryEvent(EntryKind.LOCKED, KEYPAD, 1),  # locking with it is no use of it
        EntryEvent(EntryKind.UNLOCKED, KEYPAD, 2),
        EntryEvent(EntryKind.UNLOCKED, EntryMethod.MANUAL),
        table=table,
    )
    code = await stored_code(lab.store, once)
    assert code is not None
    assert not code.deleting
    await lab.hear(EntryEvent(EntryKind.UNLOCKED, KEYPAD, 1), table=table)
    code = await stored_code(lab.store, once)
    assert code is not None
    assert (code.deleting, code.status) == (True, CodeStatus.REMOVING)  # the pass clears it
    kept = await stored_code(lab.store, other)
    assert kept is not None
    assert not kept.deleting


async def test_hearing_entries_is_stored_once_and_for_good(lab: Lab) -> None:
    def hears(tx: Tx) -> bool:
        device = device_store.get_device(tx, DEVICE)
        assert device is not None
        return device.has_entry_events

    assert await lab.store.read(hears) is False
    await lab.store.write(lambda tx: note_entry_events(tx, DEVICE))
    await lab.store.write(lambda tx: note_entry_events(tx, DEVICE))
    assert await lab.store.read(hears) is True
