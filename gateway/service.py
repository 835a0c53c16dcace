"""Wiring: every long-lived task of the daemon, owned by one TaskGroup, and an orderly stop.

Stop order (SIGTERM): stop taking requests, let the ones in flight finish, flush the outbox,
publish the retained ``offline`` status, cancel the rest, close the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from datetime import datetime, timedelta

import aiomqtt

from drivers.registry import can_program, create_driver
from gateway import __version__, heap
from gateway.api import access_codes as access_code_api
from gateway.api import devices as device_api
from gateway.api import events as event_api
from gateway.api.pin_guard import PinGuard
from gateway.api.router import Router
from gateway.api.urgent_lane import UrgentLane
from gateway.clock import BACKWARD_TOLERANCE, Clock, SteadyClock, SystemClock, isoformat
from gateway.config import Config, ConfigError, DeviceConfig, load_config
from gateway.homeassistant import HomeAssistantPublisher
from gateway.instance import sole_instance
from gateway.logs import get_logger
from gateway.mqtt import DeviceSession, MqttSession, NotConnected, Retained, encode
from gateway.outbox import Outbox
from gateway.publisher import DevicePublisher
from gateway.reconciler import LockWorker, Presence, Reconciler
from gateway.reload import ReloadPlan, ReloadRefused, plan_reload
from gateway.sdnotify import Notifier, StatusLine
from gateway.store import Priority, Store, Tx
from gateway.store import devices as device_store
from gateway.store.clock_mark import latest_seen, reset_mark, save_mark
from gateway.store.devices import sync_from_config
from gateway.store.history import clock_jumped, database_bytes, prune, resume_windows
from gateway.timesync import clock_synchronized

log = get_logger("gateway.service")

#: How long a stop waits for requests in flight and for the outbox.
DRAIN_TIMEOUT = 5.0
#: How often the wall clock is compared with the monotonic clock, and the difference that is a
#: jump (NTP slews small errors away gradually; it steps large ones).
JUMP_CHECK_EVERY = 1.0
JUMP_TOLERANCE = 1.0
#: How often stored history is pruned (seconds of the gateway's clock).
PRUNE_EVERY = 60.0
#: How often the kernel is asked whether the clock is synchronised (seconds).
CLOCK_SYNC_EVERY = 60.0
#: How often the time seen is saved (seconds), beside the stored events that also say it.
CLOCK_MARK_EVERY = 300.0
#: A persistent session keeps requests queued at the broker while the gateway restarts.
SESSION_EXPIRY = 3600


def status_payload(state: str) -> bytes:
    return encode({"state": state, "version": __version__})


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        backoff_ceiling: float = 30.0,
        reset_clock_mark: bool = False,
    ) -> None:
        self.config = config
        self._reset_clock_mark = reset_clock_mark
        self.clock: Clock = clock or SteadyClock(SystemClock())
        self.notifier = notifier or Notifier()
        self.status_line = StatusLine(self.notifier)
        self.prefix = config.prefix
        self.ready = asyncio.Event()
        self.session = MqttSession(
            config.mqtt,
            identifier=f"lockgate-{config.hub_id}",
            birth=Retained(f"{self.prefix}/status", status_payload("online")),
            will=Retained(f"{self.prefix}/status", status_payload("offline")),
            session_expiry=SESSION_EXPIRY,
            backoff_ceiling=backoff_ceiling,
        )
        self._requests: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._request_numbers = itertools.count(1)
        self.store: Store | None = None
        self.reconciler: Reconciler | None = None
        self.router: Router | None = None
        self.urgent_lane: UrgentLane | None = None
        self._urgent_topics: frozenset[str] = frozenset()
        self.outbox: Outbox | None = None
        self.publisher: DevicePublisher | None = None
        self.homeassistant: HomeAssistantPublisher | None = None
        self._device_sessions: dict[str, DeviceSession] = {}
        self._timing = _LiveTiming(self)
        self._retiring: dict[str, DeviceConfig] = {}  # removed by a reload, backups still on
        self._reload_wanted = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self.pruned = asyncio.Event()  # set after every pruning round (tests await it)
        self.jumped = asyncio.Event()  # set once a clock jump has been handled (tests too)
        self.start_settled = asyncio.Event()  # every lock looked at once since start
        self._collector = heap.StartPause()
        self.collecting = asyncio.Event()  # the collector runs again after start (tests too)
        self._facts: dict[str, object] = {}  # the retained P/health

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        with sole_instance(self.config.database):
            store = await Store.open(self.config.database, self.clock)
            self.store = store
            try:
                self._collector.pause()  # until every lock has been looked at (gateway.heap)
                if self._reset_clock_mark:
                    await store.write(reset_mark)
                    log.warning("clock.mark_reset", now=isoformat(self.clock.now()))
                elif isinstance(self.clock, SteadyClock) and (
                    seen := await store.read(latest_seen)
                ):
                    self.clock.restore(seen)
                    await store.write(functools.partial(resume_windows, stopped_at=seen))
                await store.write(
                    lambda tx: sync_from_config(
                        tx, self.config.devices, self.config.backup_pool, can_program
                    )
                )
                await self._serve(store, stop)
            finally:
                self._collector.stop()
                with contextlib.suppress(Exception):  # a full disk must not hide the real error
                    await store.write(lambda tx: save_mark(tx, tx.now))
                await store.close()
                log.info("gateway.stopped")

    async def _serve(self, store: Store, stop: asyncio.Event) -> None:
        session = self.session
        outbox = Outbox(store, session, self.prefix)
        publisher = DevicePublisher(store, session, self.prefix)
        reconciler = Reconciler(
            {d.device_id: self._worker(d, store, self.config) for d in self.config.devices},
            on_finished=self._retired,
            presence=Presence(store),
        )
        endpoints = [*device_api.ENDPOINTS, *access_code_api.ENDPOINTS, *event_api.ENDPOINTS]
        router = Router(
            store, self.prefix, endpoints, PinGuard(self.config.pin_lookups, self.clock)
        )
        self.reconciler, self.router = reconciler, router
        self.urgent_lane = UrgentLane(
            self.config.mqtt, identifier=f"lockgate-{self.config.hub_id}-urgent", router=router
        )
        self._urgent_topics = frozenset(router.urgent_topics)
        self.outbox, self.publisher = outbox, publisher
        store.on_commit(outbox.notify)
        store.on_commit(publisher.notify)
        store.on_commit(reconciler.notify)
        homeassistant = self.homeassistant = HomeAssistantPublisher(store, session, self.config)
        await homeassistant.subscribe()
        store.on_commit(homeassistant.notify)
        session.on_connect(homeassistant.republish_all)
        session.on_connect(outbox.kick)
        session.on_connect(publisher.republish_all)
        session.on_connect(lambda: self._broker_status("connected to the MQTT broker"))
        session.on_connect(self._facts_again)
        session.on_disconnect(lambda: self._broker_status("waiting for the MQTT broker"))

        try:
            async with asyncio.TaskGroup() as tg:
                await self._start(
                    tg=tg,
                    router=router,
                    outbox=outbox,
                    publisher=publisher,
                    reconciler=reconciler,
                    stop=stop,
                )
        except* _Stopped:
            pass

    async def _start(
        self,
        *,
        tg: asyncio.TaskGroup,
        router: Router,
        outbox: Outbox,
        publisher: DevicePublisher,
        reconciler: Reconciler,
        stop: asyncio.Event,
    ) -> None:
        session = self.session
        await session.subscribe(
            router.topic_filter, lambda message: self._accept(tg, router, message)
        )
        tg.create_task(session.run(), name="mqtt-session")
        if self.urgent_lane is not None:
            tg.create_task(self.urgent_lane.run(), name="urgent-lane")
        tg.create_task(outbox.run(), name="outbox")
        tg.create_task(publisher.run(), name="device-publisher")
        if self.homeassistant is not None:
            tg.create_task(self.homeassistant.run(), name="homeassistant-publisher")
        tg.create_task(self._watchdog(), name="systemd-watchdog")
        tg.create_task(self._reloader(), name="config-reloader")
        tg.create_task(self._keep_clock_mark(), name="clock-mark")
        tg.create_task(self._prune_history(), name="history-pruner")
        tg.create_task(self._watch_clock_sync(), name="clock-sync-watch")
        if isinstance(self.clock, SteadyClock):
            tg.create_task(self._watch_clock(self.clock), name="clock-jump-watch")
        self._tg = tg
        reconciler.start(tg)
        tg.create_task(self._freeze_after_start(reconciler), name="gc-freeze")
        self.notifier.ready()
        self.ready.set()
        log.info("gateway.started", hub_id=self.config.hub_id, devices=len(reconciler.workers))
        await stop.wait()
        self.notifier.stopping()
        await self._drain(outbox)
        raise _Stopped  # cancels every task of the group

    def _accept(self, tg: asyncio.TaskGroup, router: Router, message: aiomqtt.Message) -> None:
        if not self._accepting:
            return  # stopping: a QoS 1 client retries once we are back
        lane = self.urgent_lane
        if lane is not None and lane.serving and message.topic.value in self._urgent_topics:
            return  # the urgent lane has its own copy
        task = tg.create_task(
            router.serve(message, self.session), name=f"api-request:{next(self._request_numbers)}"
        )
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    # -- the lock workers, and reloading the configuration ----------------------------------

    def _worker(self, device: DeviceConfig, store: Store, config: Config) -> LockWorker:
        """A lock's driver on a session of its own (so a reload can take it all back) and the
        worker that drives it."""
        session = self._device_sessions[device.device_id] = DeviceSession(self.session)
        driver = create_driver(device, session, self._timing)
        return LockWorker(driver, store, self.clock, config, pooled=device.backup_pool.enabled)

    async def _drop_worker(self, device_id: str) -> None:
        assert self.reconciler is not None
        await self.reconciler.remove(device_id)
        session = self._device_sessions.pop(device_id, None)
        if session is not None:
            await session.close()

    def _retired(self, device_id: str) -> None:
        """A device a reload removed is done: its backups are off its lock."""
        self._retiring.pop(device_id, None)
        session = self._device_sessions.pop(device_id, None)
        if session is not None and self._tg is not None:
            self._tg.create_task(session.close(), name=f"device-session-close:{device_id}")
        if self.publisher is not None:
            self.publisher.republish_all()  # withdraws its retained device object
        log.info("gateway.device_retired", device_id=device_id)

    def request_reload(self) -> None:
        """SIGHUP (``systemctl reload lockgate``): read the configuration file again."""
        self._reload_wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            try:
                await self.reload()
            except Exception:  # a reload that fails half-way must not end the daemon
                log.exception("gateway.reload_failed")
                self.notifier.ready()

    async def reload(self) -> bool:
        """Apply the configuration file as it reads now, without dropping the MQTT session or
        any lock's state; False, and the running configuration kept, when it has problems."""
        self.notifier.reloading()
        try:
            if self.config.source is None:
                raise ReloadRefused(["the configuration was not read from a file"])
            wanted = await asyncio.to_thread(load_config, self.config.source)
            plan = plan_reload(self.config, wanted)
        except (ConfigError, ReloadRefused) as exc:
            log.error("gateway.reload_refused", problems=exc.problems)  # noqa: TRY400 (a bad file, not a fault)
            self.status_line.set(
                "reload",
                "reload refused, still running the previous configuration: "
                + "; ".join(exc.problems),
            )
            self.notifier.ready()
            return False
        await self._apply(plan, wanted)
        log.info(
            "gateway.reloaded",
            added=[d.device_id for d in plan.added],
            removed=list(plan.removed),
            replaced=[d.device_id for d in plan.replaced],
            broker_changed=plan.broker_changed,
        )
        self.status_line.set("reload", f"configuration reloaded: {len(wanted.devices)} devices")
        self.notifier.ready()
        return True

    async def _apply(self, plan: ReloadPlan, wanted: Config) -> None:
        await self._apply_devices(plan, wanted)
        self.config = wanted
        reconciler = self.reconciler
        assert reconciler is not None
        for worker in reconciler.workers.values():
            worker.reconfigure(wanted)
        if self.router is not None:
            self.router.pin_guard = PinGuard(wanted.pin_lookups, self.clock)
        if self.homeassistant is not None:
            await self.homeassistant.reconfigure(wanted)
        if plan.broker_changed:
            self.session.reconfigure(wanted.mqtt)
            if self.urgent_lane is not None:
                self.urgent_lane.reconfigure(wanted.mqtt)

    async def _apply_devices(self, plan: ReloadPlan, wanted: Config) -> None:
        """Added devices start, replaced ones restart, removed ones are unmanaged and retire
        once their backups are off their locks (until then they stay in the API)."""
        store, reconciler = self.store, self.reconciler
        assert store is not None
        assert reconciler is not None
        removed = plan.removed
        self._retiring.update(
            (d.device_id, d) for d in self.config.devices if d.device_id in removed
        )
        for device in plan.added:
            if self._retiring.pop(device.device_id, None) is not None:
                await self._drop_worker(device.device_id)  # back before it was retired
        for device in plan.replaced:
            await self._drop_worker(device.device_id)
        listed = [*wanted.devices, *self._retiring.values()]

        def unit(tx: Tx) -> None:
            sync_from_config(tx, listed, wanted.backup_pool, can_program)
            for device_id in removed:
                device_store.set_managed(tx, device_id, False)
            for device in plan.added:
                device_store.set_managed(tx, device.device_id, True)

        await store.write(unit)
        for device in (*plan.added, *plan.replaced):
            reconciler.add(self._worker(device, store, wanted))
        for device_id in removed:
            reconciler.retire(device_id)

    async def _drain(self, outbox: Outbox) -> None:
        self._accepting = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                if self._requests:
                    await asyncio.wait(set(self._requests))
                if self.session.is_connected:
                    await outbox.flush()
                await outbox.marked()
        with contextlib.suppress(NotConnected, TimeoutError):
            await self.session.publish(
                f"{self.prefix}/status", status_payload("offline"), retain=True, timeout=2.0
            )

    async def settled(self) -> None:
        """Wait until every lock worker is idle and every event and device object is out."""
        assert self.reconciler is not None
        assert self.outbox is not None
        assert self.publisher is not None
        events = [w.settled for w in self.reconciler.workers.values()]
        events += [self.outbox.drained, self.publisher.drained]
        if self.homeassistant is not None:
            events.append(self.homeassistant.drained)
        while not all(e.is_set() for e in events):
            for event in events:
                await event.wait()

    async def _prune_history(self) -> None:
        """Every :data:`PRUNE_EVERY` seconds of the gateway's clock: events past the retention
        and expired idempotency records go, in small units that never hold up a request; the
        database's size is shown in ``systemctl status``."""
        store = self.store
        assert store is not None
        while True:
            await self._until(self.clock.now() + timedelta(seconds=PRUNE_EVERY))
            unit = functools.partial(
                prune,
                retention=timedelta(seconds=self.config.history.retention),
                max_events=self.config.history.max_events,
            )
            gone = 0
            while removed := await store.write(unit, priority=Priority.PASS):
                gone += removed
            size = await store.read(database_bytes)
            if gone:
                log.info("history.pruned", rows=gone, database_bytes=size)
            self.status_line.set("database", f"database {size / 1e6:.1f} MB")
            rounded = round(size, -5)  # P/health changes in steps of 100 kB, not every round
            if rounded != self._facts.get("database_bytes"):
                await self._publish_facts(database_bytes=rounded)
            self.pruned.set()

    async def _until(self, when: datetime) -> None:
        """Until the gateway's clock reaches ``when`` (a test's clock moves in a blink)."""
        reached = asyncio.Event()
        timer = self.clock.call_at(when, reached.set)
        try:
            await reached.wait()
        finally:
            timer.cancel()

    async def _freeze_after_start(self, reconciler: Reconciler) -> None:
        """Once every lock has been looked at, what start-up built is frozen and the collector,
        paused since :meth:`run` began, resumes (:mod:`gateway.heap`)."""

        async def every_lock_looked_at() -> None:
            for worker in list(reconciler.workers.values()):
                await worker.looked_at.wait()  # once: a busy start does not hold it back

        try:
            async with asyncio.timeout(heap.PAUSE_MAX):
                await every_lock_looked_at()
        except TimeoutError:
            self._collector.resume()
            self.collecting.set()
            log.info("gateway.collector_resumed", unsettled_after_seconds=heap.PAUSE_MAX)
            await every_lock_looked_at()
        frozen = self._collector.settle()
        self.collecting.set()
        log.info("gateway.start_settled", objects_frozen=frozen)
        self.start_settled.set()

    async def _watch_clock(self, clock: SteadyClock) -> None:
        """Jumps of the wall clock, noticed within :data:`JUMP_CHECK_EVERY`, each recorded in
        the history. After a forward one every lock looks again at once (a window the jump
        ended or opened is not left for the next scheduled look) and what waits keeps the time
        left to it. A clock that reads earlier than the gateway has seen (a stale clock after a
        boot, a clock set back) is told once, with how far, until it has caught up."""
        before = clock.drift()  # reading it also notices a clock that reads early
        told: timedelta | None = None
        first = True
        while True:
            drift = clock.drift()
            jump, before = drift - before, drift
            behind = clock.behind
            if abs(jump) > JUMP_TOLERANCE:
                log.info("clock.jumped", seconds=round(jump, 1))
                await self._clock_jumped(jump)
            if behind is not None and (told is None or behind - told > BACKWARD_TOLERANCE):
                seconds = round(behind.total_seconds())
                log.warning(
                    "clock.behind",
                    seconds=seconds,
                    hint="the wall clock reads earlier than the gateway has already seen:"
                    " windows are judged by the later time until it catches up",
                )
                self.status_line.set(
                    "clock", f"the wall clock reads {seconds} s earlier than already seen"
                )
                await self._publish_facts(clock_behind_seconds=seconds)
                await self._clock_jumped(-behind.total_seconds())
            elif (behind is None and told is not None) or first:
                if told is not None:
                    log.info("clock.caught_up")
                self.status_line.set("clock", None)
                await self._publish_facts(clock_behind_seconds=None)
            told, first = behind, False
            await asyncio.sleep(JUMP_CHECK_EVERY)

    async def _clock_jumped(self, seconds: float) -> None:
        if self.store is None or self.reconciler is None:
            return
        # What waits keeps the time left to it: a retried request within its window is still
        # answered as the first time, no backoff is skipped, no delay warning and no resync of
        # every lock comes due at once.
        await self.store.write(functools.partial(clock_jumped, seconds=seconds))
        if seconds > 0:
            self.reconciler.shift(timedelta(seconds=seconds))
        self.jumped.set()

    async def _watch_clock_sync(self) -> None:
        """Whether the kernel calls the clock synchronised, at start and every
        :data:`CLOCK_SYNC_EVERY`: in ``P/health``, ``STATUS=`` and the log at each change."""
        while True:
            synchronized = await asyncio.to_thread(clock_synchronized)
            if synchronized != self._facts.get("clock_synchronized"):
                log.info("clock.synchronization", synchronized=synchronized)
                self.status_line.set("sync", None if synchronized else "clock not synchronised")
                await self._publish_facts(clock_synchronized=synchronized)
            await asyncio.sleep(CLOCK_SYNC_EVERY)

    async def _publish_facts(self, **changed: object) -> None:
        """The retained ``P/health``: what an operator watches from afar (issue 13), beside
        ``P/status``, whose payload the contract fixes to the state and version."""
        self._facts.update(changed)
        await self._republish_facts()

    def _facts_again(self) -> None:
        """A (re)connect: the broker may have lost its retained messages."""
        if self._tg is not None and self._facts:
            self._tg.create_task(self._republish_facts(), name="health-republish")

    async def _republish_facts(self) -> None:
        if self._facts:
            with contextlib.suppress(NotConnected, TimeoutError):
                await self.session.publish(
                    f"{self.prefix}/health", encode(self._facts), retain=True, timeout=10.0
                )

    async def _keep_clock_mark(self) -> None:
        """Save the time seen now and then, for a restart on a board whose clock is stale
        (idle sites store no events that would say it)."""
        store = self.store
        assert store is not None
        while True:
            await asyncio.sleep(CLOCK_MARK_EVERY)
            await store.write(lambda tx: save_mark(tx, tx.now), priority=Priority.PASS)

    def _broker_status(self, text: str) -> None:
        self.status_line.set("broker", text)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)


class _LiveTiming:
    """What the drivers read of the timing: the running configuration's, so a reload's new
    ``command_timeout`` applies to every driver without rebuilding it."""

    __slots__ = ("_gateway",)

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    @property
    def command_timeout(self) -> float:
        return self._gateway.config.timing.command_timeout


class _Stopped(Exception):
    """Raised inside the TaskGroup once drained, so that it cancels all its tasks."""
