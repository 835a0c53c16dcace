"""The native driver: locks that speak lockgate's own MQTT protocol."""

from drivers.base import DriverSpec
from drivers.native.config import parse_options
from drivers.native.driver import create_driver

__all__ = ["SPEC"]

SPEC = DriverSpec(
    name="native",
    parse_options=parse_options,
    needs_slots=False,
    create_driver=create_driver,
    simulator="drivers.native.simulator:SimulatedNativeLock",
)
