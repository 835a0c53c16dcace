"""Whether a lock can be reached, without a broker: signals fed straight to their handlers, the
broker link a fake session. The driver is told once per change, and only then."""

from __future__ import annotations

import aiomqtt

from drivers.reachability import Reachability
from tests.fakes import FakeSession


def says_online(payload: bytes) -> bool:
    if payload not in (b"online", b"offline"):
        raise ValueError(f"not a state: {payload!r}")
    return payload == b"online"


class Told:
    """The ``on_change`` callback: every value the driver was told, in order."""

    def __init__(self) -> None:
        self.values: list[bool] = []

    def __call__(self, online: bool) -> None:
        self.values.append(online)


def message(payload: bytes) -> aiomqtt.Message:
    return aiomqtt.Message("any/topic", payload, qos=1, retain=True, mid=1, properties=None)


def reachability(
    session: FakeSession, told: Told, *, stale_after_down: bool = False
) -> Reachability:
    """A lock behind a bridge: both must say online. ``availability`` is retained (forgotten
    when the broker link drops); with ``stale_after_down``, the bridge going down leaves the
    lock's availability a leftover until the bridge proves it is ready."""
    link = Reachability(
        device_id="door",
        session=session,
        name="unit",
        signals={"bridge": False, "availability": False},
        forget_on_disconnect=("availability",),
        on_change=told,
        stale_after_down={"bridge": ("availability",)} if stale_after_down else None,
    )
    link.start()
    return link


def reachable(link: Reachability) -> bool:
    """``link.online``, asked afresh each time (a property read twice may change between)."""
    return link.online


def feed(link: Reachability, signal: str, payload: bytes) -> None:
    link.handler(signal, says_online)(message(payload))


async def test_online_only_when_every_signal_says_so() -> None:
    told = Told()
    link = reachability(FakeSession(), told)
    feed(link, "availability", b"online")
    assert not reachable(link)
    assert told.values == []
    feed(link, "bridge", b"online")
    assert reachable(link)
    feed(link, "bridge", b"offline")
    assert told.values == [True, False]


async def test_the_driver_is_told_once_per_change() -> None:
    told = Told()
    link = reachability(FakeSession(), told)
    for _ in range(3):
        feed(link, "bridge", b"online")
        feed(link, "availability", b"online")
    assert told.values == [True]


async def test_a_payload_that_cannot_be_read_changes_nothing() -> None:
    told = Told()
    link = reachability(FakeSession(), told)
    feed(link, "bridge", b"online")
    feed(link, "availability", b"online")
    feed(link, "availability", b"\x00garbage")
    assert reachable(link)
    assert told.values == [True]


async def test_without_the_broker_nothing_is_reachable() -> None:
    session = FakeSession(connected=False)
    told = Told()
    link = reachability(session, told)
    feed(link, "bridge", b"online")
    feed(link, "availability", b"online")
    assert not reachable(link)  # every signal says yes, but the link is down
    session.connect()
    link.check()  # what the driver does once its session is back
    assert told.values == [True]


async def test_retained_signals_are_forgotten_when_the_broker_link_drops() -> None:
    session = FakeSession()
    told = Told()
    link = reachability(session, told)
    feed(link, "bridge", b"online")
    feed(link, "availability", b"online")
    session.disconnect()
    assert told.values == [True, False]
    session.connect()
    link.check()
    assert not reachable(link)  # availability unknown until the broker resends it
    assert link.says("bridge")  # not retained: kept
    feed(link, "availability", b"online")
    assert told.values == [True, False, True]


async def test_a_leftover_after_the_stack_went_down_waits_for_proof() -> None:
    told = Told()
    link = reachability(FakeSession(), told, stale_after_down=True)
    feed(link, "bridge", b"online")
    feed(link, "availability", b"online")
    feed(link, "bridge", b"offline")
    feed(link, "availability", b"online")  # the retained leftover, replayed
    feed(link, "bridge", b"online")
    assert not reachable(link)
    assert link.stale
    link.confirm_stale()  # the stack showed it is ready: the leftover is its current value
    assert reachable(link)
    assert told.values == [True, False, True]


async def test_a_fresh_report_after_the_stack_is_back_is_believed() -> None:
    told = Told()
    link = reachability(FakeSession(), told, stale_after_down=True)
    feed(link, "bridge", b"online")
    feed(link, "availability", b"online")
    feed(link, "bridge", b"offline")
    feed(link, "bridge", b"online")
    assert not reachable(link)
    feed(link, "availability", b"online")
    assert reachable(link)
    assert not link.stale
