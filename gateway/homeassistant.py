"""Home Assistant MQTT discovery: each managed lock a device in Home Assistant.

The discovery configs are retained under ``<discovery_prefix>/<component>/lockgate_<hub_id>/
<device_id>_<entity>/config``; the entities read their state from the retained device objects
the gateway already publishes (``P/devices/<device_id>``), except "last unlocked by", which has
a small retained state topic of its own (``P/homeassistant/<device_id>/last_unlocked_by``).

What is on the broker is learnt from the broker itself: the publisher subscribes to its own
discovery and state topics, so after every (re)connect it knows which configs an earlier run (or
an earlier configuration: a device since removed, unmanaged, or discovery switched off) left
behind, and withdraws them with an empty retained message. Only changed configs are sent again,
because Home Assistant rebuilds an entity on every config it receives. No payload carries a PIN.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Final

import aiomqtt

from gateway import __version__
from gateway.config import Config
from gateway.domain import EventType, ProblemCode
from gateway.logs import get_logger
from gateway.model import Device, Json
from gateway.mqtt import MqttSession, encode
from gateway.pump import PUBLISH_BATCH, Pump
from gateway.store import Store, Tx
from gateway.store.codes import get_code
from gateway.store.devices import get_devices, list_devices
from gateway.store.events import latest_event

log = get_logger("gateway.homeassistant")

#: How long a full sync waits for the broker to hand back what it retains under our topics.
SYNC_TIMEOUT: Final = 10.0
#: Home Assistant refuses states longer than this.
MAX_STATE_LENGTH: Final = 255
#: The device problems the pool's health sensor is on for.
POOL_PROBLEMS: Final = (
    ProblemCode.EMPTY_BACKUP_ACCESS_CODE_POOL,
    ProblemCode.PARTIAL_BACKUP_ACCESS_CODE_POOL,
    ProblemCode.MANY_ACTIVE_BACKUP_CODES,
)
_LAST_UNLOCKED_BY: Final = "last_unlocked_by"
#: (component, object) of every entity a lock may have, in the order they are published.
ENTITIES: Final = (
    ("sensor", "backup_codes"),
    ("binary_sensor", "backup_pool_problem"),
    ("binary_sensor", "offline"),
    ("sensor", _LAST_UNLOCKED_BY),
)


# -- what Home Assistant is told (pure) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Naming:
    """Where one hub's discovery lives."""

    discovery_prefix: str
    prefix: str  # the gateway's P
    hub_id: str

    @property
    def node(self) -> str:
        return f"lockgate_{self.hub_id}"

    @property
    def config_filter(self) -> str:
        return f"{self.discovery_prefix}/+/{self.node}/+/config"

    @property
    def state_filter(self) -> str:
        return f"{self.prefix}/homeassistant/+/{_LAST_UNLOCKED_BY}"

    @property
    def sync_topic(self) -> str:
        return f"{self.prefix}/homeassistant/sync"

    def config_topic(self, component: str, device_id: str, entity: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node}/{device_id}_{entity}/config"

    def state_topic(self, device_id: str) -> str:
        return f"{self.prefix}/homeassistant/{device_id}/{_LAST_UNLOCKED_BY}"

    def device_topics(self, device_id: str) -> list[str]:
        """Every topic a lock's entities may have used, whichever it has now."""
        configs = [self.config_topic(c, device_id, e) for c, e in ENTITIES]
        return [*configs, self.state_topic(device_id)]

    def unique_id(self, device_id: str, entity: str | None = None) -> str:
        # "." is in neither a hub id nor a device id: no two (hub, device) pairs share one.
        parts = ["lockgate", self.hub_id, device_id] + ([entity] if entity else [])
        return ".".join(parts)


#: The retained status: the gateway itself is up.
_STATUS_TEMPLATE: Final = "{{ value_json.state }}"
#: The lock's own reachability, from its device object.
_ONLINE_TEMPLATE: Final = "{{ 'online' if value_json.properties.online else 'offline' }}"


def _pool_problem_template() -> str:
    codes = ", ".join(f"'{code.value}'" for code in POOL_PROBLEMS)
    return (
        "{{ 'ON' if ((value_json.errors | map(attribute='error_code') | list)"
        " + (value_json.warnings | map(attribute='warning_code') | list))"
        f" | select('in', [{codes}]) | list | length > 0 else 'OFF' }}}}"
    )


def discovery_configs(device: Device, naming: Naming) -> dict[str, Json]:
    """Config topic -> payload for each entity ``device`` has (none unless it is managed)."""
    if not device.is_managed:
        return {}
    device_topic = f"{naming.prefix}/devices/{device.device_id}"
    gateway_up = {
        "topic": f"{naming.prefix}/status",
        "value_template": _STATUS_TEMPLATE,
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    lock_up = {
        "topic": device_topic,
        "value_template": _ONLINE_TEMPLATE,
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    common: Json = {
        "device": {
            "identifiers": [naming.unique_id(device.device_id)],
            "name": device.name,
            "manufacturer": "lockgate",
            "model": device.driver,
        },
        "origin": {"name": "lockgate", "sw_version": __version__},
    }
    both: Json = {"availability": [gateway_up, lock_up], "availability_mode": "all"}
    entities: dict[str, Json] = {}
    if device.pool_enabled:
        entities["backup_codes"] = {
            "name": "Backup codes available",
            "state_topic": device_topic,
            "value_template": "{{ value_json.properties.backup_codes_available }}",
            "state_class": "measurement",
            "icon": "mdi:key-chain-variant",
            **both,
        }
        entities["backup_pool_problem"] = {
            "name": "Backup code pool",
            "device_class": "problem",
            "entity_category": "diagnostic",
            "state_topic": device_topic,
            "value_template": _pool_problem_template(),
            "payload_on": "ON",
            "payload_off": "OFF",
            **both,
        }
    # Only the gateway's status: it must show "on" (a problem) while the lock is offline.
    entities["offline"] = {
        "name": "Offline",
        "device_class": "problem",
        "entity_category": "diagnostic",
        "state_topic": device_topic,
        "value_template": "{{ 'OFF' if value_json.properties.online else 'ON' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "availability": [gateway_up],
    }
    if device.has_entry_events:
        state_topic = naming.state_topic(device.device_id)
        entities[_LAST_UNLOCKED_BY] = {
            "name": "Last unlocked by",
            "icon": "mdi:account-key",
            "state_topic": state_topic,
            "value_template": "{{ value_json.unlocked_by }}",
            "json_attributes_topic": state_topic,
            **both,
        }
    components = {entity: component for component, entity in ENTITIES}
    return {
        naming.config_topic(components[entity], device.device_id, entity): {
            **payload,
            "unique_id": naming.unique_id(device.device_id, entity),
            **common,
        }
        for entity, payload in entities.items()
    }


_METHOD_LABELS: Final = {
    "manual": "Manual",
    "remote": "Remote",
    "automatic": "Automatic",
}


def unlock_state(tx: Tx, event: Json) -> Json:
    """The "last unlocked by" state of a stored ``lock.unlocked`` event body.

    The label is the managed code's name; for a pulled backup code, the name of the code it
    stands in for (the guest who typed it), since "Backup 7f3a" tells a manager nothing.
    """
    code_id = event.get("access_code_id")
    method = event.get("method") or "unknown"
    name: str | None = None
    via_backup = False
    if isinstance(code_id, str):
        code = get_code(tx, code_id)
        if code is None:
            label = "Deleted code"
        else:
            name = code.name
            original = get_code(tx, code.pulled_for) if code.pulled_for else None
            if original is not None:
                via_backup = True
                name = original.name or name
            label = name or "Unnamed code"
    elif method == "keycode":
        label = "Unmanaged code"
    else:
        label = _METHOD_LABELS.get(method, "Unknown")
    return {
        "unlocked_by": label[:MAX_STATE_LENGTH],
        "access_code_id": code_id,
        "access_code_name": name,
        "via_backup_access_code": via_backup,
        "method": method,
        "slot": event.get("slot"),
        "occurred_at": event.get("occurred_at"),
        "event_id": event.get("event_id"),
    }


# -- the publisher -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Wanted:
    """What some locks should have on the broker, read in one snapshot."""

    configs: dict[str, bytes]  # discovery topic -> config
    states: dict[str, bytes]  # state topic -> payload, only where a new one is due
    state_topics: set[str]  # the state topics of every lock with a "last unlocked by" entity
    never_unlocked: set[str]  # locks looked at whose history holds no lock.unlocked


class HomeAssistantPublisher(Pump):
    """Keeps the broker's discovery configs and states equal to what the database says.

    Fed by the store's commit notifications (devices touched, ``lock.unlocked`` events) and by
    every (re)connect, after which it compares against everything the broker retains for it.
    """

    def __init__(self, store: Store, session: MqttSession, config: Config) -> None:
        super().__init__(session)
        self._store = store
        self._enabled = config.homeassistant.enabled
        self.naming = Naming(config.homeassistant.discovery_prefix, config.prefix, config.hub_id)
        #: What the broker retains under our discovery and state topics, as last heard.
        self._retained: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._unlocked: set[str] = set()
        self._never_unlocked: set[str] = set()
        self._all = True
        self._token = ""
        self._synced = asyncio.Event()

    async def subscribe(self) -> None:
        """Listen to our own topics: a disabled gateway too, to withdraw what it left there."""
        naming = self.naming
        await self._session.subscribe(naming.config_filter, self._heard)
        await self._session.subscribe(naming.state_filter, self._heard)
        await self._session.subscribe(naming.sync_topic, self._sync_heard)

    def _heard(self, message: aiomqtt.Message) -> None:
        self._note(message.topic.value, _bytes(message.payload))

    def _sync_heard(self, message: aiomqtt.Message) -> None:
        if _bytes(message.payload).decode(errors="replace") == self._token:
            self._synced.set()

    def notify(self, tx: Tx) -> None:
        """Store commit listener."""
        if not self._enabled:
            return
        unlocked = {
            e.device_id
            for e in tx.events
            if e.event_type is EventType.LOCK_UNLOCKED and e.device_id is not None
        }
        if tx.devices_touched or unlocked:
            self._dirty |= tx.devices_touched | unlocked
            self._unlocked |= unlocked
            self.kick()

    def republish_all(self) -> None:
        """After a (re)connect: the broker may have lost or kept anything; look at all of it."""
        self._retained.clear()  # what it still holds arrives again with the subscriptions
        self._all = True
        self.kick()

    async def reconfigure(self, config: Config) -> None:
        """A reloaded configuration: discovery switched on or off, or moved to another prefix.

        The old prefix stays subscribed, so the next full sync withdraws what is left there.
        (The gateway's own prefix and hub id are the session's: they do not change here.)"""
        naming = Naming(config.homeassistant.discovery_prefix, config.prefix, config.hub_id)
        if naming.config_filter != self.naming.config_filter:
            await self._session.subscribe(naming.config_filter, self._heard)
        self.naming = naming
        self._enabled = config.homeassistant.enabled
        self._all = True
        self.kick()

    async def catch_up(self) -> None:
        everything, self._all = self._all, False
        dirty, self._dirty = self._dirty, set()
        unlocked, self._unlocked = self._unlocked, set()
        try:
            await self._sync(everything, dirty, unlocked)
        except BaseException:
            self._all = self._all or everything
            self._dirty |= dirty
            self._unlocked |= unlocked
            raise

    async def _sync(self, everything: bool, dirty: set[str], unlocked: set[str]) -> None:
        if everything:
            await self._broker_view()
        elif not dirty:
            return
        wanted = await self._wanted(None if everything else dirty, unlocked, everything)
        # The topics that may have to be withdrawn: all of ours after a reconnect, else those
        # of the locks that changed.
        if everything:
            scope = set(self._retained)
        else:
            scope = {t for device_id in dirty for t in self.naming.device_topics(device_id)}
        keep = set(wanted.configs) | wanted.state_topics
        messages = [
            (topic, payload)
            for topic, payload in {**wanted.configs, **wanted.states}.items()
            if self._retained.get(topic) != payload
        ]
        messages += [(t, b"") for t in sorted(scope - keep) if t in self._retained]
        for start in range(0, len(messages), PUBLISH_BATCH):
            batch = messages[start : start + PUBLISH_BATCH]
            await asyncio.gather(
                *(self._session.publish(t, p, qos=1, retain=True) for t, p in batch)
            )
            for topic, payload in batch:
                self._note(topic, payload)
        if messages:
            log.debug("homeassistant.published", messages=len(messages))

    def _note(self, topic: str, payload: bytes) -> None:
        if payload:
            self._retained[topic] = payload
        else:
            self._retained.pop(topic, None)

    async def _broker_view(self) -> None:
        """Wait until the broker has handed over what it retains under our topics.

        The broker sends a subscription's retained messages before anything published after
        it on the same connection, so once our own marker comes back, they are all in."""
        self._token = uuid.uuid4().hex
        self._synced.clear()
        await self._session.publish(self.naming.sync_topic, self._token, qos=1)
        async with asyncio.timeout(SYNC_TIMEOUT):
            await self._synced.wait()

    async def _wanted(
        self, device_ids: set[str] | None, unlocked: set[str], everything: bool
    ) -> _Wanted:
        """``device_ids`` None: every lock. States are looked up only where one may be due:
        after a reconnect, a new ``lock.unlocked``, or where none is retained (a lock whose
        history has none is remembered, so its every change does not search its events)."""
        if not self._enabled:
            return _Wanted({}, {}, set(), set())
        naming = self.naming
        states = f"{naming.prefix}/homeassistant/"
        known = {
            topic: _event_id(payload)
            for topic, payload in self._retained.items()
            if topic.startswith(states)
        }
        never = set() if everything else self._never_unlocked - unlocked

        def load(tx: Tx) -> _Wanted:
            devices = list_devices(tx) if device_ids is None else get_devices(tx, list(device_ids))
            wanted = _Wanted({}, {}, set(), set())
            for device in devices:
                found = discovery_configs(device, naming)
                wanted.configs.update((t, encode(p)) for t, p in found.items())
                if naming.config_topic("sensor", device.device_id, _LAST_UNLOCKED_BY) not in found:
                    continue
                topic = naming.state_topic(device.device_id)
                wanted.state_topics.add(topic)
                due = everything or device.device_id in unlocked or topic not in known
                if not due or device.device_id in never:
                    continue
                event = latest_event(tx, device.device_id, EventType.LOCK_UNLOCKED)
                if event is None:
                    wanted.never_unlocked.add(device.device_id)
                # One already retained for the same event stays: it was named while its code
                # still existed (a one-time code is deleted right after it is used).
                elif known.get(topic) != event.get("event_id"):
                    wanted.states[topic] = encode(unlock_state(tx, event))
            return wanted

        wanted = await self._store.read(load)
        if everything:
            self._never_unlocked = wanted.never_unlocked
        else:
            self._never_unlocked = (self._never_unlocked - unlocked) | wanted.never_unlocked
        return wanted


def _bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def _event_id(payload: bytes) -> str | None:
    """The event a retained state payload names (None for a discovery config)."""
    try:
        found = json.loads(payload)
    except ValueError:
        return None
    value = found.get("event_id") if isinstance(found, dict) else None
    return value if isinstance(value, str) else None
