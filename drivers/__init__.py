"""Device protocols: one package per protocol, each with payloads, driver and simulator."""
