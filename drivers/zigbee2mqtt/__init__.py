"""The zigbee2mqtt driver: Zigbee locks behind Zigbee2MQTT."""
