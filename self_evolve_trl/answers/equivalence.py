"""Math-aware equivalence of final answers: `is_equivalent`, and `answer_classes` for the answers of one group.

`answer_classes(answers, match)` gives one class id per answer, equal ids for equivalent answers. `match="math"` adds
math-verify on top of the normalisation for the classes still distinct (`1/2` = `0.5` = `\\frac{1}{2}`,
`2\\sqrt{3}` = `\\sqrt{12}`); see `docs/math.md`, section "Answers".

Fast paths (`keys_equivalent`), so that a generation batch of 4096 answers takes a fraction of a second instead of
seconds (`benchmarks/answer_matching.py`): equal keys; two plain numbers (integers and fractions exactly, decimals
unless within math-verify's rounding of the other: `0.333333` = `1/3` to it); two choice letters; two numbers
written in LaTeX, compared by value (`latex_value`: `2\\sqrt{3}` = `\\sqrt{12}`, `\\frac{\\pi}{3}` !=
`\\frac{\\pi}{2}`); one-variable inequalities and intervals with integer ends, compared as sets (`x>2` = `2<x` =
`(2,\\infty)`); words (`undefined`) against numbers, letters and other words; and, from math-verify's parse of the
non-number alone (cached per answer), pairs that `verify` could never find equal (a number against a product of
symbols, a set or infinity). Each shortcut decides only what math-verify would decide the same way; the rest goes to
math-verify (`verify.verify_keys`, under a thread deadline), in both argument orders (its `verify` is not symmetric:
`x>2` = `(2,\\infty)` only with the inequality as gold), and two answers are equal if either order says so.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .intervals import interval_reading, interval_verdict
from .latex import latex_value, values_compare
from .normalize import as_number, normalize_answer
from .verify import MATCH_STATS, TimedOut, parsed_reading, verify_keys


MATCH_MODES = ("exact", "normalized", "math")

# Answers longer than this are compared as normalised strings only: sympy can take minutes on long expressions.
MAX_MATH_LENGTH = 120


# What math-verify's parse of an answer is, as far as the shortcuts of `_reading_verdict` need to know (an answer
# whose reading rules out equality with the other is "not equal" without calling `verify`). See
# `verify.parsed_reading`.
_NEVER_EQUAL = {
    frozenset({"number", "monomial"}),  # a real number against a product of symbols: `5` ~ `n/a`, `2\\pi c m^2`
    frozenset({"number", "not_real"}),  # `5` ~ `\\infty`, `I`
    frozenset({"number", "collection"}),  # `5` ~ `2,3,5`
    frozenset({"number", "symbol"}),  # `5` ~ `D`
    frozenset({"symbol", "monomial"}),  # one letter against a product of two or more factors: `D` ~ `\\angle ABC`
    frozenset({"symbol", "not_real"}),
    frozenset({"symbol", "collection"}),
    frozenset({"monomial", "not_real"}),
    frozenset({"monomial", "collection"}),
    # a one-variable inequality or membership (`x>2`, `x\\in(2,\\infty)`; see `_key_reading`) against a number, a
    # letter, a product of symbols or infinity
    frozenset({"relation", "number"}),
    frozenset({"relation", "symbol"}),
    frozenset({"relation", "monomial"}),
    frozenset({"relation", "not_real"}),
}


def _key_reading(key: str) -> tuple[str, Any]:
    """`verify.parsed_reading` of a normalised answer; numbers in LaTeX (`latex_value`), single letters, one-variable
    inequalities and intervals (`interval_reading`) are read without parsing (math-verify reads every letter as a
    one-letter symbol, except `e` (Euler's number) and `I`; an inequality is a `"relation"`, an interval a
    `"collection"`)."""
    value = latex_value(key)
    if value is not None:
        return "number", value
    if _is_letter(key) and key not in ("e", "I"):
        return "symbol", key
    interval = interval_reading(key)
    if interval is not None:
        return ("collection", None) if interval[0] == "interval" else ("relation", None)
    return parsed_reading(key)


def _reading_verdict(a: str, b: str) -> bool | None:
    """False when the two answers' readings rule out equality (see `_NEVER_EQUAL`, `verify.parsed_reading`); None
    when math-verify must compare."""
    kind_a, data_a = _key_reading(a)
    if kind_a == "unparsed":
        return False
    kind_b, data_b = _key_reading(b)
    if kind_b == "unparsed":
        return False
    if kind_a == kind_b == "number":
        return None  # too close to tell apart numerically (see `values_compare`)
    if "equation" in (kind_a, kind_b):
        # an equation is not its right-hand side (`2x+y=1` is not 1, though math-verify finds them equal with 1 as
        # gold); it may equal another equation, an inequality, or a set (by its solution set: x^2=4 ~ {-2, 2})
        other = kind_b if kind_a == "equation" else kind_a
        return None if other in ("equation", "relation", "collection") else False
    if frozenset({kind_a, kind_b}) in _NEVER_EQUAL:
        return False
    if kind_a == kind_b == "monomial" and data_a != data_b:
        return False
    return None


@lru_cache(maxsize=262144)
def _math_verdict(a: str, b: str) -> tuple[bool, bool]:
    """(equal, whether math-verify raised) for two keys; raises `TimedOut`, so that a timeout is never cached."""
    if len(a) > MAX_MATH_LENGTH or len(b) > MAX_MATH_LENGTH:
        MATCH_STATS.add("math_skipped_long")
        return False, False
    if _reading_verdict(a, b) is False:
        MATCH_STATS.add("math_ruled_out")
        return False, False
    return verify_keys(a, b)


def _math_equal_keys(a: str, b: str) -> bool:
    """math-verify's verdict on two keys. A comparison that raised is "not equal" and counted in `MATCH_STATS` at
    every call; one that timed out (its parse included) is "not equal" this time, counted, and tried again at the
    next call: a timeout says nothing about the answers (a cold first parse can take seconds)."""
    try:
        equal, raised = _math_verdict(a, b)
    except TimedOut:
        return False
    if raised:
        MATCH_STATS.add("math_errors")
    return equal


def _plain_numbers_verdict(a: str, b: str) -> bool | None:
    """For two distinct plain-number keys: False when math-verify cannot find them equal, None when it might.

    math-verify compares integers and fractions exactly (`sympy.Rational`), but a decimal (`sympy.Float`) after
    rounding both sides to 6 decimals: `0.333333` = `1/3` and `0.1234564` = `0.1234561` to it. Keys with a decimal
    point that are this close (`values_compare`) are left to it. (A whole number written as a decimal, `5.0`, is keyed
    and compared as the integer 5.)
    """
    if "." not in a and "." not in b:
        return False  # distinct canonical rationals
    return False if values_compare(float(as_number(a)), float(as_number(b))) is False else None


_LETTERS = re.compile(r"^[A-Za-z]+$")
# Words that math-verify's normalisation rewrites before parsing (`inf` -> `\infty`, `and` -> `,`, ...).
_MATH_VERIFY_WORDS = re.compile(r"inf|sqrt|perc|pct|^(?:and|or)$", re.IGNORECASE)


def _is_letter(key: str) -> bool:
    return len(key) == 1 and key.isalpha()


def _is_prose(key: str) -> bool:
    """Two or more letters and nothing else ("undefined", "Theansweris"), at least one of them not `e`/`i`.

    math-verify reads such a key as a product of symbols with at least one free symbol (it reads `e` as Euler's
    number and `I` as the imaginary unit): never a number, and never a single-letter symbol.
    """
    return (
        len(key) >= 2
        and _LETTERS.match(key) is not None
        and not set(key) <= set("eEiI")
        and _MATH_VERIFY_WORDS.search(key) is None
    )


def _fast_verdict(a: str, b: str) -> bool | None:
    """Equal / not equal for distinct keys that need no math-verify; None when math-verify must decide."""
    if as_number(a) is not None and as_number(b) is not None:
        return _plain_numbers_verdict(a, b)
    if _is_letter(a) and _is_letter(b):  # distinct choice letters
        return False
    value_a, value_b = latex_value(a), latex_value(b)
    if value_a is not None and value_b is not None:  # numbers in LaTeX: `2\sqrt{3}`, `\sqrt{12}`, `\frac{\pi}{2}`
        return values_compare(value_a, value_b)
    verdict = interval_verdict(a, b)  # `x>2`, `(2,\infty)`
    if verdict is not None:
        return verdict
    prose_a, prose_b = _is_prose(a), _is_prose(b)
    if prose_a and prose_b:  # products of the same letters may be equal (`ab`, `ba`, `\text{ab}`); others are not
        return None if sorted(a.lower()) == sorted(b.lower()) else False
    if (prose_a and (value_b is not None or _is_letter(b) or interval_reading(b) is not None)) or (
        prose_b and (value_a is not None or _is_letter(a) or interval_reading(a) is not None)
    ):
        return False  # a product of symbols is neither a number, one letter, an inequality nor an interval
    return None


def keys_equivalent(a: str, b: str) -> bool:
    """Whether two *normalised* answers are mathematically equal: exact key match, then fast paths for numbers,
    choice letters and words, then math-verify."""
    if a == b:
        return True
    verdict = _fast_verdict(a, b)
    if verdict is not None:
        return verdict
    return _math_equal_keys(a, b) if a <= b else _math_equal_keys(b, a)  # symmetric: one cache entry per pair


def is_equivalent(prediction: str | None, reference: str | None, match: str = "math") -> bool:
    """Whether a predicted answer equals a reference answer under `match` (abstentions never equal anything).

    Example:

    ```python
    >>> is_equivalent("0.5", "\\\\frac{1}{2}"), is_equivalent("140°", "140"), is_equivalent("3", "4")
    (True, True, False)

    ```
    """
    if prediction is None or reference is None:
        return False
    if match == "exact":
        return prediction.strip() == reference.strip()
    a, b = normalize_answer(prediction), normalize_answer(reference)
    if match == "normalized":
        return a == b
    if match == "math":
        return keys_equivalent(a, b)
    raise ValueError(f"Unknown match mode {match!r}; valid modes: {', '.join(MATCH_MODES)}.")


def answer_classes(answers: list[str | None], match: str = "math") -> list[int | None]:
    """Equivalence class id of each answer within one group; `None` for abstentions.

    Classes are numbered in order of first appearance (class 0 is the first answer seen), so "the class seen first"
    wins ties. An answer joins the first earlier class whose representative (first member) it equals.

    Args:
        answers: extracted final answers, `None` for abstentions.
        match: `"exact"` (stripped strings), `"normalized"` (`normalize_answer` keys) or `"math"` (normalised keys,
            then math-verify between the keys still distinct).

    Example:

    ```python
    >>> answer_classes(["1/2", "0.5", None, "\\\\frac{1}{2}", "3", "2\\\\sqrt{3}", "\\\\sqrt{12}"])
    [0, 0, None, 0, 1, 2, 2]

    ```
    """
    if match not in MATCH_MODES:
        raise ValueError(f"Unknown match mode {match!r}; valid modes: {', '.join(MATCH_MODES)}.")
    if match == "exact":
        keys = [a.strip() if a is not None else None for a in answers]
    else:
        keys = [normalize_answer(a) if a is not None else None for a in answers]
    class_of_key: dict[str, int] = {}
    representatives: list[str] = []
    result: list[int | None] = []
    for key in keys:
        if key is None:
            result.append(None)
            continue
        if key not in class_of_key:
            found = None
            if match == "math":
                found = next((c for c, rep in enumerate(representatives) if keys_equivalent(rep, key)), None)
            if found is None:
                found = len(representatives)
                representatives.append(key)
            class_of_key[key] = found
        result.append(class_of_key[key])
    return result
