"""What vulture cannot see being used: names read or called by a library, or by their name.

``vulture`` (run by ``bash .ci/dev test``, set up in ``[tool.vulture]`` of pyproject.toml) reads
this file with the code, and counts a name mentioned here as used. Nothing imports or calls it;
mypy and ruff check it like the rest. Every entry says who uses the name. Methods hypothesis
calls through ``@rule`` and ``@invariant``, and fixtures, are exempt by ``ignore_decorators``.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
import aiosqlite

from bench.common import Latency
from drivers.sim import Faults
from tests import test_pin_lifecycle_machine, test_zigbee2mqtt_real

__all__ = ["used_unseen"]  # vulture counts a name in __all__ as used


def used_unseen(
    latency: Latency,
    faults: Faults,
    properties: Any,  # paho's Properties, whose attributes its untyped __setattr__ makes
    client: aiomqtt.Client,
    conn: aiosqlite.Connection,
    paho_table: Any,  # what stands in paho's table of per-filter callbacks
) -> tuple[object, ...]:
    return (
        properties.MaximumPacketSize,  # paho sends it in CONNECT (gateway/mqtt.py: build_client)
        properties.SessionExpiryInterval,  # likewise
        latency.p50,  # read by name: getattr(latency, stat) in Result.add_latency, pull_latency
        latency.p95,  # likewise
        latency.p99,  # likewise
        faults.silent_next,  # counted down by name: faults.consume("silent_next") in simulators
        faults.apply_silently_next,  # likewise, consume("apply_silently_next")
        faults.ignore_writes_next,  # likewise, consume("ignore_writes_next")
        client.pending_calls_threshold,  # aiomqtt warns past this many pending publishes
        paho_table.iter_match,  # paho, for every message (gateway/mqtt.py: _NoFilteredCallbacks)
        conn.row_factory,  # aiosqlite makes every row a sqlite3.Row (gateway/store/db.py)
        test_pin_lifecycle_machine.PinLifecycle.teardown,  # hypothesis, after each machine run
        test_zigbee2mqtt_real.pytestmark,  # pytest, which marks every test of the module
    )
