"""plan_reload (gateway.reload): what a new configuration changes, decided without I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, parse_config
from gateway.reload import ReloadRefused, plan_reload


def config(**overrides: Any) -> Config:
    data: dict[str, Any] = {
        "hub_id": "hub-1",
        "database": "/tmp/x.db",
        "devices": [
            {"device_id": "front", "name": "Front", "driver": "native"},
            {"device_id": "back", "name": "Back", "driver": "native", "slots": 8},
        ],
    }
    data.update(overrides)
    return parse_config(data, base_dir=Path("/"))


def test_nothing_changed_is_an_empty_plan() -> None:
    plan = plan_reload(config(), config())
    assert not plan.devices_changed
    assert plan.broker_changed is False


def test_devices_added_removed_and_readdressed() -> None:
    wanted = config(
        devices=[
            {"device_id": "back", "name": "Back (renamed)", "driver": "native", "slots": 10},
            {"device_id": "side", "name": "Side", "driver": "native"},
        ]
    )
    plan = plan_reload(config(), wanted)
    assert [d.device_id for d in plan.added] == ["side"]
    assert plan.removed == ("front",)
    assert [d.device_id for d in plan.replaced] == ["back"]  # its slot count changed


def test_a_new_name_or_pool_setting_needs_no_new_worker() -> None:
    wanted = config(
        devices=[
            {
                "device_id": "front",
                "name": "Front door",
                "driver": "native",
                "backup_pool": {"enabled": True},
            },
            {"device_id": "back", "name": "Back", "driver": "native", "slots": 8},
        ],
        timing={"max_attempts": 7},
    )
    assert not plan_reload(config(), wanted).devices_changed


def test_a_new_address_needs_a_new_worker() -> None:
    wanted = config(
        devices=[
            {"device_id": "front", "name": "Front", "driver": "native", "topic": "elsewhere/front"},
            {"device_id": "back", "name": "Back", "driver": "native", "slots": 8},
        ]
    )
    assert [d.device_id for d in plan_reload(config(), wanted).replaced] == ["front"]


def test_a_broker_change_reconnects() -> None:
    assert plan_reload(config(), config(mqtt={"keepalive": 5})).broker_changed


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"hub_id": "hub-2"}, "hub_id"),
        ({"mqtt": {"topic_prefix": "other"}}, "mqtt.topic_prefix"),
        ({"database": "/tmp/y.db"}, "database"),
    ],
)
def test_what_names_the_gateway_needs_a_restart(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ReloadRefused) as refused:
        plan_reload(config(), config(**overrides))
    (problem,) = refused.value.problems
    assert problem.startswith(f"{key}: cannot change on reload (restart lockgate")
