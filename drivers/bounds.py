"""The bounds on everything a lock or its stack reports, shared by every driver.

A lock (or whoever publishes on its topics) is not trusted with the gateway's memory, disk or
time: a reported capacity sizes the slot table, the planner's loops and the ``observed_slots``
rows, so a capacity of 10^9 must never get past the driver. Each check raises ``PayloadError``
with a message that starts with the field and says what was wrong, never with the PIN itself:
the message ends up in the log and in the device's ``invalid_report_from_device`` error.
"""

from __future__ import annotations

from typing import Final

# The payload size bound lives with the JSON reader, which applies it to every message.
from drivers.payloads import MAX_PAYLOAD_BYTES, PayloadError, check_payload_size

# The slot and PIN ceilings are the domain's: one for configuration, API and lock reports.
from gateway.domain import MAX_PIN_LENGTH, MAX_SLOTS

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_PIN_LENGTH",
    "MAX_SLOTS",
    "check_capacity",
    "check_code_lengths",
    "check_payload_size",
    "check_pin",
    "check_slot",
    "decimal_key",
    "shown",
    "slot_limit",
]

#: How much of a reported key a message repeats.
_SHOWN: Final = 12


def shown(text: str) -> str:
    """``text`` cut short for a message: a key may be as long as the payload."""
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


def slot_limit(configured: int | None) -> int:
    """The most slots a device may report: its configured ``slots``, else :data:`MAX_SLOTS`."""
    return MAX_SLOTS if configured is None else configured


def check_capacity(capacity: int, limit: int, field: str = "capacity") -> int:
    if capacity > limit:
        raise PayloadError(f"{field}: {capacity} exceeds the limit of {limit} slots")
    return capacity


def check_slot(slot: int, capacity: int, field: str) -> int:
    """A slot number within ``1..capacity``."""
    if not 1 <= slot <= capacity:
        raise PayloadError(f"{field}: slot {slot} is outside 1-{capacity}")
    return slot


def decimal_key(text: str) -> int | None:
    """A key written as a plain decimal (no sign, space or leading zero) as an int, else None.

    Saturates instead of converting thousands of digits (which ``int`` refuses anyway): any
    number too long to be a slot comes back as ``10**12``, out of every range."""
    if not text.isascii() or not text.isdecimal() or (text.startswith("0") and text != "0"):
        return None
    return int(text) if len(text) <= 12 else 10**12


def check_code_lengths(shortest: int, longest: int, field: str = "code_lengths") -> tuple[int, int]:
    if not 1 <= shortest <= longest <= MAX_PIN_LENGTH:
        raise PayloadError(
            f"{field}: [{shortest}, {longest}] is not within 1 <= shortest <= longest"
            f" <= {MAX_PIN_LENGTH}"
        )
    return (shortest, longest)


def check_pin(pin: str, field: str, code_lengths: tuple[int, int] | None = None) -> str:
    """A PIN as a lock may report it: ASCII digits, at most :data:`MAX_PIN_LENGTH` of them and
    within the lock's ``code_lengths`` when known. The message gives its length, never it."""
    if len(pin) > MAX_PIN_LENGTH:
        raise PayloadError(
            f"{field}: a PIN of {len(pin)} characters exceeds the limit of {MAX_PIN_LENGTH}"
        )
    if not (pin.isascii() and pin.isdigit()):
        raise PayloadError(f"{field}: the PIN is not a string of digits")
    if code_lengths is not None and not code_lengths[0] <= len(pin) <= code_lengths[1]:
        raise PayloadError(
            f"{field}: a PIN of {len(pin)} digits is outside the lock's code lengths"
            f" {code_lengths[0]}-{code_lengths[1]}"
        )
    return pin
