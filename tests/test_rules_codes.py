"""PIN rules: validation, triviality, generation and exhaustion (gateway.rules.codes)."""

from __future__ import annotations

import pickle
import random
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules import codes
from gateway.rules.codes import (
    DEFAULT_CODE_LENGTHS,
    CodeRuleKind,
    CodeRuleViolation,
    check_code,
    generate_code,
    is_trivial,
    mask,
)


def all_codes(length: int) -> list[str]:
    return [f"{n:0{length}d}" for n in range(10**length)]


def trivial_by_definition(code: str) -> bool:
    """The documented rules, written out plainly, as an oracle for is_trivial."""
    d = [int(c) for c in code]
    if len(set(d)) == 1:
        return True
    if all((d[i + 1] - d[i]) % 10 == 1 for i in range(len(d) - 1)):
        return True
    if all((d[i] - d[i + 1]) % 10 == 1 for i in range(len(d) - 1)):
        return True
    return len(d) >= 4 and d[0::2] == [d[0]] * len(d[0::2]) and d[1::2] == [d[1]] * len(d[1::2])


class ConstantRandom(random.Random):
    """The worst rng there is: every draw is 0. Generation must still finish."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        return 0


# -- check_code -----------------------------------------------------------------------------------

TAKEN = frozenset({"4821", "13579", "00000000"})

INVALID: list[tuple[str, tuple[int, int] | None, CodeRuleKind]] = [
    ("", (4, 8), "invalid_input"),
    ("12a4", (4, 8), "invalid_input"),
    ("12 34", (4, 8), "invalid_input"),
    (" 1234", (4, 8), "invalid_input"),
    ("1234\n", (4, 8), "invalid_input"),
    ("-1234", (4, 8), "invalid_input"),
    ("+1234", (4, 8), "invalid_input"),
    ("12.4", (4, 8), "invalid_input"),
    ("١٢٣٤", (4, 8), "invalid_input"),  # Arabic-Indic digits: str.isdigit() says yes
    ("１２３４", (4, 8), "invalid_input"),  # full-width digits
    ("²³⁴⁵", (4, 8), "invalid_input"),  # superscripts
    ("123", (4, 8), "code_constraints_violated"),
    ("123456789", (4, 8), "code_constraints_violated"),
    ("123", None, "code_constraints_violated"),
    ("123456789", None, "code_constraints_violated"),
    ("12345", (4, 4), "code_constraints_violated"),
    ("1234", (6, 6), "code_constraints_violated"),
    ("4821", (4, 8), "duplicate_access_code"),
    ("13579", None, "duplicate_access_code"),
    ("00000000", (8, 8), "duplicate_access_code"),
]


@pytest.mark.parametrize(("code", "lengths", "kind"), INVALID)
@pytest.mark.parametrize("field", ["code", "backup.code"])
def test_check_code_refuses(
    code: str, lengths: tuple[int, int] | None, kind: CodeRuleKind, field: str
) -> None:
    with pytest.raises(CodeRuleViolation) as caught:
        check_code(code, code_lengths=lengths, taken=TAKEN, field=field)
    error = caught.value
    assert error.kind == kind
    assert error.field == field
    assert error.message.startswith(field)
    assert error.message.endswith(".")
    assert str(error) == error.message
    if code:
        assert code not in error.message
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("code", "lengths"),
    [
        ("4822", (4, 8)),
        ("0000", (4, 8)),  # trivial, but a person may choose it
        ("1234", None),
        ("12345678", None),
        ("0482", (4, 4)),  # leading zero is part of the PIN
        ("482", (3, 3)),
        ("7", (1, 1)),
        ("1357", (4, 8)),  # a prefix of a taken PIN is a different PIN
    ],
)
def test_check_code_accepts(code: str, lengths: tuple[int, int] | None) -> None:
    check_code(code, code_lengths=lengths, taken=TAKEN)


def test_checks_run_in_the_order_a_person_fixes_them() -> None:
    with pytest.raises(CodeRuleViolation) as caught:
        check_code("12a", code_lengths=(4, 8), taken={"12a"})
    assert caught.value.kind == "invalid_input"
    with pytest.raises(CodeRuleViolation) as caught:
        check_code("123", code_lengths=(4, 8), taken={"123"})
    assert caught.value.kind == "code_constraints_violated"


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [((4, 8), "4 to 8 digits"), ((6, 6), "exactly 6 digits"), (None, "4 to 8 digits")],
)
def test_length_message_names_the_allowed_lengths(
    lengths: tuple[int, int] | None, expected: str
) -> None:
    with pytest.raises(CodeRuleViolation) as caught:
        check_code("123456789", code_lengths=lengths, taken=())
    assert caught.value.message == f"code must be {expected} long on this device."


def test_default_lengths_are_the_contracts() -> None:
    assert DEFAULT_CODE_LENGTHS == (4, 8)


@pytest.mark.parametrize("lengths", [(0, 4), (5, 4), (-1, 2)])
def test_nonsense_lengths_are_a_bug_not_a_refusal(lengths: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="code_lengths") as caught:
        check_code("1234", code_lengths=lengths, taken=())
    assert not isinstance(caught.value, CodeRuleViolation)
    with pytest.raises(ValueError, match="code_lengths"):
        generate_code(code_lengths=lengths, taken=())


def test_violation_pickles_with_its_fields() -> None:
    error = CodeRuleViolation("duplicate_access_code", "code", "code is taken.")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.kind, copy.field, copy.message) == (error.kind, error.field, error.message)


# -- is_trivial -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "0000",
        "1111",
        "99999999",
        "7",
        "1234",
        "6789",
        "0123",
        "123456",
        "12345678",
        "9876",
        "3210",
        "876543",
        "8901",
        "890123",
        "9012",
        "7890",
        "2109",
        "0987",
        "109876",  # runs wrap mod 10
        "12",
        "90",
        "09",
        "21",  # any two-digit step of 1
        "1212",
        "121212",
        "12121",
        "9090",
        "0909",
        "45454545",
    ],
)
def test_trivial(code: str) -> None:
    assert is_trivial(code)


@pytest.mark.parametrize(
    "code",
    [
        "4821",
        "1235",
        "1243",
        "2468",
        "1357",
        "1122",
        "1221",
        "1231",
        "12312",
        "123123",
        "9875",
        "0101x",
        "13",
        "121",
        "112",
        "8902",
        "1213",
        "",
        "abcd",
        "١١١١",
    ],
)
def test_not_trivial(code: str) -> None:
    assert not is_trivial(code)


@given(st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_is_trivial_matches_the_documented_rules(code: str) -> None:
    assert is_trivial(code) == trivial_by_definition(code)


def test_trivial_pins_are_few() -> None:
    """Generation skips them, so there must be few enough not to shrink the space noticeably."""
    assert sum(map(is_trivial, all_codes(4))) == 120
    assert sum(map(is_trivial, all_codes(2))) == 30
    assert all(map(is_trivial, all_codes(1)))


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5])
def test_generation_blocks_exactly_the_trivial_pins(length: int) -> None:
    """Generation counts free PINs with its own list of trivial ones; it must agree."""
    assert codes._trivial_codes(length) == {c for c in all_codes(length) if is_trivial(c)}


# -- generate_code --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        ((4, 8), 4),
        (None, 4),
        ((6, 10), 6),
        ((3, 8), 4),
        ((1, 12), 4),
        ((5, 5), 5),
        ((2, 3), 3),
        ((1, 2), 2),
    ],
)
def test_default_length(lengths: tuple[int, int] | None, expected: int) -> None:
    for _ in range(20):
        assert len(generate_code(code_lengths=lengths, taken=())) == expected


@pytest.mark.parametrize("preferred", [4, 5, 6, 7, 8])
def test_preferred_length_is_honoured(preferred: int) -> None:
    code = generate_code(code_lengths=(4, 8), taken=(), preferred_length=preferred)
    assert len(code) == preferred
    check_code(code, code_lengths=(4, 8), taken=())


@pytest.mark.parametrize(
    ("lengths", "preferred", "message"),
    [
        ((4, 8), 3, "preferred_code_length must be between 4 and 8 on this device."),
        ((4, 8), 9, "preferred_code_length must be between 4 and 8 on this device."),
        (None, 12, "preferred_code_length must be between 4 and 8 on this device."),
        ((6, 6), 4, "preferred_code_length must be 6 on this device."),
        ((4, 8), 0, "preferred_code_length must be between 4 and 8 on this device."),
    ],
)
def test_preferred_length_outside_the_lock(
    lengths: tuple[int, int] | None, preferred: int, message: str
) -> None:
    with pytest.raises(CodeRuleViolation) as caught:
        generate_code(code_lengths=lengths, taken=(), preferred_length=preferred)
    assert caught.value.kind == "code_constraints_violated"
    assert caught.value.field == "preferred_code_length"
    assert caught.value.message == message


def test_injected_rng_is_deterministic() -> None:
    first = [generate_code(code_lengths=(4, 8), taken=(), rng=random.Random(1)) for _ in range(3)]
    assert len(set(first)) == 1
    rng_a, rng_b = random.Random(7), random.Random(7)
    a = [generate_code(code_lengths=(4, 8), taken=(), rng=rng_a) for _ in range(50)]
    b = [generate_code(code_lengths=(4, 8), taken=(), rng=rng_b) for _ in range(50)]
    assert a == b
    assert len(set(a)) > 40


def test_default_rng_is_not_seeded() -> None:
    codes = {generate_code(code_lengths=(8, 8), taken=()) for _ in range(50)}
    assert len(codes) == 50


def test_codes_are_spread_over_all_digits_and_keep_leading_zeros() -> None:
    rng = random.Random(3)
    codes = [generate_code(code_lengths=(4, 4), taken=(), rng=rng) for _ in range(2000)]
    firsts = Counter(code[0] for code in codes)
    assert set(firsts) == set("0123456789")
    assert min(firsts.values()) > 120  # 200 expected per digit


def test_a_constant_rng_still_finishes() -> None:
    code = generate_code(code_lengths=(4, 4), taken=(), rng=ConstantRandom())
    check_code(code, code_lengths=(4, 4), taken=())
    assert not is_trivial(code)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.tuples(st.integers(2, 9), st.integers(0, 3)).map(lambda t: (t[0], t[0] + t[1])),
    taken=st.sets(st.text(alphabet="0123456789", min_size=2, max_size=12), max_size=200),
    seed=st.integers(0, 2**32),
    prefer=st.booleans(),
)
def test_generated_codes_pass_check_code(
    lengths: tuple[int, int], taken: set[str], seed: int, prefer: bool
) -> None:
    rng = random.Random(seed)
    preferred = rng.randint(*lengths) if prefer else None
    code = generate_code(code_lengths=lengths, taken=taken, preferred_length=preferred, rng=rng)
    check_code(code, code_lengths=lengths, taken=taken)
    assert not is_trivial(code)
    if preferred is not None:
        assert len(code) == preferred


@settings(max_examples=100, deadline=None)
@given(
    length=st.integers(2, 3),
    free=st.sets(st.integers(0, 999), max_size=3),
    seed=st.integers(0, 2**32),
)
def test_crowded_short_lengths_find_the_last_free_codes(
    length: int, free: set[int], seed: int
) -> None:
    space = all_codes(length)
    keep = {space[n % len(space)] for n in free}
    taken = set(space) - keep
    wanted = {code for code in keep if not is_trivial(code)}
    if wanted:
        code = generate_code(code_lengths=(length, length), taken=taken, rng=random.Random(seed))
        assert code in wanted
    else:
        with pytest.raises(CodeRuleViolation):
            generate_code(code_lengths=(length, length), taken=taken, rng=random.Random(seed))


def test_one_free_four_digit_code_is_found() -> None:
    taken = set(all_codes(4)) - {"4821"}
    assert len(taken) == 9999
    for seed in range(5):
        assert generate_code(code_lengths=(4, 4), taken=taken, rng=random.Random(seed)) == "4821"
    assert generate_code(code_lengths=(4, 4), taken=taken) == "4821"
    assert generate_code(code_lengths=(4, 4), taken=taken, rng=ConstantRandom()) == "4821"
    assert generate_code(code_lengths=(4, 4), taken=sorted(taken)) == "4821"  # any Collection


def test_one_free_but_trivial_code_is_refused() -> None:
    taken = set(all_codes(4)) - {"1234"}
    with pytest.raises(CodeRuleViolation) as caught:
        generate_code(code_lengths=(4, 4), taken=taken)
    error = caught.value
    assert (error.kind, error.field) == ("code_constraints_violated", "code")
    assert error.message == (
        "code could not be generated: every PIN of exactly 4 digits"
        " on this device is taken or too easy to guess."
    )
    assert "1234" not in error.message


def test_exhausted_default_length_moves_to_other_lengths() -> None:
    taken = set(all_codes(4))
    code = generate_code(code_lengths=(3, 5), taken=taken)
    assert len(code) == 5  # longer first: the shorter length is the weaker one
    taken |= set(all_codes(5))
    code = generate_code(code_lengths=(3, 5), taken=taken)
    assert len(code) == 3


def test_exhausted_preferred_length_is_reported_not_replaced() -> None:
    taken = set(all_codes(4))
    with pytest.raises(CodeRuleViolation) as caught:
        generate_code(code_lengths=(4, 8), taken=taken, preferred_length=4)
    error = caught.value
    assert (error.kind, error.field) == ("code_constraints_violated", "preferred_code_length")
    assert error.message == (
        "preferred_code_length 4 leaves no free PIN on this device;"
        " choose another length or remove unused codes."
    )


def test_single_digit_locks_have_nothing_safe_to_generate() -> None:
    with pytest.raises(CodeRuleViolation):
        generate_code(code_lengths=(1, 1), taken=())


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.tuples(st.integers(1, 4), st.integers(0, 3)).map(
        lambda t: (t[0], min(4, t[0] + t[1]))
    ),
    seed=st.integers(0, 2**32),
)
def test_exhaustion_raises_and_ends_fast(lengths: tuple[int, int], seed: int) -> None:
    taken = {code for n in range(lengths[0], lengths[1] + 1) for code in all_codes(n)}
    started = time.perf_counter()
    with pytest.raises(CodeRuleViolation) as caught:
        generate_code(code_lengths=lengths, taken=taken, rng=random.Random(seed))
    assert time.perf_counter() - started < 1.0
    assert caught.value.kind == "code_constraints_violated"


def test_scan_budget_bounds_a_hopeless_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """With draws that always miss, the scan stops at its budget instead of walking on."""
    monkeypatch.setattr(codes, "_SCAN_BUDGET", 10)
    taken = set(all_codes(4)) - {"4821"}
    with pytest.raises(CodeRuleViolation):
        generate_code(code_lengths=(4, 4), taken=taken, rng=ConstantRandom())
    monkeypatch.setattr(codes, "_SCAN_BUDGET", 10**4)
    assert generate_code(code_lengths=(4, 4), taken=taken, rng=ConstantRandom()) == "4821"


def test_mask_hides_pin_and_length() -> None:
    assert mask("1234") == "***"
    assert mask("12345678") == "***"
    assert mask("") == "***"


# -- shared PINs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "shared"),
    [
        ([(4, 6), (6, 8)], (6, 6)),
        ([(4, 8), None], (4, 8)),  # None: the default lengths
        ([None, (2, 5), (3, 9)], (4, 5)),
        ([(4, 5), (6, 8)], None),
        ([(1, 16)], (1, 16)),
    ],
)
def test_shared_code_lengths(
    lengths: list[tuple[int, int] | None], shared: tuple[int, int] | None
) -> None:
    assert codes.shared_code_lengths(lengths) == shared


@given(st.lists(st.tuples(st.integers(1, 16), st.integers(1, 16)), min_size=1, max_size=5))
def test_a_shared_length_fits_every_lock(pairs: list[tuple[int, int]]) -> None:
    locks = [(min(p), max(p)) for p in pairs]
    shared = codes.shared_code_lengths(locks)
    fits_all = [n for n in range(1, 17) if all(low <= n <= high for low, high in locks)]
    if shared is None:
        assert fits_all == []
    else:
        assert list(range(shared[0], shared[1] + 1)) == fits_all
