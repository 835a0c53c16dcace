"""The tests use the same private broker as ``lockgate demo``."""

from gateway.broker import Broker, free_port, mosquitto_binary

__all__ = ["Broker", "free_port", "mosquitto_binary"]
