"""Driver name (as in the YAML) -> the function that builds that driver for one device."""

from __future__ import annotations

from drivers.base import Driver
from drivers.native.driver import create_driver as create_native
from gateway.config import DeviceConfig, Timing
from gateway.mqtt import MqttSession

FACTORIES = {
    "native": create_native,
}


def create_driver(device: DeviceConfig, session: MqttSession, timing: Timing) -> Driver:
    try:
        factory = FACTORIES[device.driver]
    except KeyError:
        raise NotImplementedError(
            f"driver '{device.driver}' of device '{device.device_id}' is not available yet"
        ) from None
    return factory(device, session, timing)
