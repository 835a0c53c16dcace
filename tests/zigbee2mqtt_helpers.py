"""Shared by the ``test_zigbee2mqtt_*`` files: the lock they configure, its topics, and helpers to
read the driver's table, count log lines and play Zigbee2MQTT by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from drivers.zigbee2mqtt.driver import Zigbee2MqttDriver, create_driver
from drivers.zigbee2mqtt.protocol import Topics
from gateway.config import Config, DeviceConfig
from tests.broker import Broker
from tests.conftest import ConfigFactory
from tests.helpers import Probe, Wakes, eventually, running, session_for

PIN = "8642"  # in slot 1 (Zigbee2MQTT user 0) at start
TIMEOUT = 0.3  # command_timeout in these tests
ZB = "zb"
TOPICS = Topics("zigbee2mqtt", ZB)


def zb_config(make_config: ConfigFactory, *, expose_pin: bool = True, **lock: Any) -> Config:
    return make_config(
        timing={"command_timeout": TIMEOUT},
        devices=[{"device_id": ZB, "driver": "zigbee2mqtt", "slots": 10}],
        simulator={
            "latency": "1ms",
            "locks": {ZB: {"initial_codes": {1: PIN}, "expose_pin": expose_pin, **lock}},
        },
    )


def device(config: Config, device_id: str = ZB) -> DeviceConfig:
    return next(d for d in config.devices if d.device_id == device_id)


def logged(out: str, event: str) -> int:
    """How many log lines of ``event`` the JSON log ``out`` holds."""
    return sum(1 for line in out.splitlines() if f'"event": "{event}"' in line)


def value(driver: Zigbee2MqttDriver, slot: int) -> object:
    assert driver.table is not None
    return driver.table.value(slot)


async def read_when_asked(driver: Zigbee2MqttDriver) -> frozenset[int]:
    """Play the lock worker: once the driver asks for slots to be read back (a PIN changed at
    the lock), read them, as the worker's next pass does; the slots asked for."""
    asked: set[int] = set()

    def take() -> bool:
        asked.update(driver.take_read_requests())
        return bool(asked)

    await eventually(take)
    await driver.read(asked)
    return frozenset(asked)


@asynccontextmanager
async def hand_played(
    make_config: ConfigFactory, broker: Broker, probe: Probe
) -> AsyncIterator[Zigbee2MqttDriver]:
    config = zb_config(make_config)
    await probe.subscribe(TOPICS.set, TOPICS.get)
    await probe.publish(TOPICS.bridge_state, {"state": "online"}, retain=True)
    await probe.publish(TOPICS.availability, {"state": "online"}, retain=True)
    session = session_for(broker, "gateway")
    driver = create_driver(device(config), session, config.timing)
    assert isinstance(driver, Zigbee2MqttDriver)
    wakes = Wakes()
    await driver.start(wakes)
    async with running(("test-gateway-mqtt", session.run())):
        await wakes.until(lambda: driver.online)
        yield driver


def users(**entries: dict[str, str]) -> dict[str, Any]:
    """A state message whose ``users`` are ``u<N>=entry``."""
    return {"battery": 70, "users": {key[1:]: entry for key, entry in entries.items()}}


AVAILABLE = {"status": "available"}
