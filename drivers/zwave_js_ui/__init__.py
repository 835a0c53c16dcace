"""The zwave_js_ui driver: Z-Wave locks behind Z-Wave JS UI's MQTT gateway."""

from drivers.base import DriverSpec
from drivers.zwave_js_ui.config import parse_options
from drivers.zwave_js_ui.driver import create_driver

__all__ = ["SPEC"]

SPEC = DriverSpec(
    name="zwave_js_ui",
    parse_options=parse_options,
    needs_slots=False,
    create_driver=create_driver,
    simulator="drivers.zwave_js_ui.simulator:SimulatedZwaveJsUiLock",
)
