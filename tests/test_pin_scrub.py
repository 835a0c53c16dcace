"""A history that forgets the secret (issue 13, point 7, in part): once a code is deleted or has
ended, and once an update's new PIN is on the lock, the old PIN is blanked from the stored events
and the stored replies, and no byte of it is left in the database file or its WAL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.model import Json
from gateway.store import db
from tests.conftest import ConfigFactory
from tests.contract import EPOCH
from tests.harness import Recorder, Site, create, is_event, ok, running_site, window

PIN, NEW_PIN, ENDED_PIN = "73914826", "58203917", "61739402"
PINS = (PIN, NEW_PIN, ENDED_PIN)


@pytest.fixture(autouse=True)
def prompt_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrub's WAL checkpoint at once rather than at most every 10 s."""
    monkeypatch.setattr(db, "SCRUB_CHECKPOINT_EVERY", 0.0)


async def set_events(site: Site, access_code_id: str) -> list[Json]:
    found: list[Json] = ok(
        await site.api.call(
            "events/list",
            since=EPOCH,
            access_code_id=access_code_id,
            event_types=["access_code.set_on_device"],
        )
    )["events"]
    return found


def on_disk(database: Path) -> bytes:
    """Every byte SQLite keeps: the file, its WAL and its shared memory."""
    return b"".join(
        p.read_bytes()
        for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
        if p.exists()
    )


async def test_deleted_ended_and_replaced_pins_leave_the_history_and_the_file(
    make_config: ConfigFactory,
) -> None:
    config = make_config(devices=[{"device_id": "front_door", "driver": "native", "slots": 10}])
    async with running_site(config) as site:
        events = await Recorder.events(site)
        kept = await create(site, device_id="front_door", code=PIN, idempotency_key="stay-1")
        kid = kept["access_code_id"]
        ended = await create(site, device_id="front_door", code=ENDED_PIN, **window(site, 0, 60))
        eid = ended["access_code_id"]
        for cid in (kid, eid):
            await events.wait(is_event("access_code.set_on_device", access_code_id=cid))
        assert (await set_events(site, kid))[0]["code"] == PIN

        # A new PIN: once it is on the lock, the old one is blanked; the new one stays.
        ok(await site.api.call("access_codes/update", access_code_id=kid, code=NEW_PIN))
        await events.wait(is_event("access_code.set_on_device", access_code_id=kid), count=2)
        await site.settled()
        assert [e["code"] for e in await set_events(site, kid)] == [None, NEW_PIN]

        # The stay ends, the other code is deleted: both are gone from the lock and the history
        # keeps what happened, without the PINs.
        await site.advance(61)
        ok(await site.api.call("access_codes/delete", access_code_id=kid))
        for cid in (kid, eid):
            await events.wait(is_event("access_code.deleted", access_code_id=cid))
        await site.settled()
        for cid in (kid, eid):
            stored = await set_events(site, cid)
            assert stored, cid
            assert all(e["code"] is None for e in stored)
        # The reply kept for a retry of the create says what it said, without the PIN.
        again = ok(
            await site.api.call(
                "access_codes/create", device_id="front_door", code=PIN, idempotency_key="stay-1"
            )
        )
        assert again["access_code"]["access_code_id"] == kid
        assert again["access_code"]["code"] is None

        # The WAL's old page images go with the next checkpoint (due at once here).
        async with asyncio.timeout(10):
            while any(pin.encode() in on_disk(config.database) for pin in PINS):
                await asyncio.sleep(0.02)  # the writer thread checkpoints: look at the file
