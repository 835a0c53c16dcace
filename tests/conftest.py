"""Shared fixtures: a real mosquitto per test and site configurations pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, parse_config
from gateway.logs import configure_logging
from tests.broker import Broker
from tests.helpers import Probe

configure_logging("warning", json=True)

ConfigFactory = Callable[..., Config]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh broker per test (~20 ms): no retained message leaks from one test to the next."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    instance = Broker(workdir)
    instance.start()
    yield instance
    instance.kill()  # nothing to keep (no persistence), and SIGTERM costs mosquitto ~0.1 s


def site_dict(broker: Broker, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A site description as it would be written in YAML: three native locks by default."""
    data: dict[str, Any] = {
        "hub_id": "test-hub",
        "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5},
        "database": str(tmp_path / "lockgate.db"),
        "timing": {"command_timeout": "2s", "delay_warning_after": "5s"},
        "devices": [
            {"device_id": "front_door", "name": "Front door", "driver": "native"},
            {"device_id": "back_door", "name": "Back door", "driver": "native"},
        ],
        "simulator": {"latency": "1ms"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def codes_on_lock(codes: Mapping[Any, str], device_id: str = "front_door") -> dict[str, Any]:
    """``simulator`` settings for a lock that starts with ``codes`` (slot: PIN) in its slots."""
    return {"locks": {device_id: {"initial_codes": codes}}}


@pytest.fixture
async def probe(broker: Broker) -> AsyncIterator[Probe]:
    """A plain MQTT client on the test's broker, recording what it subscribes to."""
    async with Probe(broker) as instance:
        yield instance


@pytest.fixture
def make_config(broker: Broker, tmp_path: Path) -> ConfigFactory:
    def make(**overrides: Any) -> Config:
        return parse_config(site_dict(broker, tmp_path, **overrides), base_dir=tmp_path)

    return make
