"""``devices/*`` endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.api.errors import ApiError
from gateway.api.params import ABSENT, Absent, boolean, device_id, param
from gateway.api.router import Endpoint
from gateway.model import Device, Json
from gateway.store import Tx
from gateway.store import devices as store


def require_device(tx: Tx, wanted: str) -> Device:
    device = store.get_device(tx, wanted)
    if device is None:
        raise ApiError("device_not_found", f"device_id: no device '{wanted}' on this gateway")
    return device


@dataclass(frozen=True, slots=True, kw_only=True)
class NoParams:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRef:
    device_id: str = param(device_id, required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceUpdate:
    device_id: str = param(device_id, required=True)
    is_managed: bool | Absent = param(boolean)
    backup_access_code_pool_enabled: bool | None = param(boolean, default=None)


def list_devices(tx: Tx, params: NoParams) -> Json:
    return {"devices": [d.to_json() for d in store.list_devices(tx)]}


def get_device(tx: Tx, params: DeviceRef) -> Json:
    return {"device": (require_device(tx, params.device_id)).to_json()}


def update_device(tx: Tx, params: DeviceUpdate) -> Json:
    device = require_device(tx, params.device_id)
    enable = params.backup_access_code_pool_enabled
    if enable is False and device.pool_enabled:
        raise ApiError(
            "backup_pool_cannot_be_disabled",
            "backup_access_code_pool_enabled: the backup pool cannot be disabled once enabled",
        )
    if enable is True and not device.supports_pool:
        raise ApiError(
            "backup_pool_not_supported",
            f"backup_access_code_pool_enabled: device '{device.device_id}' cannot carry a "
            "backup pool (it needs at least 2 slots)",
        )
    if params.is_managed is not ABSENT:
        store.set_managed(tx, device.device_id, params.is_managed)
    if enable is True:
        store.enable_pool(tx, device.device_id)
    return {"device": (require_device(tx, device.device_id)).to_json()}


ENDPOINTS = (
    Endpoint.typed("devices/list", NoParams, list_devices),
    Endpoint.typed("devices/get", DeviceRef, get_device),
    Endpoint.typed("devices/update", DeviceUpdate, update_device, writes=True),
)
