"""Driver name (as in the YAML) -> the function that builds that driver for one device."""

from __future__ import annotations

from collections.abc import Callable, Collection

from drivers.base import CommandFailed, Driver, SlotTable, WakeCallback
from drivers.native.driver import create_driver as create_native
from drivers.zigbee2mqtt.driver import create_driver as create_zigbee2mqtt
from drivers.zwave_js_ui.driver import create_driver as create_zwave_js_ui
from gateway.config import DeviceConfig, Timing
from gateway.logs import get_logger
from gateway.mqtt import MqttSession

log = get_logger("drivers.registry")

Factory = Callable[[DeviceConfig, MqttSession, Timing], Driver]

FACTORIES: dict[str, Factory] = {
    "native": create_native,
    "zigbee2mqtt": create_zigbee2mqtt,
    "zwave_js_ui": create_zwave_js_ui,
}


class UnavailableDriver:
    """A device whose protocol this build cannot speak yet: reported offline, never crashing.

    The configuration may name every driver of the contract; a device on one that is not built
    shows ``device_disconnected`` and keeps its codes queued, instead of stopping the daemon.
    """

    def __init__(self, device: DeviceConfig) -> None:
        self.device_id = device.device_id
        self.driver = device.driver

    @property
    def online(self) -> bool:
        return False

    @property
    def table(self) -> SlotTable | None:
        return None

    @property
    def refused_report(self) -> str | None:
        return None

    @property
    def not_found(self) -> str | None:
        return None

    async def start(self, wake: WakeCallback) -> None:
        log.error("driver.unavailable", device_id=self.device_id, driver=self.driver)

    async def set_code(self, slot: int, code: str) -> None:
        raise CommandFailed("offline", f"driver {self.driver} is not available")

    async def clear_slot(self, slot: int) -> None:
        raise CommandFailed("offline", f"driver {self.driver} is not available")

    async def read(self, slots: Collection[int] | None = None) -> SlotTable:
        raise CommandFailed("offline", f"driver {self.driver} is not available")


def can_program(driver: str) -> bool:
    """Whether this build has a working driver of that name (see UnavailableDriver)."""
    return driver in FACTORIES


def create_driver(device: DeviceConfig, session: MqttSession, timing: Timing) -> Driver:
    factory = FACTORIES.get(device.driver)
    if factory is None:
        return UnavailableDriver(device)
    return factory(device, session, timing)
