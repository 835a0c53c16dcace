"""The gateway's MQTT session against a real broker: what it subscribes at connect."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterable, Iterator

import aiomqtt
import pytest

from gateway import mqtt
from tests.broker import Broker
from tests.helpers import TIMEOUT, Probe, running, session_for


class Heard:
    """A handler that keeps every payload, and tells when ``expected`` of them have come."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.payloads: list[bytes] = []
        self.all_came = asyncio.Event()

    def __call__(self, message: aiomqtt.Message) -> None:
        assert isinstance(message.payload, bytes)
        self.payloads.append(message.payload)
        if len(self.payloads) == self.expected:
            self.all_came.set()


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


async def test_a_burst_that_arrives_at_once_is_handled_to_its_last_message(
    broker: Broker, probe: Probe
) -> None:
    """The session reads the broker's socket ahead (many packets per system call): the packets
    it has read but not handled raise no event on the socket, so they must be handled without
    waiting for more traffic. As at a start: 2,000 locks' retained reports, which the broker
    sends all at once when the session subscribes, then silence."""
    count = 2000
    await asyncio.gather(
        *(probe.publish(f"burst/{n}", {"n": n}, retain=True) for n in range(count))
    )
    session = session_for(broker, "test-read-ahead")
    heard = Heard(count)
    await session.subscribe("burst/+", heard)
    async with running(("session", session.run())):
        await asyncio.wait_for(heard.all_came.wait(), TIMEOUT)
        client = session._client
        assert client is not None
        sock = client._client.socket()
        assert isinstance(sock, mqtt.ReadAheadSocket)
        # Nagle's algorithm off (a request would wait 40 ms for an ack), as before the wrapper.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sorted(heard.payloads) == sorted(f'{{"n":{n}}}'.encode() for n in range(count))


async def test_a_paho_without_the_socket_hook_gets_a_plain_socket_without_nagle(
    broker: Broker, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-ahead hooks into paho where it makes its socket, which paho does not promise to
    keep: without that hook the session still works, on paho's own socket, with Nagle's
    algorithm off all the same (aiomqtt sets it on a plain socket)."""
    monkeypatch.setattr(mqtt, "_SOCKET_HOOK", "_a_hook_this_paho_has_not")
    session = session_for(broker, "test-no-hook")
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    def handler(message: aiomqtt.Message) -> None:
        assert isinstance(message.payload, bytes)
        heard.put_nowait(message.payload)

    await session.subscribe("plain/topic", handler)
    async with running(("session", session.run())):
        await session.wait_connected(TIMEOUT)
        await probe.publish("plain/topic", {"n": 1})
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == b'{"n":1}'
        client = session._client
        assert client is not None
        sock = client._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_messages_received_leave_no_reference_cycles_behind(
    broker: Broker, probe: Probe
) -> None:
    """A busy hub receives thousands of messages a second. Each one that left a reference cycle
    (paho's lookup of per-filter callbacks, aiomqtt's topic match: a recursive closure each)
    was garbage that only the collector frees, and its collections hold every thread."""
    count = 300
    session = session_for(broker, "test-no-cycles")
    heard = Heard(2 * count)
    await session.subscribe("cycles/+/state", heard)  # a wildcard: matched per message
    await session.subscribe("cycles/exact", heard)
    async with running(("session", session.run())):
        await session.wait_connected(TIMEOUT)
        gc.collect()
        gc.disable()
        try:
            for n in range(count):
                await probe.publish(f"cycles/{n}/state", {"n": n})
                await probe.publish("cycles/exact", {"n": n})
            await asyncio.wait_for(heard.all_came.wait(), TIMEOUT)
            found = gc.collect()
        finally:
            gc.enable()
    # None seen here (5,400 before: nine objects a message); a few would be asyncio's own.
    assert found < 30, f"{found} objects in reference cycles after {2 * count} messages"


def test_the_read_ahead_socket_serves_what_it_read_and_tells_what_is_left() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        sock = mqtt.ReadAheadSocket(ours)
        with pytest.raises(BlockingIOError):  # nothing sent yet: as the socket says
            sock.recv(1)
        theirs.sendall(b"\x30\x05hello\x30")
        assert sock.recv(1) == b"\x30"  # one system call took all eight bytes
        assert sock.pending() == 7
        assert sock.recv(1) == b"\x05"
        assert sock.recv(5) == b"hello"
        assert sock.recv(10) == b"\x30"  # what is left, without waiting: paho asks again
        assert sock.pending() == 0
        assert sock.fileno() == ours.fileno()  # the rest is the socket's own
        theirs.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""  # the broker closed the connection
