"""The MQTT session shared by the gateway and the simulator.

One broker connection at a time, reconnecting forever with jittered exponential backoff. A fresh
``aiomqtt.Client`` is built for every attempt because reusing one after an unexpected disconnect
leaves a stale "connected" future behind (practice.md). Handlers are plain functions so that one
slow consumer can never stall the dispatch loop: anything that must await spawns its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import aiomqtt
from paho.mqtt import client as paho_client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import paho_tables
from gateway.config import MqttSettings
from gateway.domain import compact_json
from gateway.logs import get_logger
from gateway.session import Handler, NotConnected, Payload, TopicRefused
from gateway.topics import matches, topic_problem

__all__ = [
    "Handler",
    "MqttSession",
    "NotConnected",
    "Payload",
    "Retained",
    "TopicRefused",
    "backoff_delay",
    "build_client",
    "encode",
    "shown_topic",
]

log = get_logger("gateway.mqtt")

#: QoS 1 messages the gateway's session keeps unacknowledged at once (its own window, below):
#: paho's default of 20 caps throughput at ~280/s (practice.md).
MAX_INFLIGHT = 1000
#: Places in that window kept for API replies: events, device objects and lock commands (which
#: come by the thousand when many locks are busy) never take them, so a reply to a pull is
#: sent at once instead of queueing behind them.
REPLY_ROOM = 200
#: An ``async with`` that waits for nothing: where a limit does not apply.
NO_WAIT = contextlib.nullcontext()
#: The largest packet the broker may send us: requests over 64 KiB are refused, and up to 1 MiB
#: still answered (``api.router``); the rest is headroom for the topic and properties.
MAX_PACKET_BYTES = 1024 * 1024 + 64 * 1024
#: Subscribing to many topics is done in batches so one SUBSCRIBE stays a sane size.
SUBSCRIBE_BATCH = 200


def shown_topic(topic: str, limit: int = 100) -> str:
    """A topic made fit for a log line: escaped (it may hold anything) and cut short."""
    return ascii(topic[:limit])[1:-1] + ("..." if len(topic) > limit else "")


@dataclass(frozen=True, slots=True)
class Retained:
    """A retained message: the birth message sent on every connect, or the will."""

    topic: str
    payload: bytes


def encode(payload: Payload) -> bytes:
    """Compact JSON for objects, UTF-8 for text: the one wire encoding used everywhere."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return compact_json(payload).encode()


def backoff_delay(attempt: int, *, base: float, ceiling: float) -> float:
    """Exponential backoff with jitter (half to all of the bound), so hubs do not reconnect in
    lockstep after a broker restart."""
    bound = min(ceiling, base * (2 ** min(attempt, 20)))
    return random.uniform(bound / 2, bound)


def _tls_params(settings: MqttSettings) -> aiomqtt.TLSParameters | None:
    if not settings.tls.enabled:
        return None
    tls = settings.tls
    return aiomqtt.TLSParameters(
        ca_certs=str(tls.ca_file) if tls.ca_file else None,
        certfile=str(tls.cert_file) if tls.cert_file else None,
        keyfile=str(tls.key_file) if tls.key_file else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )


class _DispatchQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's queue of incoming messages, bypassed while a session dispatches.

    aiomqtt's message iterator spends a task and at least one event-loop round on every
    message, while paho reads up to a thousand packets per socket wake-up: under load (every
    lock's retained reports at start) the queue grew to several messages per lock, each with
    paho's MQTT 5 ``Properties`` object of about 4 KB. Once ``sink`` is set, a message goes to
    it as paho hands it over, in the order received, and is never held."""

    sink: Callable[[aiomqtt.Message], None] | None = None

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if self.sink is not None:
            self.sink(item)
            return
        # Held until the session dispatches (the retained reports that come while it
        # subscribes): a message without properties shares one empty object meanwhile.
        properties = item.properties
        if properties is not None and properties.isEmpty():  # type: ignore[no-untyped-call]
            item.properties = _NO_PROPERTIES
        super().put_nowait(item)


#: Put in the incoming queue by :meth:`MqttSession.reconfigure` to end the session's loop.
_RECONNECT = aiomqtt.Message(
    "$lockgate/reconnect", b"", qos=0, retain=False, mid=0, properties=None
)

#: What a PUBLISH without properties carries: one shared object (nobody writes to it).
_NO_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


QueueFactory = Callable[[int], asyncio.Queue[aiomqtt.Message]]

#: Nagle's algorithm off: with it, a request waits 40 ms for the ack of the packet before.
_NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
#: Where paho makes its socket (paho 2.x; not public, so looked up: see ``_read_ahead``).
_SOCKET_HOOK = "_create_socket"


def build_client(
    settings: MqttSettings,
    *,
    identifier: str,
    will: aiomqtt.Will | None = None,
    session_expiry: int | None = None,
    timeout: float = 10.0,
    queue_type: QueueFactory | None = None,
) -> aiomqtt.Client:
    """An MQTT 5 client with the settings every connection of ours needs (TCP_NODELAY, a raised
    in-flight window, TLS and credentials from the config). ``queue_type``: what aiomqtt builds
    its incoming queue with (called with ``maxsize``)."""
    paho_tables.share()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # The broker drops (never delivers) anything larger: no client or lock can make us hold a
    # giant message in memory before the size checks of the API and the drivers see it.
    properties.MaximumPacketSize = MAX_PACKET_BYTES
    if session_expiry is not None:
        properties.SessionExpiryInterval = session_expiry
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
        keepalive=settings.keepalive,
        timeout=timeout,
        clean_start=session_expiry is None,
        properties=properties,
        # No cap in paho: the session's window bounds what is outstanding. paho's own cap, even
        # never reached, made it look through every unacknowledged message at each ack (a
        # tenth of the loop when ten thousand locks start; docs/benchmarks.md).
        max_inflight_messages=0,
        tls_params=_tls_params(settings),
        socket_options=[_NO_DELAY],  # for a socket not read ahead (see _read_ahead)
        # aiomqtt only ever calls it with ``maxsize``: any factory will do.
        queue_type=cast("type[asyncio.Queue[aiomqtt.Message]] | None", queue_type),
    )
    # aiomqtt warns (and recounts) on every call past 10 pending acks: we mean to have many.
    client.pending_calls_threshold = MAX_INFLIGHT
    _quiet_socket_close(client)
    _read_ahead(client)
    _no_filtered_callbacks(client)
    return client


#: How much one ``recv`` may take from the kernel (what a busy broker has queued for us).
READ_AHEAD = 64 * 1024


class ReadAheadSocket:
    """The broker's socket, read ahead. paho reads a packet in three or more ``recv`` calls (its
    type, each byte of its length, then the rest): a system call each, each letting go of the
    GIL, which the database writer then takes. This takes what the kernel holds in one call and
    serves paho from memory; :meth:`pending`, as an SSL socket's, makes aiomqtt's reader go on
    reading while bytes are left (they raise no event on the socket). Everything else is the
    socket's own."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._inner_pending = getattr(sock, "pending", None)  # a TLS socket's own
        self._data = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        if self._at >= len(self._data):
            self._data = self._sock.recv(max(size, READ_AHEAD))  # raises as the socket does
            self._at = 0
        chunk = self._data[self._at : self._at + size]
        self._at += len(chunk)
        return chunk

    def pending(self) -> int:
        inner = self._inner_pending
        return len(self._data) - self._at + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _read_ahead(client: aiomqtt.Client) -> None:
    """paho's sockets, each wrapped in a :class:`ReadAheadSocket` as it is made, with
    ``TCP_NODELAY`` (aiomqtt's ``socket_options`` skip a socket that is wrapped). The hook is
    paho's own, not public: a paho without it gets plain sockets, slower but the same."""
    paho = client._client
    make = getattr(paho, _SOCKET_HOOK, None)
    if make is None:
        return

    def create_socket() -> Any:
        sock = cast("socket.socket", make())  # TCP, or TLS over it: paho makes no other here
        sock.setsockopt(*_NO_DELAY)
        return ReadAheadSocket(sock)

    setattr(paho, _SOCKET_HOOK, create_socket)


#: Where paho keeps the callbacks of ``message_callback_add`` (paho 2.x; not public).
_FILTERED_CALLBACKS = "_on_message_filtered"


class _NoFilteredCallbacks:
    """Stands in paho's table of per-filter callbacks, which aiomqtt never fills. paho looks
    every message received up in it, and its lookup builds a recursive generator closure: a
    reference cycle per message that only the garbage collector frees (thousands a second on a
    busy hub, and each full collection holds every thread; docs/benchmarks.md)."""

    def iter_match(self, topic: str) -> Iterator[Any]:
        return iter(())


def _no_filtered_callbacks(client: aiomqtt.Client) -> None:
    """paho's per-filter callback table replaced by :class:`_NoFilteredCallbacks`, where paho
    has one (not public: a paho without it is left as it is)."""
    paho = client._client
    if hasattr(paho, _FILTERED_CALLBACKS):
        setattr(paho, _FILTERED_CALLBACKS, _NoFilteredCallbacks())


def _quiet_socket_close(client: aiomqtt.Client) -> None:
    """paho closes a socket it still holds when it is collected, and aiomqtt then tells the
    event loop the client ran on, which may be closed by then: the socket is closed all the
    same, so that loop need not hear of it (an "Event loop is closed" error from a finaliser)."""
    paho = client._client
    told = paho.on_socket_close
    if told is None:
        return

    def on_socket_close(*args: Any) -> None:
        with contextlib.suppress(RuntimeError):
            told(*args)

    paho.on_socket_close = on_socket_close


#: MQTT 5's DISCONNECT reason "Session taken over": another client connected with our id.
SESSION_TAKEN_OVER = 0x8E


def _reason_code(exc: BaseException | None) -> int | None:
    """The broker's reason code behind a lost connection, where aiomqtt kept it."""
    while exc is not None:
        if isinstance(exc, aiomqtt.MqttCodeError) and exc.rc is not None:
            rc = exc.rc
            return rc if isinstance(rc, int) else int(rc.value)
        exc = exc.__cause__
    return None


@dataclass(frozen=True, slots=True)
class Hold:
    delay: float  # seconds to stay away before connecting again
    certain: bool  # the broker said so; else a run of sessions lost at once suggests it


@dataclass(slots=True)
class TakeoverWatch:
    """Tells another client taking our client id (the broker drops the older connection each time
    the other connects) from an ordinary connection loss, so the gateway backs off instead of
    knocking the other off again at once. A broker that says so (MQTT 5 reason 0x8E) is
    believed; one that just closes the socket (mosquitto 2.0.11 does) is suspected after
    ``suspect_after`` sessions in a row lost within ``short`` seconds of starting. Each hold in
    a row doubles, from ``base`` to ``ceiling``; a session that lasts ends the run."""

    short: float = 1.0
    suspect_after: int = 5
    base: float = 5.0
    ceiling: float = 300.0
    _short_run: int = 0
    _holds: int = 0

    def lost(self, lasted: float | None, reason_code: int | None) -> Hold | None:
        """A session ended (``lasted`` None: it never began): how long to hold off, if at all."""
        certain = reason_code == SESSION_TAKEN_OVER
        if not certain:
            if lasted is None:
                return None  # no session: the broker's absence has its own backoff
            if lasted >= self.short:
                self._short_run = self._holds = 0
                return None
            self._short_run += 1
            if self._short_run < self.suspect_after:
                return None
        self._short_run = 0
        self._holds += 1
        return Hold(min(self.ceiling, self.base * 2 ** (self._holds - 1)), certain)


class MqttSession:
    """A long-lived MQTT presence: subscriptions and birth message survive every reconnect."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        identifier: str,
        birth: Retained | None = None,
        will: Retained | None = None,
        session_expiry: int | None = None,
        backoff_base: float = 0.2,
        backoff_ceiling: float = 30.0,
        op_timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self._identifier = identifier
        self._birth = birth
        self._will = will
        self._session_expiry = session_expiry
        self._backoff_base = backoff_base
        self._backoff_ceiling = backoff_ceiling
        self._op_timeout = op_timeout
        # Tuples, not lists: one small object per topic (there are several per lock).
        self._exact: dict[str, tuple[Handler, ...]] = {}
        self._wildcard: dict[str, tuple[Handler, ...]] = {}
        self._client: aiomqtt.Client | None = None
        self._window = asyncio.Semaphore(MAX_INFLIGHT - REPLY_ROOM)  # QoS 1 but replies
        self._queue: _DispatchQueue | None = None  # the current client's incoming queue
        self._connected = asyncio.Event()
        self._away = asyncio.Event()  # the opposite of _connected, for those who wait for it
        self._away.set()
        self._on_connect: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []
        self.connections = 0
        self._connected_at = 0.0
        self._takeover = TakeoverWatch()
        self._reconfigured = asyncio.Event()

    # -- registration -----------------------------------------------------------------------

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every (re)connect, once subscriptions are in place."""
        self._on_connect.append(callback)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._on_disconnect.append(callback)

    def forget_callback(self, callback: Callable[[], None]) -> None:
        """Undo ``on_connect``/``on_disconnect`` for ``callback`` (a device removed by a reload)."""
        for callbacks in (self._on_connect, self._on_disconnect):
            while callback in callbacks:
                callbacks.remove(callback)

    async def unsubscribe(self, topic_filter: str, handler: Handler) -> None:
        """Undo one ``subscribe``; the broker is told once no handler is left on the filter."""
        table = self._wildcard if ("+" in topic_filter or "#" in topic_filter) else self._exact
        left = tuple(h for h in table.get(topic_filter, ()) if h is not handler)
        if left:
            table[topic_filter] = left
            return
        table.pop(topic_filter, None)
        client = self._client
        if client is not None and self._connected.is_set():
            try:
                await client.unsubscribe(topic_filter, timeout=self._op_timeout)
            except aiomqtt.MqttError:
                # The next reconnect subscribes only what is left.
                log.warning("mqtt.unsubscribe_failed", topic=topic_filter)

    async def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Route ``topic_filter`` to ``handler`` now and after every reconnect."""
        table = self._wildcard if ("+" in topic_filter or "#" in topic_filter) else self._exact
        first = topic_filter not in table
        table[topic_filter] = (*table.get(topic_filter, ()), handler)
        client = self._client
        if first and client is not None and self._connected.is_set():
            try:
                await client.subscribe(topic_filter, qos=1, timeout=self._op_timeout)
            except aiomqtt.MqttError:
                # The reconnect that follows subscribes everything again.
                log.warning("mqtt.subscribe_failed", topic=topic_filter)

    # -- state ------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def wait_disconnected(self, timeout: float | None = None) -> None:
        """Until the session knows its connection is gone. paho may know first: a publish it
        refuses raises NotConnected while the session still counts itself connected, until the
        event loop has read the socket's end."""
        async with asyncio.timeout(timeout):
            await self._away.wait()

    # -- publishing -------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: Payload,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation_data: bytes | None = None,
        timeout: float | None = None,
        reply: bool = False,
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's ack (bounded by ``timeout``).

        A topic the broker would refuse is never sent (it would cost the whole connection):
        it is logged and raises :class:`TopicRefused`. ``reply``: an API reply, which never
        queues behind the gateway's own traffic (see :data:`REPLY_ROOM`).
        """
        async with NO_WAIT if reply or qos == 0 else self._window:
            await self._publish(
                topic,
                payload,
                qos=qos,
                retain=retain,
                correlation_data=correlation_data,
                timeout=timeout,
            )

    async def _publish(
        self,
        topic: str,
        payload: Payload,
        *,
        qos: int,
        retain: bool,
        correlation_data: bytes | None,
        timeout: float | None,
    ) -> None:
        problem = topic_problem(topic)
        if problem is not None:
            log.warning("mqtt.publish_refused", topic=shown_topic(topic), reason=problem)
            raise TopicRefused(f"topic {shown_topic(topic)} {problem}")
        client = self._client
        if client is None or not self._connected.is_set():
            raise NotConnected(topic)
        properties = None
        if correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation_data
        await _publish_acked(
            client,
            topic,
            encode(payload),
            qos=qos,
            retain=retain,
            properties=properties,
            timeout=self._op_timeout if timeout is None else timeout,
        )

    # -- the connection loop ----------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        will = None
        if self._will is not None:
            will = aiomqtt.Will(self._will.topic, self._will.payload, qos=1, retain=True)
        return build_client(
            self._settings,
            identifier=self._identifier,
            will=will,
            session_expiry=self._session_expiry,
            timeout=self._op_timeout,
            queue_type=self._new_queue,
        )

    def _new_queue(self, maxsize: int = 0) -> _DispatchQueue:
        queue = self._queue = _DispatchQueue(maxsize)
        return queue

    async def run(self) -> None:
        """Stay connected until cancelled; never returns on its own."""
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            self._reconfigured.clear()
            broker = f"{self._settings.host}:{self._settings.port}"
            client = self._make_client()
            lost: BaseException | None = None
            try:
                async with client:
                    attempt = 0
                    await self._session(client)
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                lost = exc
                reason = str(exc) or type(exc).__name__
                log.warning(
                    "mqtt.disconnected", client_id=self._identifier, broker=broker, reason=reason
                )
            finally:
                was_connected = self._connected.is_set()
                self._client = None
                self._queue = None
                self._connected.clear()
                self._away.set()
                if was_connected:
                    for callback in self._on_disconnect:
                        callback()
            if self._reconfigured.is_set():
                log.info(
                    "mqtt.reconnecting",
                    client_id=self._identifier,
                    broker=broker,
                    reason="the mqtt settings changed",
                )
                continue
            delay = backoff_delay(attempt, base=self._backoff_base, ceiling=self._backoff_ceiling)
            attempt += 1
            lasted = loop.time() - self._connected_at if was_connected else None
            hold = self._takeover.lost(lasted, _reason_code(lost))
            if hold is not None:
                log.error(
                    "mqtt.client_id_in_use",
                    client_id=self._identifier,
                    broker=broker,
                    certain=hold.certain,
                    retry_in=round(hold.delay, 1),
                    hint="another client is connected with this client id (a second lockgate "
                    "with the same hub_id, or another program): backing off instead of fighting",
                )
                delay = max(delay, hold.delay)
            await asyncio.sleep(delay)

    def reconfigure(self, settings: MqttSettings) -> None:
        """Connect with ``settings`` from now on: the current connection is closed cleanly
        (subscriptions, callbacks and the birth message carry over) and a new one made at once."""
        self._settings = settings
        self._reconfigured.set()
        queue = self._queue
        if queue is not None and self._connected.is_set():
            # Wake the session's message loop with a marker, behind what already came in.
            queue.sink = None
            asyncio.Queue.put_nowait(queue, _RECONNECT)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._client = client
        # Until none is left: a driver that subscribes while the batches go out (its lock is
        # being set up as the session connects) is not sent itself, and must not be missed.
        subscribed: set[str] = set()
        while filters := [f for f in (*self._exact, *self._wildcard) if f not in subscribed]:
            for batch in _batches(filters, SUBSCRIBE_BATCH):
                await client.subscribe([(f, 1) for f in batch], timeout=self._op_timeout)
            subscribed.update(filters)
        if self._birth is not None:
            await client.publish(
                self._birth.topic,
                self._birth.payload,
                qos=1,
                retain=True,
                timeout=self._op_timeout,
            )
        self.connections += 1
        self._connected_at = asyncio.get_running_loop().time()
        self._away.clear()
        self._connected.set()
        log.info(
            "mqtt.connected",
            client_id=self._identifier,
            broker=f"{self._settings.host}:{self._settings.port}",
        )
        for callback in self._on_connect:
            callback()
        queue = self._queue
        if queue is None:  # a client built elsewhere: dispatch from aiomqtt's iterator
            async for message in client.messages:
                self._dispatch(message)
            return
        # What came while subscribing waits in the queue and goes first, in order; from then
        # on each message is dispatched as it arrives (see _DispatchQueue). The iterator is
        # left waiting on the empty queue: it ends (raises) when the connection is lost.
        while not queue.empty():
            self._dispatch(queue.get_nowait())
        if self._reconfigured.is_set():
            return  # new settings came while connecting: connect again with them
        queue.sink = self._dispatch
        try:
            async for message in client.messages:
                if message is _RECONNECT:
                    # What came in behind the marker is dispatched before the clean close.
                    while not queue.empty():
                        self._dispatch(queue.get_nowait())
                    return
                self._dispatch(message)
        finally:
            queue.sink = None

    def _dispatch(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        handlers = list(self._exact.get(topic, ()))
        for topic_filter, more in self._wildcard.items():
            # The literal start first: matching each filter against each of thousands of
            # messages a second was 5 % of the gateway's time.
            if topic.startswith(_literal_start(topic_filter)) and matches(topic, topic_filter):
                handlers.extend(more)
        for handler in handlers:
            try:
                handler(message)
            except Exception:  # a bad message must never end the session
                log.exception("mqtt.handler_failed", topic=topic)


class _Acked:
    """Stands in aiomqtt's table of publishes waiting for their PUBACK: aiomqtt's
    ``on_publish`` calls :meth:`set`, which resolves the publisher's future."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def set(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def expire(self) -> None:
        if not self.future.done():
            self.future.set_exception(TimeoutError())


async def _publish_acked(
    client: aiomqtt.Client,
    topic: str,
    payload: bytes,
    *,
    qos: int,
    retain: bool,
    properties: Properties | None,
    timeout: float,
) -> None:
    """Publish through paho and, for QoS 1, wait for the broker's PUBACK.

    ``aiomqtt.Client.publish`` spends a task, a timer and a scan of every pending call on each
    publish (a quarter of the event loop's time on a busy site, with hundreds in flight):
    here it is one future in aiomqtt's own table, which its ``on_publish`` resolves, and one
    timeout. Raises NotConnected when paho refuses or no ack comes within ``timeout``."""
    info = client._client.publish(topic, payload, qos, retain, properties)
    if info.rc != paho_client.MQTT_ERR_SUCCESS:
        raise NotConnected(f"{topic}: could not publish (paho error {info.rc})")
    if qos == 0 or info.is_published():
        return
    loop = asyncio.get_running_loop()
    acked = _Acked(loop.create_future())
    pending = cast(dict[int, Any], client._pending_publishes)
    pending[info.mid] = acked
    # A bare timer, not asyncio.timeout: a third of its cost, paid on every publish.
    timer = loop.call_later(timeout, acked.expire)
    try:
        await acked.future
    except TimeoutError:
        raise NotConnected(f"{topic}: the broker did not acknowledge within {timeout} s") from None
    finally:
        timer.cancel()
        if pending.get(info.mid) is acked:
            del pending[info.mid]


@functools.lru_cache(maxsize=1024)
def _literal_start(topic_filter: str) -> str:
    """What every topic a filter matches starts with: up to its first wildcard."""
    return re.split(r"[+#]", topic_filter, maxsplit=1)[0]


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DeviceSession:
    """One device's view of the shared session: everything its driver subscribes and registers
    is remembered, so that :meth:`close` undoes all of it when a reload removes or replaces the
    device. Publishing goes straight through (``publish`` is the session's own)."""

    __slots__ = ("_callbacks", "_session", "_subscriptions", "publish")

    publish: Callable[..., Coroutine[Any, Any, None]]

    def __init__(self, session: MqttSession) -> None:
        self._session = session
        self._subscriptions: list[tuple[str, Handler]] = []
        self._callbacks: list[Callable[[], None]] = []
        self.publish = session.publish

    def on_connect(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        self._session.on_connect(callback)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        self._session.on_disconnect(callback)

    async def subscribe(self, topic_filter: str, handler: Handler) -> None:
        self._subscriptions.append((topic_filter, handler))
        await self._session.subscribe(topic_filter, handler)

    @property
    def is_connected(self) -> bool:
        return self._session.is_connected

    async def close(self) -> None:
        """Nothing of this device's stays on the session."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for topic_filter, handler in subscriptions:
            await self._session.unsubscribe(topic_filter, handler)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._session.forget_callback(callback)
