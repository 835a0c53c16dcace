"""Shared by the ``test_zwave_js_ui_*`` files: the simulated Z-Wave lock they configure (and its
registration), and helpers to find its device and read the driver's table."""

from __future__ import annotations

from typing import Any

import drivers.zwave_js_ui.simulator  # registers the simulated lock
from drivers.base import SlotValue
from drivers.zwave_js_ui.driver import ZwaveJsUiDriver
from gateway.config import Config, DeviceConfig
from tests.conftest import ConfigFactory

PIN = "8642"  # in slot 1 of the simulated lock at start
TIMEOUT = 0.5  # command_timeout in the driver tests
LATENCY = 0.05  # the simulated lock's "read-back" delay

assert drivers.zwave_js_ui.simulator.SimulatedZwaveJsUiLock.driver == "zwave_js_ui"


def zw_config(
    make_config: ConfigFactory,
    *,
    slots: int | None = 30,
    style: str = "valueid",
    latency: float = LATENCY,
    **options: Any,
) -> Config:
    device: dict[str, Any] = {
        "device_id": "zw",
        "name": "Z-Wave door",
        "driver": "zwave_js_ui",
        "node_id": 5,
        "topic_style": style,
        **options,
    }
    if slots is not None:
        device["slots"] = slots
    return make_config(
        devices=[device],
        timing={"command_timeout": TIMEOUT},
        simulator={
            "latency": latency,
            "locks": {"zw": {"initial_codes": {1: PIN}}},
        },
    )


def device_of(config: Config) -> DeviceConfig:
    return next(d for d in config.devices if d.device_id == "zw")


def value(driver: ZwaveJsUiDriver, slot: int) -> SlotValue:
    assert driver.table is not None
    return driver.table.value(slot)
