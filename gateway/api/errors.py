"""The API's error types (contract section 4): one exception carries one of them to the reply."""

from __future__ import annotations

from typing import Literal

ErrorType = Literal[
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
    "rate_limited",
    "internal_error",
]


class ApiError(Exception):
    """A request that cannot be served; ``message`` is one sentence naming the field."""

    def __init__(
        self, error_type: ErrorType, message: str, *, pin_device: str | None = None
    ) -> None:
        super().__init__(message)
        self.type: ErrorType = error_type
        self.message = message
        #: The device on which this refusal says a PIN is taken (a PIN test: rate limited).
        self.pin_device = pin_device


def invalid(field: str, problem: str) -> ApiError:
    return ApiError("invalid_input", f"{field}: {problem}")


class RecordedRefusal(ApiError):
    """A refusal that is itself news: what the handler did before raising it (an event saying
    the request failed) is committed, unlike any other :class:`ApiError`. The handler must
    change nothing else before raising it."""
