"""Urgent requests (a pull: a guest is at the door) on a thread and an MQTT connection of their own.

On a busy site the gateway's event loop carries the traffic of every lock: a request that waits
there for its turn, and again for its reply's, waits behind thousands of callbacks. The lane is
a second event loop on its own thread, with its own MQTT session, subscribed only to the urgent
endpoints: it reads the request, runs it through the same :class:`~gateway.api.router.Router`
(the writer commits urgent units first) and publishes the reply itself. Listeners of the commit
(events, device objects, the pool's refill) still run on the gateway's loop.

While the lane is not subscribed (starting, its connection lost) the gateway's own session
serves those requests as it serves every other: nothing is left unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import aiomqtt

from gateway.api.router import Router
from gateway.config import MqttSettings
from gateway.logs import get_logger
from gateway.mqtt import MqttSession

log = get_logger("gateway.api")

#: How long the lane's thread may take to finish its requests and disconnect when stopping.
STOP_TIMEOUT = 10.0
#: How often the lane checks that the gateway's loop still runs (it ends with it, also when
#: that loop is closed without stopping the lane first).
HOME_CHECK_EVERY = 1.0
CANCEL_AGAIN_AFTER = 0.1


class UrgentLane:
    def __init__(self, settings: MqttSettings, *, identifier: str, router: Router) -> None:
        self._settings = settings
        self._identifier = identifier
        self._router = router
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: MqttSession | None = None
        #: True while the lane's subscriptions are in place: the gateway's session then leaves
        #: urgent requests to it (set on the lane's thread, read on the gateway's).
        self.serving = False
        self.served = 0  # requests the lane took
        self._changed = threading.Condition()
        self.thread: threading.Thread | None = None

    async def run(self) -> None:
        """The lane's thread, from the gateway's TaskGroup: until this task is cancelled."""
        loop = self._loop = asyncio.new_event_loop()
        # Its own executor (the broker connect) is one thread, not asyncio's default of up to
        # 32: the unit's TasksMax= counts every thread of the service.
        loop.set_default_executor(ThreadPoolExecutor(1, thread_name_prefix="lockgate-urgent-lane"))
        stop = asyncio.Event()  # bound to the lane's loop when that first waits on it
        home = asyncio.get_running_loop()
        thread = self.thread = threading.Thread(
            target=self._main, args=(loop, stop, home), name="lockgate-urgent-lane", daemon=True
        )
        thread.start()
        try:
            await asyncio.Future()  # until cancelled
        finally:
            self._set_serving(False)
            with contextlib.suppress(RuntimeError):  # the lane's loop has ended already
                loop.call_soon_threadsafe(stop.set)
            await asyncio.to_thread(thread.join, STOP_TIMEOUT)

    def reconfigure(self, settings: MqttSettings) -> None:
        """New broker settings (a reload): the lane reconnects with them, as the gateway does."""
        self._settings = settings
        session, loop = self._session, self._loop
        if session is not None and loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(session.reconfigure, settings)

    def _main(
        self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event, home: asyncio.AbstractEventLoop
    ) -> None:
        try:
            loop.run_until_complete(self._serve(stop, home))
        except Exception:
            # The gateway's session serves urgent requests while the lane does not.
            log.exception("api.urgent_lane_failed")
        finally:
            self._set_serving(False)
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self, stop: asyncio.Event, home: asyncio.AbstractEventLoop) -> None:
        session = self._session = MqttSession(self._settings, identifier=self._identifier)
        session.on_connect(lambda: self._set_serving(True))
        session.on_disconnect(lambda: self._set_serving(False))
        numbers = itertools.count(1)
        requests: set[asyncio.Task[None]] = set()
        async with asyncio.TaskGroup() as tg:

            def accept(message: aiomqtt.Message) -> None:
                self.served += 1
                task = tg.create_task(
                    self._router.serve(message, session), name=f"urgent-request:{next(numbers)}"
                )
                requests.add(task)
                task.add_done_callback(requests.discard)

            for topic in self._router.urgent_topics:
                await session.subscribe(topic, accept)
            connection = tg.create_task(session.run(), name="urgent-lane-mqtt")
            while not stop.is_set() and home.is_running():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), HOME_CHECK_EVERY)
            self._set_serving(False)
            if requests:  # each is committed already: its reply still goes out
                await asyncio.wait(requests, timeout=STOP_TIMEOUT)
            while not connection.done():
                # Again until it ends: aiomqtt's wait_for (Python 3.11) may swallow a
                # cancellation that lands as a connection attempt fails.
                connection.cancel()
                await asyncio.wait({connection}, timeout=CANCEL_AGAIN_AFTER)

    def _set_serving(self, serving: bool) -> None:
        if serving != self.serving:
            log.info("api.urgent_lane", serving=serving)
        with self._changed:
            self.serving = serving
            self._changed.notify_all()

    def wait_serving(self, serving: bool, timeout: float) -> bool:
        """Block until :attr:`serving` is ``serving`` (from a thread: ``asyncio.to_thread``)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.serving is serving, timeout)
