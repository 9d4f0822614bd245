"""The fast paths of answer matching decide exactly as math-verify would, without calling it (`latex_value`, their
reading of numbers written in LaTeX, is tested in `test_latex_value.py`)."""

import random
import sys
from pathlib import Path

import pytest

from self_evolve_trl.answers import (
    answer_classes,
    clear_caches,
    is_equivalent,
    normalize_answer,
    values_compare,
    verify,
)
from self_evolve_trl.answers.intervals import interval_reading, interval_verdict


REPO_ROOT = Path(__file__).resolve().parents[2]


def math_verify_orders(a: str, b: str) -> tuple[bool, bool]:
    """math-verify's verdicts on the normalised answers, no shortcut: (gold = the smaller key, gold = the larger).
    `verify` is not symmetric (gold `x>2`, target `(2,\\infty)` is equal, the reverse is not)."""
    ka, kb = sorted((normalize_answer(a), normalize_answer(b)))
    if ka == kb:
        return True, True
    parsed_a, parsed_b = verify.mv_parse(ka), verify.mv_parse(kb)
    if not (parsed_a and parsed_b):
        return False, False
    return verify.mv_verify(parsed_a, parsed_b), verify.mv_verify(parsed_b, parsed_a)


def math_verify_equal(a: str, b: str) -> bool:
    """The reference: equal when math-verify finds the normalised answers equal in either argument order."""
    return any(math_verify_orders(a, b))


def verify_calls_expected(a: str, b: str) -> int:
    """Calls of `verify` the matcher makes for a pair it leaves to math-verify: the second order only after a no."""
    return 1 if math_verify_orders(a, b)[0] else 2


@pytest.fixture
def verify_calls(monkeypatch):
    """Records every call of math-verify's `verify` made by the matcher (caches cleared before and after)."""
    calls = []
    original = verify.mv_verify

    def recording(gold, target):
        calls.append((gold, target))
        return original(gold, target)

    clear_caches()
    monkeypatch.setattr(verify, "mv_verify", recording)
    yield calls
    clear_caches()


@pytest.mark.parametrize(
    "a, b",
    [("\\pi(3)^2", "9\\pi"), ("2\\pi(3)", "6\\pi"), ("\\frac{1}{2}\\pi(4)^2", "8\\pi"), ("(2)\\frac{1}{2}", "1")],
)
def test_spellings_math_verify_reads_otherwise_are_not_merged(a, b):
    assert math_verify_equal(a, b) is False
    assert is_equivalent(a, b) is False
    assert answer_classes([a, b]) == [0, 1]


# Pairs that the fast paths decide (no call to math-verify's verify), with math-verify's own verdict.
DECIDED_FAST = [
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True),
    ("\\frac{4\\pi}{4}", "\\pi", True),
    ("3\\pi/6", "\\frac{\\pi}{2}", True),
    ("2\\cdot\\sqrt{3}", "\\sqrt{12}", True),
    ("\\sqrt[3]{8}", "2", True),
    ("\\sqrt{2}\\sqrt{2}", "2", True),
    ("\\frac{2\\pi}{3}", "\\frac{2}{3}\\pi", True),
    ("2\\sqrt{3}", "3\\sqrt{2}", False),
    ("\\frac{\\pi}{3}", "\\frac{\\pi}{2}", False),
    ("\\sqrt{5}/4", "\\frac{\\sqrt{7}}{4}", False),
    ("4\\pi", "16\\pi", False),
    ("5", "n/a", False),
    ("5", "undefined", False),
    ("\\frac{\\sqrt{3}}{2}", "I cannot determine the answer", False),
    ("B", "\\text{The answer is not among the options}", False),
    ("undefined", "see the reasoning above", False),
    ("D", "\\angle ABC", False),
    ("7", "\\infty", False),
    ("5", "2, 3, 5", False),
    ("0.5", "x^2+3x-\\frac{y}{2}=\\sqrt{z}", False),
    ("\\frac{8\\pi}{4}", "2\\pi \\text{ cm}^2", True),
    ("4\\pi", "2\\pi c", False),
    ("12", "D", False),
    ("\\angle ABC", "undefined", False),
]

# Pairs too close (or too unusual) for the fast paths: math-verify decides them, and its verdict stands.
LEFT_TO_MATH_VERIFY = [
    ("\\sqrt{2}", "1.414214", True),  # equal after rounding to 6 decimals
    ("\\pi", "3.14159265", True),
    ("ab", "ba", True),  # the same product of symbols
    ("inf", "\\infty", True),  # math-verify rewrites inf, infinity
    ("infinity", "inf", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("2x+y=1", "y+2x=1", True),  # two equations
    ("\\{1, 2\\}", "\\{2, 1\\}", True),
    ("\\sqrt{2}", "1.4142", False),
]


@pytest.mark.parametrize("a, b, equal", DECIDED_FAST)
def test_fast_paths_agree_with_math_verify(a, b, equal, verify_calls):
    assert math_verify_equal(a, b) is equal  # the reference verdict, computed before the matcher runs
    verify_calls.clear()
    assert is_equivalent(a, b) is equal
    assert is_equivalent(b, a) is equal
    assert verify_calls == []  # decided without math-verify's verify


@pytest.mark.parametrize("a, b, equal", LEFT_TO_MATH_VERIFY)
def test_what_the_fast_paths_cannot_decide_goes_to_math_verify(a, b, equal, verify_calls):
    assert math_verify_equal(a, b) is equal
    expected_calls = verify_calls_expected(a, b)
    verify_calls.clear()
    assert is_equivalent(a, b) is equal
    assert len(verify_calls) == expected_calls


# math-verify reads an inequality given as gold as its solution set, so these are equal in one argument order only
# (ends that are not integers: the interval fast path does not read them).
ONE_ORDER_ONLY = [
    ("x>\\frac{1}{2}", "(\\frac{1}{2},\\infty)"),
    ("x \\geq \\sqrt{2}", "[\\sqrt{2},\\infty)"),
    ("2x>4", "(2,\\infty)"),
    ("-1<x<\\pi", "(-1,\\pi)"),
    ("x<0.5", "(-\\infty,0.5)"),
]


@pytest.mark.parametrize("inequality, interval", ONE_ORDER_ONLY)
def test_math_verify_is_asked_in_both_argument_orders(inequality, interval, verify_calls):
    ka, kb = normalize_answer(inequality), normalize_answer(interval)
    assert sorted(math_verify_orders(inequality, interval)) == [False, True]
    assert verify.mv_verify(verify.mv_parse(ka), verify.mv_parse(kb)) is True  # gold = the inequality
    verify_calls.clear()
    assert is_equivalent(inequality, interval) and is_equivalent(interval, inequality)
    assert len(verify_calls) == verify_calls_expected(inequality, interval)  # cached: once per pair
    assert answer_classes([interval, inequality, "x > 5", inequality]) == [0, 0, 1, 0]
    assert answer_classes([inequality, interval]) == [0, 0]


# Inequalities and intervals with integer ends (`interval_reading`), decided without math-verify; its verdict (either
# argument order) stands next to each.
INTERVALS_DECIDED_FAST = [
    ("x>2", "(2,\\infty)", True),
    ("x \\geq 0", "[0,\\infty)", True),
    ("-1<x<1", "(-1,1)", True),
    ("x<0", "(-\\infty,0)", True),
    ("x>2", "2<x", True),
    ("x \\le 5", "5 \\geq x", True),
    ("x\\in[0,1)", "0\\leq x<1", True),
    ("x\\in(2,\\infty)", "(2, \\infty)", True),
    ("y>2", "(2,\\infty)", True),  # any variable against a set
    ("x>2", "x\\geq2", False),
    ("x>2", "x<2", False),
    ("(2,\\infty)", "[2,\\infty)", False),
    ("(2,\\infty)", "(3,\\infty)", False),
    ("-1<x<1", "x>-1", False),
    ("[0,1]", "(0,1)", False),
    ("x>2", "5", False),  # an inequality is no number, letter, product of symbols or infinity
    ("x>2", "D", False),
    ("x \\leq 3", "n/a", False),
    ("x>2", "\\infty", False),
    ("x\\in(2,\\infty)", "2", False),
]


@pytest.mark.parametrize("a, b, equal", INTERVALS_DECIDED_FAST)
def test_inequalities_and_intervals_with_integer_ends_need_no_verify(a, b, equal, verify_calls):
    assert math_verify_equal(a, b) is equal
    verify_calls.clear()
    assert is_equivalent(a, b) is equal and is_equivalent(b, a) is equal
    assert verify_calls == []


def test_interval_fast_path_agrees_with_math_verify_on_a_grid():
    """Seeded sample of a grid of spellings (ends -2, 0, 3; variables x, y): every verdict of `interval_verdict` is
    math-verify's in either argument order."""
    import itertools

    spellings = []
    for variable in "xy":
        for end in (-2, 0, 3):
            spellings += [f"{variable}>{end}", f"{end}<{variable}", f"{variable}\\geq{end}", f"{end}\\ge{variable}",
                          f"{variable}<{end}", f"{variable}\\le{end}", f"{end}\\geq{variable}"]
            spellings += [f"{variable}\\in({end},\\infty)", f"{variable}\\in(-\\infty,{end}]"]
        for low, high in itertools.combinations((-2, 0, 3), 2):
            spellings += [f"{low}<{variable}<{high}", f"{low}\\leq{variable}<{high}", f"{low}\\le{variable}\\le{high}"]
    for end in (-2, 0, 3):
        spellings += [f"({end},\\infty)", f"[{end},\\infty)", f"(-\\infty,{end})", f"(-\\infty,{end}]"]
    for low, high in itertools.combinations((-2, 0, 3), 2):
        spellings += [f"({low},{high})", f"[{low},{high})", f"[{low},{high}]"]
    readings = {text: interval_reading(text) for text in spellings}
    assert None not in readings.values()

    pairs = list(itertools.combinations(spellings, 2))
    same_set = [pair for pair in pairs if readings[pair[0]][2] == readings[pair[1]][2]]
    rng = random.Random(8)
    sample = rng.sample(same_set, 40) + rng.sample([pair for pair in pairs if pair not in same_set], 40)
    parsed = {text: verify.mv_parse(text) for text in {text for pair in sample for text in pair}}
    decided = 0
    for a, b in sample:
        verdict = interval_verdict(a, b)
        if verdict is not None:
            decided += 1
            expected = verify.mv_verify(parsed[a], parsed[b]) or verify.mv_verify(parsed[b], parsed[a])
            assert verdict is expected, (a, b)
    assert decided >= 60  # the rest (two variables) is left to math-verify


# Decimals are compared by math-verify after rounding to 6 decimals, so these are equal to it.
NEAR_DECIMALS = [
    ("0.333333", "1/3"),
    ("0.142857", "\\frac{1}{7}"),
    ("1.666667", "\\frac{5}{3}"),
    ("-1.666667", "-\\frac{5}{3}"),
    ("0.1234564", "0.1234561"),
    ("0.33333333333333333333", "1/3"),  # a long decimal keeps a decimal key (not 33333333333333333333/10^20)
]


@pytest.mark.parametrize("decimal, other", NEAR_DECIMALS)
def test_decimals_within_math_verify_rounding_are_left_to_it(decimal, other, verify_calls):
    assert math_verify_equal(decimal, other) is True
    verify_calls.clear()
    assert is_equivalent(decimal, other) and is_equivalent(other, decimal)
    assert 1 <= len(verify_calls) <= 2
    assert answer_classes([other, "0.5", decimal]) == [0, 1, 0]


@pytest.mark.parametrize(
    "a, b, equal",
    [
        ("0.333334", "1/3", False),  # close, but not equal after rounding to 6 decimals: math-verify says so
        ("0.33333", "1/3", False),
        ("2.5000001", "\\frac{5}{2}", True),
        ("2.0000001", "2", False),  # an integer is no float to math-verify: it compares them exactly
    ],
)
def test_close_plain_numbers_go_to_math_verify(a, b, equal, verify_calls):
    assert math_verify_equal(a, b) is equal
    verify_calls.clear()
    assert is_equivalent(a, b) is equal
    assert len(verify_calls) >= 1


@pytest.mark.parametrize(
    "a, b",
    [
        ("1/3", "2/3"),
        ("0.33", "1/3"),  # apart by more than math-verify's rounding could bridge
        ("0.5", "0.51"),
        ("1000000", "1000001"),
        ("12345678901234567890", "12345678901234567891"),
        ("1/3", "1/7"),
        ("-3", "3"),
    ],
)
def test_plain_numbers_apart_or_both_exact_need_no_verify(a, b, verify_calls):
    assert math_verify_equal(a, b) is False  # integers and fractions are compared exactly by math-verify
    verify_calls.clear()
    assert is_equivalent(a, b) is False
    assert verify_calls == []


def test_small_decimals_keep_a_decimal_key():
    """`0.00001` was keyed `1e-05`, which math-verify reads as e - 5 (Euler's number)."""
    assert normalize_answer("0.00001") == "0.00001" == normalize_answer("\\frac{1}{100000}")
    assert normalize_answer("-0.000015") == "-0.000015"
    assert is_equivalent("0.00001", "10^{-5}") and math_verify_equal("0.00001", "10^{-5}")
    assert not is_equivalent("0.00001", "e-5")


def test_a_number_against_a_word_parses_only_the_word(verify_calls, monkeypatch):
    parsed = []
    original = verify.mv_parse
    monkeypatch.setattr(verify, "mv_parse", lambda key: parsed.append(key) or original(key))
    assert answer_classes(["\\frac{\\sqrt{3}}{2}", "n/a", "\\infty", "2\\sqrt{3}", "\\sqrt{12}"]) == [0, 1, 2, 3, 3]
    assert sorted(parsed) == ["\\infty", "n/a"]
    assert verify_calls == []  # n/a ~ \infty: a product of symbols is never infinite


def test_classes_of_a_realistic_group_use_no_verify(verify_calls):
    group = ["140°", "140", "140^{\\circ}", "2\\sqrt{3}", "\\sqrt{12}", "undefined", None, "(B)", "b"]
    assert answer_classes(group) == [0, 0, 0, 1, 1, 2, None, 3, 3]
    assert verify_calls == []


def test_answer_matching_benchmark_without_mathruler_says_so(monkeypatch, capsys):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import answer_matching
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    monkeypatch.setitem(sys.modules, "mathruler", None)
    monkeypatch.setitem(sys.modules, "mathruler.grader", None)
    monkeypatch.setattr(sys, "argv", ["answer_matching.py", "--prompts", "8", "--repeats", "1", "--skip-brute-force"])
    answer_matching.main()
    lines = capsys.readouterr().out.strip().splitlines()
    (note,) = [line for line in lines if "released (mathruler)" in line]
    assert "released (mathruler)   skipped: mathruler is not installed" in note and "pip install -e .[bench]" in note
    assert lines[-1].strip().startswith("against the values spelled: split 0 of ")
    assert any(line.strip().startswith("new batch, warm process, cold caches ours") for line in lines)


def test_units_after_pi_are_stripped():
    """`2\\pi \\text{ cm}^2` is `2\\pi`: math-verify finds the raw strings equal (units after \\pi were kept)."""
    assert normalize_answer("2\\pi \\text{ cm}^2") == "2\\pi"
    assert normalize_answer("16\\pi\\,\\text{m}^2") == "16\\pi"
    assert answer_classes(["2\\pi \\text{ cm}^2", "2 \\pi", "\\frac{8\\pi}{4}", "4\\pi \\text{ cm}^2"]) == [0, 0, 0, 1]


def test_close_or_huge_values_and_equations_against_sets_are_left_to_math_verify(verify_calls):
    assert values_compare(2.0**64, 2.0**64 - 1) is None  # floats cannot tell these integers apart
    assert math_verify_equal("2^{64}", "18446744073709551615") is False
    assert is_equivalent("2^{64}", "18446744073709551615") is False
    # math-verify compares an equation with a set by its solution set; the right-hand side alone would be wrong
    expected = math_verify_equal("x^2=4", "\\{-2, 2\\}")
    verify_calls.clear()
    assert is_equivalent("x^2=4", "\\{-2, 2\\}") is expected
    assert len(verify_calls) == verify_calls_expected("x^2=4", "\\{-2, 2\\}")


def test_math_verify_reads_every_letter_but_e_and_I_as_a_one_letter_symbol():
    """What `answers.equivalence` assumes without parsing a choice letter."""
    import string

    import sympy

    for letter in string.ascii_letters:
        parsed = verify.mv_parse(letter)[0]
        if letter in ("e", "I"):
            assert parsed in (sympy.E, sympy.I)
        else:
            assert isinstance(parsed, sympy.Symbol) and len(parsed.name) == 1
