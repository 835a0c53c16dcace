"""The zigbee2mqtt driver: Zigbee locks behind Zigbee2MQTT."""

from drivers.base import DriverSpec
from drivers.zigbee2mqtt.config import parse_options
from drivers.zigbee2mqtt.driver import create_driver

__all__ = ["SPEC"]

SPEC = DriverSpec(
    name="zigbee2mqtt",
    parse_options=parse_options,
    needs_slots=True,  # Zigbee2MQTT does not publish a lock's user count
    create_driver=create_driver,
    simulator="drivers.zigbee2mqtt.simulator:SimulatedZigbee2MqttLock",
)
