"""The pump the outbox and the device publisher share, with a fake publish function and a
broker session the test takes up and down: kicks coalesce, an outage parks it, it says when
everything is out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import gateway.pump
from gateway.mqtt import NotConnected
from gateway.pump import Pump
from tests.fakes import FakeSession
from tests.helpers import TIMEOUT, running

Publish = Callable[[str], Awaitable[None]]


class ListPump(Pump):
    """Sends what is in ``pending`` through ``publish``, each item taken off once sent."""

    def __init__(self, session: FakeSession, publish: Publish) -> None:
        super().__init__(session)
        self.pending: list[str] = []
        self.rounds = 0
        self._publish = publish

    async def catch_up(self) -> None:
        self.rounds += 1
        while self.pending:
            await self._publish(self.pending[0])
            self.pending.pop(0)

    def add(self, item: str) -> None:
        self.pending.append(item)
        self.kick()


class Wire:
    """The fake publish function: records what went out; can be held shut, or fail."""

    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.sent: list[str] = []
        self.open = asyncio.Event()
        self.open.set()
        self.entered = asyncio.Event()
        self.failures: list[Exception] = []

    async def __call__(self, item: str) -> None:
        self.entered.set()
        await self.open.wait()
        if self.failures:
            raise self.failures.pop(0)
        await self.session.publish("events", item)
        self.sent.append(item)


async def drained(pump: Pump) -> None:
    async with asyncio.timeout(TIMEOUT):
        await pump.drained.wait()


@pytest.fixture
def session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def wire(session: FakeSession) -> Wire:
    return Wire(session)


@pytest.fixture
async def pump(session: FakeSession, wire: Wire) -> AsyncIterator[ListPump]:
    instance = ListPump(session, wire)
    async with running(("test-pump", instance.run())):
        yield instance


async def test_it_catches_up_at_start_then_says_it_is_drained(
    session: FakeSession, wire: Wire
) -> None:
    pump = ListPump(session, wire)
    pump.pending.append("left from the last run")
    assert not pump.drained.is_set()
    async with running(("test-pump", pump.run())):
        await drained(pump)
    assert wire.sent == ["left from the last run"]


async def test_a_kick_clears_drained_until_it_is_out(pump: ListPump, wire: Wire) -> None:
    await drained(pump)
    wire.open.clear()
    pump.add("one")
    assert not pump.drained.is_set()
    wire.open.set()
    await drained(pump)
    assert wire.sent == ["one"]


async def test_kicks_during_a_round_coalesce_into_one_more(pump: ListPump, wire: Wire) -> None:
    await drained(pump)
    wire.open.clear()
    wire.entered.clear()
    pump.add("first")
    async with asyncio.timeout(TIMEOUT):
        await wire.entered.wait()  # the round is under way, held at the wire
    rounds = pump.rounds
    for n in range(10):
        pump.add(f"more {n}")
    wire.open.set()
    await drained(pump)
    assert pump.rounds == rounds + 1
    assert wire.sent == ["first", *(f"more {n}" for n in range(10))]


async def test_a_broker_outage_parks_it_until_the_session_is_back(
    pump: ListPump, wire: Wire, session: FakeSession
) -> None:
    await drained(pump)
    session.disconnect()
    pump.add("during the outage")
    rounds = pump.rounds
    await asyncio.sleep(0)  # the pump had every chance to run a round
    assert (pump.rounds, wire.sent) == (rounds, [])
    assert not pump.drained.is_set()
    session.connect()
    await drained(pump)
    assert wire.sent == ["during the outage"]


async def test_a_connection_lost_in_a_round_is_retried_once_back(
    pump: ListPump, wire: Wire, session: FakeSession
) -> None:
    await drained(pump)
    wire.failures.append(NotConnected("events"))
    session.disconnect()
    pump.add("lost on the way")
    session.connect()
    await drained(pump)
    assert wire.sent == ["lost on the way"]


async def test_an_unexpected_error_does_not_end_it(
    monkeypatch: pytest.MonkeyPatch, session: FakeSession, wire: Wire
) -> None:
    monkeypatch.setattr(gateway.pump, "FAILURE_PAUSE", 0.01)
    pump = ListPump(session, wire)
    wire.failures.append(OSError("disk full"))
    pump.pending.append("kept")
    async with running(("test-pump", pump.run())):
        await drained(pump)
    assert wire.sent == ["kept"]
    assert pump.rounds == 2


async def test_a_refusal_while_the_session_counts_itself_connected_does_not_hold_the_loop(
    session: FakeSession,
) -> None:
    """paho may refuse a publish (its socket is gone) before the session has read the socket's
    end: the session still counts itself connected. A round that fails without awaiting
    anything must not be run again at once, or the event loop would never get to the session
    (a loop of refusals, a log line each). The pump waits for the session to see the loss,
    and goes on once it is back."""
    refusals: list[int] = []
    tried = asyncio.Event()

    async def refusing(item: str) -> None:
        refusals.append(len(refusals))
        tried.set()
        if len(refusals) > 50:  # the old spin: end it, so the test fails instead of hanging
            raise OSError("spinning")
        if session.is_connected and len(refusals) == 1:
            raise NotConnected(item)  # paho's refusal, raised without awaiting anything

    pump = ListPump(session, refusing)
    pump.pending.append("refused once")
    async with running(("test-pump", pump.run())):
        async with asyncio.timeout(TIMEOUT):
            await tried.wait()
        for _ in range(5):
            await asyncio.sleep(0)  # turns of the event loop: the session's would come now
        assert len(refusals) == 1, "the pump tried again without letting the loop run"
        session.disconnect()  # the session sees the loss paho saw
        session.connect()
        await drained(pump)
    assert len(refusals) == 2
