"""The native driver: locks that speak lockgate's own MQTT protocol."""
