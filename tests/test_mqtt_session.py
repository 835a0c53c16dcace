"""The gateway's MQTT session against a real broker: what it subscribes at connect."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import aiomqtt
import pytest

from gateway import mqtt
from tests.broker import Broker
from tests.helpers import TIMEOUT, Probe, running, session_for


async def test_a_topic_subscribed_while_the_session_subscribes_is_not_missed(
    broker: Broker, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At start ten thousand drivers subscribe while the session connects: one that does so
    while the connect's batches go out must be subscribed all the same (it is not sent by
    itself then: the session is not connected yet)."""
    session = session_for(broker, "test-subscribing")
    for n in range(5):
        await session.subscribe(f"early/{n}", lambda _: None)
    heard: asyncio.Queue[bytes] = asyncio.Queue()
    late: list[asyncio.Task[None]] = []

    def late_handler(message: aiomqtt.Message) -> None:
        assert isinstance(message.payload, bytes)
        heard.put_nowait(message.payload)

    batches = mqtt._batches

    def batches_with_a_late_subscriber(items: list[str], size: int) -> Iterator[list[str]]:
        sent: Iterable[list[str]] = batches(items, size)
        for number, batch in enumerate(sent):
            yield batch
            if number == 0 and not late:  # the first batch is acknowledged: a driver comes
                late.append(asyncio.create_task(session.subscribe("late/topic", late_handler)))

    monkeypatch.setattr(mqtt, "SUBSCRIBE_BATCH", 1)
    monkeypatch.setattr(mqtt, "_batches", batches_with_a_late_subscriber)
    async with running(("session", session.run())):
        await session.wait_connected(TIMEOUT)
        assert late, "the late subscriber never came"
        await late[0]
        await probe.publish("late/topic", {"n": 1})
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == b'{"n":1}'
