"""The external contract (docs/api.md, docs/configuration.md, docs/native-protocol.md), written
out once for the ``test_contract_*`` files, which pin it by surface.

Every name a user, a script or another program relies on is spelled here exactly as the
contract spells it: the subcommands, the dependencies, the example configuration, the error
types, the key sets of the public objects, the error and warning codes, and the event types
with their fields. The behaviour is real in every test: the gateway, mosquitto and the lock
simulator (or, for the native protocol, a lock written from the contract alone).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from tests.broker import Broker

ROOT = Path(__file__).resolve().parent.parent
EPOCH = "2000-01-01T00:00:00Z"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")

# -- the contract, written out ------------------------------------------------------------------

SUBCOMMANDS = {"run", "check-config", "sim", "demo", "call", "events"}
DEFAULT_CONFIG_FILE = "/etc/lockgate/lockgate.yaml"
RUNTIME_DEPS = {"aiomqtt", "aiosqlite", "structlog", "pyyaml"}

ERROR_TYPES = {
    "invalid_input",
    "unknown_endpoint",
    "payload_too_large",
    "device_not_found",
    "device_not_managed",
    "access_code_not_found",
    "duplicate_access_code",
    "code_constraints_violated",
    "backup_pool_not_supported",
    "backup_pool_cannot_be_disabled",
    "access_code_not_time_bound",
    "no_backup_access_code_available",
    "internal_error",
    "rate_limited",  # beyond section 4 (issue 12): PIN guessing is slowed
}

ACCESS_CODE_KEYS = {
    "access_code_id",
    "device_id",
    "name",
    "code",
    "type",
    "starts_at",
    "ends_at",
    "status",
    "created_at",
    "errors",
    "warnings",
    "is_managed",
    "is_backup",
    "is_backup_access_code_available",
    "pulled_backup_access_code_id",
    "is_external_modification_allowed",
    "slot",
    # Section 11.
    "is_one_time_use",
    "common_code_key",
    "pending_mutations",
}
#: Section 11: what ``pending_mutations`` items may say, and which carry ``from``/``to``.
MUTATION_CODES = {"creating", "updating_code", "updating_time_frame", "deleting"}
MUTATIONS_WITH_CHANGE = {"updating_code", "updating_time_frame"}
ERROR_ITEM_KEYS = {"error_code", "message", "created_at"}
WARNING_ITEM_KEYS = {"warning_code", "message", "created_at"}
DEVICE_KEYS = {
    "device_id",
    "name",
    "driver",
    "is_managed",
    "created_at",
    "errors",
    "warnings",
    "properties",
}
PROPERTY_KEYS = {
    "online",
    "supports_backup_access_code_pool",
    "backup_access_code_pool_enabled",
    "backup_pool_size",
    "backup_codes_available",
    "active_backup_codes",
    "max_active_codes_supported",
    "supported_code_lengths",
    "code_constraints",
    "has_native_entry_events",  # section 11
}

#: Section 7: code -> (on, kind).
PROBLEM_TABLE = {
    "failed_to_set_on_device": ("access_code", "error"),
    "failed_to_remove_from_device": ("access_code", "error"),
    "duplicate_code_on_device": ("access_code", "error"),
    "no_space_for_access_code_on_device": ("access_code", "error"),
    "conflicting_external_modification": ("access_code", "error"),
    "external_modification_in_effect": ("access_code", "warning"),
    "delay_in_setting_on_device": ("access_code", "warning"),
    "delay_in_removing_from_device": ("access_code", "warning"),
    "using_backup_access_code": ("access_code", "warning"),
    "device_disconnected": ("device", "error"),
    "empty_backup_access_code_pool": ("device", "error"),
    "partial_backup_access_code_pool": ("device", "warning"),
    "many_active_backup_codes": ("device", "warning"),
    # Beyond section 7 (issue 7): a lock's report refused as out of bounds.
    "invalid_report_from_device": ("device", "error"),
    # Beyond section 7 (issue 8): a lock whose topics never appeared where configured.
    "device_not_found_on_stack": ("device", "error"),
    # Section 11: no slot left on the lock for another code.
    "max_access_codes_reached": ("device", "warning"),
}

EVENT_TYPES = {
    "access_code.created",
    "access_code.changed",
    "access_code.set_on_device",
    "access_code.removed_from_device",
    "access_code.failed_to_set_on_device",
    "access_code.delay_in_setting_on_device",
    "access_code.failed_to_remove_from_device",
    "access_code.delay_in_removing_from_device",
    "access_code.deleted",
    "access_code.modified_external_to_gateway",
    "access_code.backup_access_code_pulled",
    "device.connected",
    "device.disconnected",
    "device.converted_to_unmanaged",
    "device.converted_to_managed",
    "device.error_added",
    "device.error_cleared",
    "device.warning_added",
    "device.warning_cleared",
    # Section 11.
    "lock.unlocked",
    "lock.locked",
    "lock.access_denied",
    "access_code.unmanaged.created",
    "access_code.unmanaged.removed",
    "access_code.unmanaged.converted_to_managed",
    "access_code.unmanaged.failed_to_convert_to_managed",
}
#: Beyond the contract (issue 13): the wall clock jumped (``seconds``, no device).
GATEWAY_EVENT_TYPES = {"gateway.clock_jumped"}
ENTRY_EVENT_FIELDS = {"access_code_id", "access_code_is_managed", "method", "slot"}
ENTRY_METHODS = {"keycode", "manual", "remote", "automatic", "unknown"}
EVENT_BASE_KEYS = {"event_id", "event_type", "occurred_at", "device_id"}
#: Section 8: the fields an event of that type carries beyond the base keys.
EVENT_EXTRA_FIELDS = {
    "access_code.set_on_device": {"code"},
    "access_code.failed_to_set_on_device": {"errors"},
    "access_code.backup_access_code_pulled": {"backup_access_code_id"},
    "device.error_added": {"error_code"},
    "device.error_cleared": {"error_code"},
    "device.warning_added": {"warning_code"},
    "device.warning_cleared": {"warning_code"},
    "lock.unlocked": ENTRY_EVENT_FIELDS,
    "lock.locked": ENTRY_EVENT_FIELDS,
    "lock.access_denied": ENTRY_EVENT_FIELDS,
}

#: Section 2's example key for key and value for value (three comments shortened to fit a line);
#: only the broker address and the database path are adapted, by ``example_file``.
CONTRACT_EXAMPLE_YAML = """\
hub_id: hub-1                  # [A-Za-z0-9_-]{1,64}; default: the host name, sanitised
mqtt:
  host: 127.0.0.1
  port: 1883
  username: null
  password_file: null          # read once at start; never log it
  tls: {ca_file: null, cert_file: null, key_file: null}   # any set => TLS
  topic_prefix: lockgate       # topics live under {topic_prefix}/{hub_id}
  keepalive: 30
database: /var/lib/lockgate/lockgate.db     # SQLite file; created 0600
timing:
  command_timeout: 10s         # per device command
  max_attempts: 3              # per programming try, then failed_to_*_on_device
  delay_warning_after: 60s     # delay_in_setting_on_device / delay_in_removing_from_device
  program_ahead: 0s            # how long before starts_at a time_bound code is programmed
  min_command_interval: 0s     # spacing between commands to one lock
  resync_interval: 15m         # full read-back of every lock
backup_pool:
  size: 3                      # backup codes kept on each pool-enabled device (1-100)
  many_active_threshold: 2     # pulled, still-active backups on one device
  fill_grace: 30s              # how long a fill may take before partial/empty is raised
devices:
  - device_id: front_door      # [A-Za-z0-9_-]{1,64}
    name: Front door
    driver: native             # native | zigbee2mqtt | zwave_js_ui
    # driver-specific addressing, e.g.
    #   native:       topic: locks/front_door
    #   zigbee2mqtt:  friendly_name: front_door, base_topic: zigbee2mqtt
    #   zwave_js_ui:  node_id: 5, node_name: null, base_topic: zwave, gateway_name: zwave-js-ui,
    #                 topic_style: valueid   # valueid | named (Z-Wave JS UI's two gateway types)
    slots: 30                  # slot count; needed where the lock cannot report it (zigbee2mqtt)
    code_lengths: [4, 8]       # optional: shortest and longest PIN the lock accepts
    backup_pool: {enabled: false, size: 3}   # optional per-device override
"""


def example_file(broker: Broker, tmp_path: Path, extra: str = "") -> Path:
    text = CONTRACT_EXAMPLE_YAML.replace("port: 1883", f"port: {broker.port}")
    text = text.replace("host: 127.0.0.1", f"host: {broker.host}")
    text = text.replace("/var/lib/lockgate/lockgate.db", str(tmp_path / "lockgate.db"))
    path = tmp_path / "lockgate.yaml"
    path.write_text(text + extra)
    return path


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and UUID.fullmatch(value) is not None


def is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


async def first_message(queue: asyncio.Queue[aiomqtt.Message], timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        return await queue.get()
