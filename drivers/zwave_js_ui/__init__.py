"""The zwave_js_ui driver: Z-Wave locks behind Z-Wave JS UI's MQTT gateway."""
