"""One worker per lock: observe what the lock reports, look again, send, repeat.

Workers are level-triggered: a wake-up (API change, lock report, timer, reconnect) only says
"look again"; each pass (``gateway.lock_pass``) compares the whole desired state with the whole
observed state and yields at most one command, which the worker sends. Locks never wait on each
other: each worker owns its lock's command stream alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drivers.base import CommandFailed, CommandTimedOut, Driver, EntryEvent, SlotTable
from gateway.clock import Clock, Timer
from gateway.config import Config
from gateway.lock_pass import Command, LockPass, Read, ReadState, Step
from gateway.logs import get_logger, log_context
from gateway.rules.slots import Write
from gateway.store import Priority, Store, Tx
from gateway.store import devices as device_store
from gateway.store import unmanaged as unmanaged_store
from gateway.store.entries import note_entry_events, record_entries
from gateway.store.observed import record_table

log = get_logger("gateway.reconciler")

#: Refusals that come from this side, not the lock: they prove nothing about earlier commands.
NOT_SENT = frozenset({"offline", "not_connected"})
#: After an unexpected error in a pass, wait this long (real time) before the next one.
PASS_ERROR_PAUSE = 1.0
#: Locks recorded online in one unit at most (a unit holds the writer: a pull waits for it).
PRESENCE_BATCH = 100
#: How long a lock's topics may be missing on a connected broker before the device says so
#: (``device_not_found_on_stack``): its stack's retained topics come within milliseconds.
NOT_FOUND_AFTER = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the driver reported at the start of a look, handed to the database thread as is
    (the driver's own state goes on changing on the loop meanwhile)."""

    online: bool | None  # None: nothing recorded yet
    table: SlotTable | None
    refused: str | None
    not_found: str | None
    hears_entries: bool = False  # the driver hears door operations (has_native_entry_events)
    #: Door operations heard since the last look: recorded once, never compared.
    entries: tuple[EntryEvent, ...] = field(default=(), compare=False)


def _record(tx: Tx, device_id: str, seen: Seen, recorded: Seen) -> None:
    """Store what changed in what the lock reports since the last look."""
    device_store.set_online(tx, device_id, bool(seen.online))
    if seen.not_found != recorded.not_found or recorded.online is None:
        device_store.set_not_found(tx, device_id, seen.not_found)
    if seen.refused is not None or seen.table is not None:
        # Cleared only once a report was taken since start: one raised before a restart
        # stands until the lock reports again.
        device_store.set_report_refused(tx, device_id, seen.refused)
    table = seen.table
    if table is not None and table != recorded.table:
        device_store.set_shape(tx, device_id, table.capacity, table.code_lengths)
        changed = record_table(tx, device_id, table, recorded.table)
        unmanaged_store.note_appeared(tx, device_id, changed)
    if seen.hears_entries and not recorded.hears_entries:
        note_entry_events(tx, device_id)


class Presence:
    """Locks found online at start, recorded many to a unit.

    A device shows ``online`` once that is committed. Recorded by each lock's first look, as
    it is for every later change, ten thousand locks at start came online only as fast as the
    writer worked through their first looks (each records the lock's table and plans it: about
    a millisecond). Recorded here first, with the slot count and PIN lengths the lock reported
    (what else its device object shows of it), the locks found online in the same turn of the
    event loop share one small unit, and their device objects go out at once and once; their
    first looks follow as before (and find nothing more to record about it)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._open: tuple[dict[str, SlotTable | None], asyncio.Future[None]] | None = None

    async def record(self, device_id: str, table: SlotTable | None) -> None:
        """Until the lock's being online is committed (or failed to be: the first look then
        records it, as for any lock)."""
        if self._open is not None and len(self._open[0]) < PRESENCE_BATCH:
            found, done = self._open
            found[device_id] = table
            await asyncio.wait({done})
            return
        found, done = self._open = ({device_id: table}, asyncio.get_running_loop().create_future())
        try:
            await asyncio.sleep(0)  # the locks found online in this turn of the loop join
            self._open = None
            # Behind the pool's passes (a guest's backup comes first), ahead of the others.
            await self._store.write(lambda tx: _online(tx, found), priority=Priority.PRESENCE)
        finally:
            if self._open is not None and self._open[1] is done:
                self._open = None
            done.set_result(None)


def _online(tx: Tx, found: dict[str, SlotTable | None]) -> None:
    device_store.set_online_many(tx, sorted(found), online=True)
    models: dict[tuple[int | None, tuple[int, int] | None], list[str]] = {}
    for device_id, table in found.items():
        if table is not None:
            models.setdefault((table.capacity, table.code_lengths), []).append(device_id)
    for (capacity, code_lengths), device_ids in models.items():
        device_store.set_shape_many(tx, device_ids, capacity, code_lengths)


def _entries_stored(outcome: asyncio.Future[None]) -> None:
    """A failed write of entries heard during a command is logged; the command goes on, and
    the next pass is as usual."""
    if not outcome.cancelled() and (error := outcome.exception()) is not None:
        log.error("reconciler.entries_failed", exc_info=error)


class LockWorker:
    """Owns one lock's command stream: never two commands at once, paced, read back on doubt."""

    def __init__(
        self, driver: Driver, store: Store, clock: Clock, config: Config, *, pooled: bool = False
    ) -> None:
        self.driver = driver
        self.device_id = driver.device_id
        self._store = store
        self._clock = clock
        self._config = config
        self._timing = config.timing
        self._wake = asyncio.Event()
        self._commanding = False  # a command is paced or awaits its answer (_execute)
        self._recorded = Seen(online=None, table=None, refused=None, not_found=None)
        self._pooled = pooled  # learnt from each pass; until then, from the configuration
        self._lost_since: datetime | None = None  # since when the driver cannot find the lock
        self._lost_timer: Timer | None = None
        self.reads = ReadState()
        self._lock_answered = False  # since the last pass: every earlier write has settled
        self._not_sent: str | None = None  # the code whose command never left: not an attempt
        self._last_command = 0.0
        self.passes = 0
        #: Set by a reload that removed the device: once no backup code of it is left in the
        #: database (they come off the lock with management), the device is retired and
        #: :meth:`run` returns.
        self.retiring = False
        #: Set while the worker has nothing to do until its next deadline (tests await it).
        self.settled = asyncio.Event()
        #: Set the first time it has nothing to do: the lock has been looked at since start.
        self.looked_at = asyncio.Event()
        self.presence: Presence | None = None  # shared by the reconciler's workers

    @property
    def pooled(self) -> bool:
        """Whether the lock keeps a backup pool (as its last pass found it)."""
        return self._pooled

    def wake(self) -> None:
        self._wake.set()
        self.settled.clear()
        if self._commanding:
            self._store_entries_heard()

    def shift(self, by: timedelta) -> None:
        self.reads.shift(by)
        if self._lost_since is not None:
            self._lost_since += by
        self.wake()

    def reconfigure(self, config: Config) -> None:
        """A reload's timings and pool settings, from the next pass on."""
        self._config = config
        self._timing = config.timing
        self.wake()

    async def run(self) -> None:
        with log_context(device_id=self.device_id):
            await self.driver.start(self.wake)
            # The lock's retained reports arrive right after subscribing, one topic after
            # another: judge it on them, not as "offline" in the instant before they are all in.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timing.command_timeout):
                    while not self.driver.online:
                        await self._wake.wait()
                        self._wake.clear()
            if self.driver.online and self.presence is not None:
                try:
                    await self.presence.record(self.device_id, self.driver.table)
                except Exception:  # the first look records it all the same
                    log.exception("reconciler.presence_failed")
            follow_up = False
            while True:
                self._wake.clear()
                step = Step()
                try:
                    step = await self._look(follow_up=follow_up)
                    self.passes += 1
                    if step.retired:
                        log.info("reconciler.retired")
                        return
                    follow_up = step.command is not None
                    if step.command is not None:
                        await self._execute(step.command)
                        continue
                except Exception:  # one bad pass must not stop this lock for good
                    log.exception("reconciler.pass_failed")
                    await asyncio.sleep(PASS_ERROR_PAUSE)
                await self._idle(step.deadline)

    async def _idle(self, deadline: datetime | None) -> None:
        """Sleep until woken: by a change, or by the clock reaching ``deadline``."""
        if self._wake.is_set():
            return
        self.settled.set()
        self.looked_at.set()
        timer = self._clock.call_at(deadline, self.wake) if deadline is not None else None
        try:
            await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    # -- one look: record what the lock reports, then the pass, as one unit -------------------

    async def _look(self, *, follow_up: bool = False) -> Step:
        """``follow_up``: the look after a command of this worker's (``Priority.FOLLOW_UP``)."""
        seen = Seen(
            online=self.driver.online,
            table=self.driver.table,
            refused=self.driver.refused_report,
            not_found=self._not_found(),
            hears_entries=self.driver.has_entry_events,
            entries=tuple(self.driver.take_entry_events()),
        )
        if seen.online and not self._recorded.online:
            self.reads.request(None)  # back (or new): read it all
        changed = self.driver.take_read_requests()
        if changed:
            self.reads.request(changed)  # changed at the lock, content unseen: look
        recorded, answered, not_sent = self._recorded, self._lock_answered, self._not_sent
        device_id, retiring = self.device_id, self.retiring

        def unit(tx: Tx) -> tuple[Step, bool]:
            if seen != recorded:
                _record(tx, self.device_id, seen, recorded)
            device = device_store.get_device_for_pass(tx, self.device_id)
            if device is None:
                return Step(), False
            if seen.entries:
                record_entries(tx, device, seen.entries, seen.table.slots if seen.table else None)
            step = LockPass(
                tx,
                device,
                seen,
                self._config,
                self.reads,
                lock_answered=answered,
                not_sent=not_sent,
            ).run()
            if retiring and not device.is_managed and not device_store.has_backups(tx, device_id):
                device_store.retire(tx, device_id)
                return Step(retired=True), False
            return step, device.pool_enabled and device.is_managed

        # A lock with a backup pool goes first: its pool is what a guest at the door relies on.
        priority = Priority.POOL_PASS if self._pooled else Priority.PASS
        if follow_up and not self._pooled:
            priority = Priority.FOLLOW_UP
        step, self._pooled = await self._store.write(unit, priority=priority)
        self._lock_answered, self._not_sent = False, None  # committed in the store
        if seen.not_found != recorded.not_found:
            if seen.not_found is not None:
                log.warning("reconciler.device_not_found", check=seen.not_found)
            else:
                log.info("reconciler.device_found")
        self._recorded = seen
        return step

    def _not_found(self) -> str | None:
        """The driver's ``not_found`` once it has stood for :data:`NOT_FOUND_AFTER` on the
        clock (a timer wakes the worker then); None before, and once the lock is found."""
        hint = self.driver.not_found
        if hint is None:
            self._lost_since = None
            if self._lost_timer is not None:
                self._lost_timer.cancel()
                self._lost_timer = None
            return None
        now = self._clock.now()
        if self._lost_since is None:
            self._lost_since = now
        due = self._lost_since + NOT_FOUND_AFTER
        if now >= due:
            return hint
        if self._lost_timer is None:  # armed again if it fired early (a clock may)
            self._lost_timer = self._clock.call_at(due, self._lost_timer_fired)
        return None

    def _lost_timer_fired(self) -> None:
        self._lost_timer = None
        self.wake()

    # -- acting -------------------------------------------------------------------------------

    async def _execute(self, command: Command) -> None:
        self._commanding = True
        self._store_entries_heard()
        try:
            await self._pace()
            await self._send(command)
        finally:
            # Spacing counts from the end of this command (answered or given up on), so that
            # whatever delayed it on its way out cannot squeeze the next one closer to it.
            self._last_command = asyncio.get_running_loop().time()
            self._commanding = False

    def _store_entries_heard(self) -> None:
        """While a command is paced or awaits its answer, the door operations heard are stored
        at once (on every wake): a guest's unlock is not held back by the lock's slow radio or
        a retry's wait. Taken and submitted with no await between, so none is lost or stored
        twice, and the write goes on whatever becomes of this worker (no task per command)."""
        entries = tuple(self.driver.take_entry_events())
        if entries:
            self._store.submit(self._hear(entries)).add_done_callback(_entries_stored)

    def _hear(self, entries: tuple[EntryEvent, ...]) -> Callable[[Tx], None]:
        hears, table = self.driver.has_entry_events, self.driver.table

        def unit(tx: Tx) -> None:
            if hears:
                note_entry_events(tx, self.device_id)
            device = device_store.get_device_for_pass(tx, self.device_id)
            if device is not None:
                record_entries(tx, device, entries, table.slots if table else None)

        return unit

    async def _send(self, command: Command) -> None:
        try:
            if isinstance(command, Read):
                await self._read(command.slots)
            elif isinstance(command, Write):
                log.info("reconciler.write", slot=command.slot, access_code_id=command.code_id)
                await self.driver.set_code(command.slot, command.pin)
            else:
                log.info("reconciler.clear", slot=command.slot, access_code_id=command.code_id)
                await self.driver.clear_slot(command.slot)
        except CommandTimedOut:
            log.warning("reconciler.no_answer", command=type(command).__name__)
            if not isinstance(command, Read):
                self.reads.request(frozenset({command.slot}))  # outcome unknown: look, never assume
            return
        except CommandFailed as exc:
            log.warning("reconciler.refused", command=type(command).__name__, reason=exc.reason)
            if exc.reason in NOT_SENT:
                if not isinstance(command, Read):
                    self._not_sent = command.code_id
                return
        self._lock_answered = True

    async def _read(self, slots: frozenset[int] | None) -> None:
        try:
            await self.driver.read(slots)
        except CommandFailed as exc:
            if exc.reason == "offline":
                raise  # the lock went away before the read: read (no backoff) once it is back
            # Not answering reads either: go on with what was last seen (see ReadState.failed).
            self.reads.failed(self._clock.now())
            raise
        self.reads.succeeded(self._clock.now(), self.driver.table)

    async def _pace(self) -> None:
        """Keep ``min_command_interval`` between two commands to this lock."""
        loop = asyncio.get_running_loop()
        wait = self._last_command + self._timing.min_command_interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


class Reconciler:
    """Every lock's worker, each a task of the gateway's TaskGroup; a reload adds, replaces and
    retires workers while the rest run on."""

    def __init__(
        self,
        workers: Mapping[str, LockWorker],
        on_finished: Callable[[str], None] = lambda device_id: None,
        presence: Presence | None = None,
    ) -> None:
        self.workers = dict(workers)
        self._presence = presence
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._on_finished = on_finished  # a worker that ended by itself: a retired device

    def notify(self, tx: Tx) -> None:
        """Store commit listener: wake the workers whose desired state changed."""
        for device_id in tx.devices_to_reconcile:
            worker = self.workers.get(device_id)
            if worker is not None:
                worker.wake()

    def wake_all(self) -> None:
        for worker in self.workers.values():
            worker.wake()

    def start(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg
        # Locks with a backup pool first: they subscribe, are read and are filled first.
        for worker in sorted(self.workers.values(), key=lambda w: not w.pooled):
            self._spawn(worker)

    def add(self, worker: LockWorker) -> None:
        """A new lock (a reload): its worker starts at once."""
        self.workers[worker.device_id] = worker
        if self._tg is not None:
            self._spawn(worker)

    async def remove(self, device_id: str) -> LockWorker | None:
        """Stop a lock's worker (a reload replaces or re-adds it); its state stays stored."""
        worker = self.workers.pop(device_id, None)
        task = self._tasks.pop(device_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return worker

    def shift(self, by: timedelta) -> None:
        """The clock jumped by ``by``: every worker's own waits keep their time left, and
        every lock looks again at once (a window the jump ended or opened)."""
        for worker in self.workers.values():
            worker.shift(by)

    def retire(self, device_id: str) -> None:
        """A lock a reload removed: its worker takes its backups off it, then ends."""
        worker = self.workers.get(device_id)
        if worker is not None:
            worker.retiring = True
            worker.wake()

    def _spawn(self, worker: LockWorker) -> None:
        assert self._tg is not None
        worker.presence = self._presence
        task = self._tg.create_task(worker.run(), name=f"lock-worker:{worker.device_id}")
        self._tasks[worker.device_id] = task
        task.add_done_callback(lambda done: self._ended(worker, done))

    def _ended(self, worker: LockWorker, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._tasks.get(worker.device_id) is not task:
            return  # stopped on purpose (remove) or replaced meanwhile
        del self._tasks[worker.device_id]
        self.workers.pop(worker.device_id, None)
        self._on_finished(worker.device_id)
