"""The MQTT request/response API: the router and one module per resource."""
