"""The drivers of this build: the one list of specs, and driver name -> factory.

The configuration (option schemas, ``needs_slots``), the daemon (``create_driver``) and the
simulator (simulated lock classes) all ask :data:`SPECS`: a new driver is one new package that
exports its ``SPEC`` (see ``drivers.base.DriverSpec``) plus one line here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from drivers import native, zigbee2mqtt, zwave_js_ui
from drivers.base import (
    CommandFailed,
    CommandTiming,
    DeviceSettings,
    Driver,
    DriverFactory,
    DriverSpec,
    EntryEvent,
    Session,
    SlotTable,
    WakeCallback,
)
from gateway.logs import get_logger

__all__ = ["FACTORIES", "SPECS", "UnavailableDriver", "can_program", "create_driver"]

log = get_logger("drivers.registry")

#: Every driver of this build, in the order error messages list them.
SPECS: Final[tuple[DriverSpec, ...]] = (native.SPEC, zigbee2mqtt.SPEC, zwave_js_ui.SPEC)

#: Driver name -> factory, from :data:`SPECS`; a build without a driver lacks its entry.
FACTORIES: dict[str, DriverFactory] = {spec.name: spec.create_driver for spec in SPECS}


class UnavailableDriver:
    """A device whose protocol this build cannot speak yet: reported offline, never crashing.

    The configuration may name every driver of the contract; a device on one that is not built
    shows ``device_disconnected`` and keeps its codes queued, instead of stopping the daemon.
    """

    def __init__(self, device: DeviceSettings) -> None:
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

    def take_read_requests(self) -> frozenset[int]:
        return frozenset()

    @property
    def has_entry_events(self) -> bool:
        return False

    def take_entry_events(self) -> list[EntryEvent]:
        return []


def can_program(driver: str) -> bool:
    """Whether this build has a working driver of that name (see UnavailableDriver)."""
    return driver in FACTORIES


def create_driver(device: DeviceSettings, session: Session, timing: CommandTiming) -> Driver:
    factory = FACTORIES.get(device.driver)
    if factory is None:
        return UnavailableDriver(device)
    return factory(device, session, timing)
