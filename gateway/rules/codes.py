"""PIN code rules: what a code may be, and how the gateway picks one (contract sections 5, 6, 9).

Pure functions over strings, so the API layer, the backup pool and the tests share one
definition of a valid, free and guessable PIN. Nothing here logs or touches a lock.
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
from collections.abc import Collection
from functools import lru_cache
from typing import Literal

from gateway.domain import DEFAULT_CODE_LENGTHS

__all__ = [
    "DEFAULT_CODE_LENGTHS",
    "CodeRuleKind",
    "CodeRuleViolation",
    "check_code",
    "generate_code",
    "is_trivial",
    "mask",
    "shared_code_lengths",
]

#: Generated PINs are typed by guests on a keypad: short, but not shorter than a bank card PIN.
_PREFERRED_MIN_LENGTH = 4

#: Random draws per length before switching to a scan; a draw fails only when most PINs of that
#: length are blocked, so this is reached only on crowded short lengths.
_RANDOM_DRAWS = 1000

#: Candidates examined by the fallback scans of one call, across all lengths, so a request
#: always ends promptly even on a lock whose every PIN is taken.
_SCAN_BUDGET = 10**6

_DIGITS = frozenset("0123456789")

CodeRuleKind = Literal["invalid_input", "code_constraints_violated", "duplicate_access_code"]


class CodeRuleViolation(ValueError):
    """A refused PIN; ``kind`` is the API error type and ``message`` is safe to show and log.

    Kept apart from the API's errors so the rules stay importable without the API layer.
    """

    def __init__(self, kind: CodeRuleKind, field: str, message: str) -> None:
        # All three in args so the exception pickles and reprs with everything it carries.
        super().__init__(kind, field, message)
        self.kind: CodeRuleKind = kind
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


def _bounds(code_lengths: tuple[int, int] | None) -> tuple[int, int]:
    """Resolve a device's lengths; a bad pair is a bug upstream, not a person's mistake."""
    shortest, longest = DEFAULT_CODE_LENGTHS if code_lengths is None else code_lengths
    if not 1 <= shortest <= longest:
        raise ValueError(f"code_lengths must satisfy 1 <= shortest <= longest, got {code_lengths}")
    return shortest, longest


def _describe(shortest: int, longest: int) -> str:
    if shortest == longest:
        return f"exactly {shortest} digit{'s' if shortest != 1 else ''}"
    return f"{shortest} to {longest} digits"


def _is_digits(code: str) -> bool:
    # str.isdigit() would accept other scripts' digits ("١٢٣٤") that no keypad can type.
    return bool(code) and _DIGITS.issuperset(code)


def check_code(
    code: str,
    *,
    code_lengths: tuple[int, int] | None,
    taken: Collection[str],
    field: str = "code",
) -> None:
    """Refuse a PIN a person chose, in the order they can fix it: form, length, then clash.

    Trivial PINs pass on purpose: a host may want 1234 for a shed; only generation avoids them.
    ``taken`` holds the PINs of the device's other managed codes and those seen on the lock.
    """
    if not code:
        raise CodeRuleViolation("invalid_input", field, f"{field} must not be empty.")
    if not _is_digits(code):
        raise CodeRuleViolation(
            "invalid_input", field, f"{field} must contain only the digits 0-9."
        )
    shortest, longest = _bounds(code_lengths)
    if not shortest <= len(code) <= longest:
        raise CodeRuleViolation(
            "code_constraints_violated",
            field,
            f"{field} must be {_describe(shortest, longest)} long on this device.",
        )
    if code in taken:
        raise CodeRuleViolation(
            "duplicate_access_code",
            field,
            f"{field} is already in use on this device; choose a different PIN.",
        )


def is_trivial(code: str) -> bool:
    """Whether a PIN is among the first a thief would try, so generation never hands one out.

    Trivial are: one digit repeated (1111, and any single digit); runs stepping by +1 or -1
    with wrap-around, i.e. consecutive mod 10 (1234, 9876, 890123, 2109, and any two-digit
    run such as 90); and two digits alternating over at least four digits (1212, 12121,
    909090). Anything that is not a string of ASCII digits is not trivial (it is not a PIN).
    """
    if not _is_digits(code):
        return False
    digits = [ord(c) - ord("0") for c in code]
    steps = {(b - a) % 10 for a, b in itertools.pairwise(digits)}
    if len(steps) <= 1 and steps <= {0, 1, 9}:
        return True
    return len(digits) >= 4 and all(digits[i] == digits[i - 2] for i in range(2, len(digits)))


@lru_cache(maxsize=32)
def _trivial_codes(length: int) -> frozenset[str]:
    """Every trivial PIN of one length (at most 120), to tell how many PINs remain free."""
    codes: set[str] = set()
    for a in range(10):
        codes.add(str(a) * length)
        codes.add("".join(str((a + i) % 10) for i in range(length)))
        codes.add("".join(str((a - i) % 10) for i in range(length)))
        if length >= 4:
            for b in range(10):
                codes.add("".join(str(b if i % 2 else a) for i in range(length)))
    return frozenset(codes)


def _default_length(shortest: int, longest: int) -> int:
    """The shortest allowed length of at least 4, else the longest the lock allows."""
    return min(max(shortest, _PREFERRED_MIN_LENGTH), longest)


def _coprime_step(seed: int, space: int) -> int:
    """A stride that visits every residue mod ``space``; searched forward, so any rng ends."""
    step = seed % space
    while math.gcd(step, space) != 1:  # gcd(0, space) == space: a zero stride is skipped too
        step = (step + 1) % space
    return step


def _pick(
    length: int, blocked: frozenset[str], rng: random.Random, budget: int
) -> tuple[str | None, int]:
    """A free PIN of ``length`` (or None) and the scan budget left.

    Random draws first, which is uniform and almost always enough; then a scan of the whole
    length from a random start with a random stride, which finds the last free PIN without
    a predictable order.
    """
    space = 10**length
    if len(blocked) >= space:
        return None, budget
    for _ in range(_RANDOM_DRAWS):
        candidate = f"{rng.randrange(space):0{length}d}"
        if candidate not in blocked:
            return candidate, budget
    start = rng.randrange(space)
    step = _coprime_step(rng.randrange(space), space)
    scanned = min(space, budget)
    for i in range(scanned):
        candidate = f"{(start + i * step) % space:0{length}d}"
        if candidate not in blocked:
            return candidate, budget - i - 1
    return None, budget - scanned


def generate_code(
    *,
    code_lengths: tuple[int, int] | None,
    taken: Collection[str],
    preferred_length: int | None = None,
    rng: random.Random | None = None,
) -> str:
    """A fresh random PIN the lock accepts, that no other code holds and nobody would guess.

    Without ``preferred_length`` the default length (shortest allowed of at least 4) is tried
    first, then longer lengths, then shorter ones, so a crowded lock still gets a code. A
    ``preferred_length`` is a request a person made: only that length is tried, and an
    exhausted length is reported rather than silently replaced. ``rng`` is for tests; the
    default draws from the operating system's CSPRNG.
    """
    shortest, longest = _bounds(code_lengths)
    if preferred_length is not None:
        if not shortest <= preferred_length <= longest:
            allowed = f"{shortest}" if shortest == longest else f"between {shortest} and {longest}"
            raise CodeRuleViolation(
                "code_constraints_violated",
                "preferred_code_length",
                f"preferred_code_length must be {allowed} on this device.",
            )
        lengths = [preferred_length]
        field = "preferred_code_length"
    else:
        first = _default_length(shortest, longest)
        lengths = [first, *range(first + 1, longest + 1), *range(first - 1, shortest - 1, -1)]
        field = "code"
    source = secrets.SystemRandom() if rng is None else rng
    taken_set = frozenset(taken)
    budget = _SCAN_BUDGET
    for length in lengths:
        blocked = _trivial_codes(length) | {
            code for code in taken_set if len(code) == length and _is_digits(code)
        }
        code, budget = _pick(length, blocked, source, budget)
        if code is not None:
            return code
    if preferred_length is not None:
        message = (
            f"preferred_code_length {preferred_length} leaves no free PIN on this device;"
            " choose another length or remove unused codes."
        )
    else:
        message = (
            f"{field} could not be generated: every PIN of {_describe(shortest, longest)}"
            " on this device is taken or too easy to guess."
        )
    raise CodeRuleViolation("code_constraints_violated", field, message)


def shared_code_lengths(
    lengths: Collection[tuple[int, int] | None],
) -> tuple[int, int] | None:
    """The PIN lengths every one of several locks (at least one) accepts, or None when they
    have none in common: a PIN shared across doors must be typeable on each of them."""
    bounds = [_bounds(pair) for pair in lengths]
    shortest = max(low for low, _ in bounds)
    longest = min(high for _, high in bounds)
    return (shortest, longest) if shortest <= longest else None


def mask(code: str) -> str:
    """Stand-in for a PIN in a log line; constant, so not even the length leaks."""
    return "***"
