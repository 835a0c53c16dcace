"""lockgate: keeps PIN codes and a pool of backup codes on MQTT door locks."""

__version__ = "0.1.0"
