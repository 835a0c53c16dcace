"""The gateway side of one lock behind Z-Wave JS UI's MQTT gateway.

What the lock holds is observed on the retained value topics (``userIdStatus``/``userCode`` per
slot). Writes go to the value topics' ``/set`` and are never answered: a write is done when the
value topics show it (zwave-js reads the slot back about a second later), refused when they are
republished showing something else. Reads go through the request/response API
(``sendCommand get`` per slot), correlated by an id of ours that the reply echoes in ``origin``.

Online means: the broker is connected, the Z-Wave JS UI gateway says it is up, its Z-Wave driver
has not said it is down (``Z/driver/status``), and the node is not Dead. Z-Wave JS UI killed hard
leaves its last driver and node statuses retained (its will only marks the gateway down), and
on restart says it is up ~1.7 s before its Z-Wave driver is: so after the gateway was down those
statuses count only once reported afresh, or once the API answers (it was cut off from the
broker, not restarted). An API answer "Z-Wave client not connected" means the same: offline.

Door operations come as Notification CC Access Control events (keypad, manual, RF, auto lock;
a keypad operation names its user, which is the slot) and as changes of the Door Lock CC's
``currentMode``; the two are paired into one entry event (drivers/entry_pairing.py). An event
the broker replays on subscribing (retained, where Z-Wave JS UI retains values) is old news, not
the door now, and is not told; a live one always is (the broker clears its retain flag). The node
reports its operations (``has_entry_events``) once any Access Control value of it is seen:
zwave-js creates them when the lock's interview shows Notification CC Access Control.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Final

import aiomqtt

from drivers.base import (
    CommandFailed,
    CommandTimedOut,
    CommandTiming,
    DeviceSettings,
    SlotTable,
    SlotValue,
    Unreadable,
    WakeCallback,
)
from drivers.bounds import MAX_SLOTS, check_capacity, check_slot
from drivers.entry_pairing import EntryPairing
from drivers.reachability import LinkedDriver
from drivers.zwave_js_ui.config import ZwaveJsUiOptions
from drivers.zwave_js_ui.protocol import (
    ACCESS_CONTROL,
    MISSING,
    ApiReply,
    Property,
    Topics,
    api_request_payload,
    check_value,
    clear_payload,
    door_lock_kind,
    get_args,
    notification_entry,
    parse_api_reply,
    parse_gateway_status,
    parse_node_status,
    parse_user_get_result,
    parse_value,
    set_payload,
    slot_value,
    users_count_args,
)
from gateway.domain import compact_slots
from gateway.logs import get_logger
from gateway.session import NotConnected, Session

__all__ = ["ZwaveJsUiDriver", "create_driver"]

log = get_logger("drivers.zwave_js_ui")

#: After the value topics of a written slot were republished showing something else, how long
#: to wait for the rest of the read-back (status and code come as two messages) before giving up.
SETTLE: Final = 0.3
#: What zwave-js accepts as a user code (its metadata: a string of 4 to 10 characters).
CODE_LENGTHS: Final = (4, 10)
#: ``getInfo`` asks, without a radio trip, whether Z-Wave JS UI's Z-Wave driver is ready.
APIS: Final = ("sendCommand", "getInfo")
#: Z-Wave JS UI's answer to any API call while its Z-Wave driver is not ready.
NOT_CONNECTED: Final = "client not connected"


class ZwaveJsUiDriver(LinkedDriver[str, ApiReply]):
    """One Z-Wave node with the User Code CC, as Z-Wave JS UI shows it over MQTT."""

    name = "zwave"
    # Retained statuses come again on reconnect; until then nothing is known. The Z-Wave
    # driver status (`Z/driver/status`) counts as up until it says otherwise.
    signals: ClassVar[Mapping[str, bool]] = {
        "node_status": False,
        "gateway_status": False,
        "driver_status": True,
    }
    forget_on_disconnect = ("node_status", "gateway_status")
    stale_after_down: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "gateway_status": ("node_status", "driver_status")
    }

    def __init__(
        self,
        device_id: str,
        topics: Topics,
        session: Session,
        timing: CommandTiming,
        *,
        slots: int | None = None,
        code_lengths: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(device_id, session, timing)
        self.topics = topics
        self._configured_capacity = slots
        self._users_count: int | None = None
        self._code_lengths = code_lengths
        self._values: dict[tuple[Property, int], object] = {}
        self._updates: dict[int, int] = {}  # slot -> value messages seen (fresh read-backs)
        self._changed = asyncio.Event()  # set on every value message
        self._node_seen = False  # any topic of the node since start: it is where we look
        self._gateway_seen = False  # Z-Wave JS UI's gateway status since start
        self._probe: asyncio.Task[None] | None = None
        self._operations = EntryPairing(self._heard_entry)

    # -- observed state ---------------------------------------------------------------------

    @property
    def capacity(self) -> int | None:
        if self._configured_capacity is not None:
            return self._configured_capacity
        if self._users_count is not None:
            return self._users_count
        return max((slot for _, slot in self._values), default=None)

    @property
    def not_found(self) -> str | None:
        if self._node_seen or not self._session.is_connected:
            return None
        t = self.topics
        if not self._gateway_seen:
            return (
                f"neither node {t.node_id} ({t.node_status}) nor Z-Wave JS UI"
                f" ({t.gateway_status}) has appeared on the broker: check that Z-Wave JS UI's"
                " MQTT gateway runs on this broker, and base_topic and gateway_name against its"
                " MQTT prefix and name"
            )
        return (
            f"Z-Wave JS UI is on the broker but node {t.node_id} has not appeared at"
            f" {t.node_status} nor at {t.values_filter}: check node_id, topic_style, node_names,"
            " node_name and location against Z-Wave JS UI's gateway type, 'use node names' and"
            " 'ignore location' settings and the node's name and location"
        )

    def _seen(self, node: bool) -> None:
        """A topic of the node (``node``) or of the gateway arrived: maybe not lost any more."""
        if self._node_seen or (not node and self._gateway_seen):
            return  # the common case: nothing changes
        lost = self._session.is_connected
        if node:
            self._node_seen = True
        else:
            self._gateway_seen = True
        if lost:
            self._wake()  # what ``not_found`` says has changed

    async def start(self, wake: WakeCallback) -> None:
        self._begin(wake)
        link = self._link
        gateway_status = link.handler("gateway_status", parse_gateway_status)
        node_status = link.handler("node_status", lambda payload: parse_node_status(payload).alive)

        def on_gateway_status(message: aiomqtt.Message) -> None:
            self._seen(node=False)
            gateway_status(message)
            if link.says("gateway_status") and link.stale:
                self._check_ready()

        def on_node_status(message: aiomqtt.Message) -> None:
            self._seen(node=True)
            node_status(message)

        # Whether the node can be found is judged on a connected broker only.
        self._session.on_connect(self._poke)
        self._session.on_disconnect(self._poke)
        await self._session.subscribe(self.topics.gateway_status, on_gateway_status)
        await self._session.subscribe(self.topics.node_status, on_node_status)
        await self._session.subscribe(
            self.topics.driver_status, link.handler("driver_status", parse_gateway_status)
        )
        await self._session.subscribe(self.topics.values_filter, self._on_value)
        await self._session.subscribe(self.topics.notifications_filter, self._on_notification)
        await self._session.subscribe(self.topics.door_lock_mode, self._on_door_lock)
        for api in APIS:
            await self._session.subscribe(self.topics.api_reply(api), self._on_api_reply)

    def _went_offline(self) -> None:
        self._changed.set()  # writes waiting on value topics look at `online` again

    def _check_ready(self) -> None:
        """Z-Wave JS UI is back with statuses left from before: ask whether its Z-Wave driver
        is ready. If it is, it was only cut off from the broker and republishes nothing, so
        those statuses stand; if not ("client not connected"), fresh ones will follow."""
        if self._probe is not None and not self._probe.done():
            return

        async def probe() -> None:
            try:
                await self._request("getInfo", [])
            except CommandFailed as exc:
                log.info("zwave.driver_not_ready", device_id=self.device_id, reason=str(exc))
                return
            self._link.confirm_stale()

        self._probe = asyncio.get_running_loop().create_task(
            probe(), name=f"zwave-ready:{self.device_id}"
        )

    def _on_value(self, message: aiomqtt.Message) -> None:
        found = self.topics.parse_value_topic(message.topic.value)
        if found is None:
            return
        self._seen(node=True)
        prop, slot = found
        # Each value topic is a report of its own, refused or accepted on its own; those
        # beyond the ceiling share one source, so no lie can grow what is kept here.
        source = (prop, min(slot, MAX_SLOTS + 1))
        payload = _payload(message)
        if not payload:
            self._refusals.accept(source)  # the retained value was removed: nothing to refuse
            return
        configured = self._configured_capacity
        if configured is not None and configured < slot <= MAX_SLOTS:
            return  # a user of the lock beyond the configured slots: not the gateway's
        try:
            check_slot(slot, MAX_SLOTS, f"{prop}/{slot}")
            report = parse_value(payload)
            check_value(prop, report.value, f"{prop}/{slot}", self._code_lengths)
        except ValueError as exc:
            # Refused: the slot keeps what it showed before.
            self._refusals.refuse(source, str(exc))
            return
        self._refusals.accept(source)
        self._values[(prop, slot)] = report.value
        self._updates[slot] = self._updates.get(slot, 0) + 1
        self._changed.set()
        self._refresh_table()

    def _on_notification(self, message: aiomqtt.Message) -> None:
        """A Notification CC value or event of the node: maybe a door operation."""
        found = self.topics.parse_notification_topic(message.topic.value)
        if found is None:
            return
        self._seen(node=True)
        notification_type, key = found
        if notification_type == ACCESS_CONTROL:
            self._reports_entries()
        payload = _payload(message)
        if not payload or message.retain:
            return  # a removed retained value, or an event from before: not the door now
        try:
            event = notification_entry(notification_type, key, payload)
        except ValueError as exc:
            log.warning("zwave.bad_notification", device_id=self.device_id, problem=str(exc))
            return
        if event is not None:
            self._operations.operation(event)

    def _on_door_lock(self, message: aiomqtt.Message) -> None:
        """The Door Lock CC's mode: a change of it is an operation too (see EntryPairing)."""
        payload = _payload(message)
        if not payload:
            return
        try:
            kind = door_lock_kind(payload)
        except ValueError as exc:
            log.warning("zwave.bad_door_lock", device_id=self.device_id, problem=str(exc))
            return
        self._operations.state(kind)

    def _slot(self, slot: int) -> SlotValue:
        status = self._values.get(("userIdStatus", slot), MISSING)
        code = self._values.get(("userCode", slot), MISSING)
        return slot_value(status, code)

    def _refresh_table(self) -> None:
        capacity = self.capacity
        if capacity is None:
            return
        table = SlotTable(
            capacity=capacity,
            code_lengths=self._code_lengths,
            slots=compact_slots({n: self._slot(n) for n in range(1, capacity + 1)}),
        )
        if table != self._table:
            self._table = table
            self._wake()

    def _on_api_reply(self, message: aiomqtt.Message) -> None:
        try:
            reply = parse_api_reply(_payload(message))
        except ValueError as exc:
            log.warning("zwave.bad_api_reply", device_id=self.device_id, problem=str(exc))
            return
        waiting = self._pending.get(reply.request_id or "")
        if waiting is not None:
            waiting.put(reply)

    # -- commands ---------------------------------------------------------------------------

    def _check_reachable(self) -> None:
        if not self._session.is_connected:
            raise CommandFailed("not_connected")
        if not self.online:
            raise CommandFailed("offline")

    def _check_slot(self, slot: int) -> None:
        capacity = self.capacity
        if slot < 1 or (capacity is not None and slot > capacity):
            raise CommandFailed("slot_out_of_range", f"slot {slot}")

    async def set_code(self, slot: int, code: str) -> None:
        self._check_reachable()
        self._check_slot(slot)
        shortest, longest = self._code_lengths or CODE_LENGTHS
        if not (code.isascii() and code.isdigit() and shortest <= len(code) <= longest):
            raise CommandFailed("invalid_code", f"slot {slot}")
        table = self._table
        if table is not None and any(
            value == code for n, value in table.slots.items() if n != slot
        ):
            raise CommandFailed("duplicate_code", f"slot {slot}")
        await self._write(self.topics.user_code(slot) + "/set", set_payload(code), slot, code)

    async def clear_slot(self, slot: int) -> None:
        self._check_reachable()
        self._check_slot(slot)
        await self._write(self.topics.user_id_status(slot) + "/set", clear_payload(), slot, None)

    async def _write(self, topic: str, payload: Any, slot: int, wanted: str | None) -> None:
        """Publish a value write and wait for the slot's value topics to show ``wanted``."""
        loop = asyncio.get_running_loop()
        timeout = self._timing.command_timeout
        deadline = loop.time() + timeout
        seen = self._updates.get(slot, 0)
        try:
            await self._session.publish(topic, payload, timeout=timeout)
        except NotConnected as exc:
            raise CommandFailed("not_connected", str(exc)) from None
        settle_at: float | None = None
        while True:
            fresh = self._updates.get(slot, 0) > seen
            if fresh and self._shows(slot, wanted):
                return
            if not self.online:
                raise CommandTimedOut("the lock went offline")
            if fresh and settle_at is None:
                settle_at = min(deadline, loop.time() + SETTLE)
            until = deadline if settle_at is None else settle_at
            if loop.time() >= until:
                if settle_at is not None:
                    raise CommandFailed("not_applied", f"slot {slot}")
                raise CommandTimedOut(f"slot {slot}: no read-back within {timeout:g}s")
            self._changed.clear()
            try:
                async with asyncio.timeout_at(until):
                    await self._changed.wait()
            except TimeoutError:
                continue

    def _shows(self, slot: int, wanted: str | None) -> bool:
        """Whether the slot's value topics show the write. A lock that masks its codes shows an
        occupied slot after a set: that is the set, never a different code (re-sending would
        loop forever)."""
        value = self._slot(slot)
        return value == wanted or (wanted is not None and value is Unreadable.OCCUPIED)

    async def _call(self, api: str, args: list[Any]) -> object:
        """One API request to a reachable lock; the reply's ``result``."""
        self._check_reachable()
        return await self._request(api, args)

    async def _request(self, api: str, args: list[Any]) -> object:
        """One API request; the reply's ``result``. CommandFailed when it did not succeed:
        ``offline`` when Z-Wave JS UI's Z-Wave driver is not ready (the driver status is then
        unknown until reported again)."""
        request_id = str(uuid.uuid4())
        timeout = self._timing.command_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            with self._pending.open(request_id) as answer:
                try:
                    await self._session.publish(
                        self.topics.api_request(api),
                        api_request_payload(args, request_id),
                        timeout=timeout,
                    )
                except NotConnected as exc:
                    raise CommandFailed("not_connected", str(exc)) from None
                async with asyncio.timeout_at(deadline):
                    reply = await answer.next()
        except TimeoutError:
            raise CommandTimedOut(f"{api}: no answer within {timeout:g}s") from None
        if not reply.success:
            if NOT_CONNECTED in reply.message:
                self._link.invalidate("driver_status")
                raise CommandFailed("offline", f"{api}: {reply.message}")
            raise CommandFailed("internal", f"{api}: {reply.message}")
        return reply.result

    async def read(self, slots: Collection[int] | None = None) -> SlotTable:
        """Every slot (or just ``slots``) read from the lock through ``sendCommand get``, one
        at a time: each costs the lock battery and radio time."""
        capacity = self._configured_capacity
        if capacity is None:
            count = await self._call("sendCommand", users_count_args(self.topics.node_id))
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise CommandFailed("internal", "getUsersCount: not a positive integer")
            try:
                check_capacity(count, MAX_SLOTS, "getUsersCount")
            except ValueError as exc:
                self._refusals.refuse("users_count", str(exc))
                raise CommandFailed("internal", str(exc)) from None
            self._refusals.accept("users_count")
            self._users_count = capacity = count
        for slot in sorted(slots) if slots is not None else range(1, capacity + 1):
            if not 1 <= slot <= capacity:
                raise CommandFailed("slot_out_of_range", f"slot {slot} of {capacity}")
            result = await self._call("sendCommand", get_args(self.topics.node_id, slot))
            try:
                parse_user_get_result(result, self._code_lengths)
            except ValueError as exc:
                self._refusals.refuse(("userCode", slot), f"get slot {slot}: {exc}")
                raise CommandFailed("internal", f"get slot {slot}: {exc}") from None
            assert isinstance(result, dict)  # checked by the parser
            self._refusals.accept(("userCode", slot))
            self._refusals.accept(("userIdStatus", slot))
            # The same values the value topics carry, so the table is built one way only.
            for prop in ("userIdStatus", "userCode"):
                self._values[(prop, slot)] = result.get(prop, MISSING)
        self._refresh_table()
        assert self._table is not None
        return self._table


def _payload(message: aiomqtt.Message) -> bytes:
    return message.payload


def create_driver(
    device: DeviceSettings, session: Session, timing: CommandTiming
) -> ZwaveJsUiDriver:
    options = device.options
    if not isinstance(options, ZwaveJsUiOptions):
        raise TypeError(f"{device.device_id}: the zwave_js_ui driver needs ZwaveJsUiOptions")
    return ZwaveJsUiDriver(
        device.device_id,
        options.topics(),
        session,
        timing,
        slots=device.slots,
        code_lengths=device.code_lengths,
    )
