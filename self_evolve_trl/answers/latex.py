"""The numeric value of a simple LaTeX arithmetic expression: the fast path of answer matching (see
`docs/math.md`, section "Answers").

Most final answers are numbers written in some LaTeX spelling: `2\\sqrt{3}`, `\\sqrt{12}`, `\\frac{4\\pi}{4}`,
`\\frac{\\sqrt{3}}{2}`. Comparing two of them with math-verify costs milliseconds (parse, then sympy); evaluating
both here costs microseconds. `latex_value` understands a small grammar — numbers, `+ - * / \\cdot \\times`,
`^`, `\\frac`, `\\sqrt` (with an optional index), `\\pi`, braces, parentheses and implicit multiplication — and
returns None for anything else, including every spelling whose reading is ambiguous (where math-verify's parser
reads it another way than plain LaTeX would): mixed numbers (`2\\frac{1}{2}`, and whatever math-verify builds as an
integer before a fraction or an integer: `(2)\\frac{1}{2}`, `\\frac{4}{2}\\frac{1}{2}`, `(2)(3)`), a function call
(`\\pi(3)`), `1/2\\pi`, `2^10`, `2^-1`, `\\sqrt12`, a bare command or digit that math-verify's normaliser
misreads (`\\sqrt\\pi`, `\\frac1\\pi`, `\\sqrt[3]8`, `2.`), a braced group alone (a set: `{3}`) and sums that float
arithmetic cannot keep (`10^{15}+0.5-10^{15}`). Only real, finite values are returned. A seeded fuzz test checks
the values against math-verify's parse (`tests/answers/test_latex_value.py`).

`values_compare(a, b)` then says whether two values are certainly equal (`True`: equal to 12 significant digits,
and below 10^12), certainly different (`False`: apart by more than math-verify's own numeric tolerance could
bridge), or neither (`None`: let math-verify decide).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache


# Relative difference below which two evaluated values are the same number (float error of equal expressions is
# ~1e-16), and above which they are certainly different: math-verify calls numbers equal when they agree after
# rounding to 6 decimals, so anything closer than 1e-5 (relative to max(1, |a|, |b|)) is left to it.
EQUAL_RTOL = 1e-12
DIFFERENT_RTOL = 1e-5
# Above this, floats no longer tell neighbouring integers apart (2^{64} and 18446744073709551615): math-verify decides.
MAX_EQUAL_MAGNITUDE = 1e12

# A sum whose terms are this many times larger than it is left to math-verify (float error grows by the ratio).
MAX_CANCELLATION = 1e3

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|(\\[A-Za-z]+)|([{}()\[\]^+\-*/]))")
_MULTIPLY = ("*", "\\cdot", "\\times")
_IMPLICIT_START = ("\\sqrt", "\\pi", "\\frac", "(")


class _Unsupported(Exception):
    """The expression is outside the grammar, or its reading is ambiguous."""


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise _Unsupported
            break
        tokens.append(match.group(match.lastindex))
        position = match.end()
    return tokens


def _checked(value: float, *operands: float) -> float:
    """`value`, unless float arithmetic lost it: infinite, NaN, subnormal, or 0 from non-zero operands (`10^{-400}`).
    """
    if not math.isfinite(value) or 0 < abs(value) < 1e-300 or (value == 0 and all(operands)):
        raise _Unsupported
    return value


def _is_number(token: str | None) -> bool:
    return token is not None and (token[0].isdigit() or token[0] == ".")


# What math-verify's parser (latex2sympy2) builds for a sub-expression, as far as its mixed-number rule needs to know:
# an implicit product `a b` whose left factor is a sympy Integer and whose right part is a positive Rational is read
# as the mixed number a + b (`2\frac{1}{2}`, and also `(2)\frac{1}{2}`, `\frac{4}{2}\frac{1}{2}`, `(2)(3)` = 5).
# Integer: an integer literal, possibly signed, parenthesised or braced, or a quotient of two Integers that divides
# (`\frac{4}{2}`, `4/2`); Rational: such a quotient that does not; anything else (sums, products, powers, roots,
# decimals, π) stays unevaluated in sympy.
INTEGER, RATIONAL, OTHER = "integer", "rational", "other"


def _quotient_kind(numerator: tuple[float, str], denominator: tuple[float, str]) -> str:
    """Kind of `a/b` or `\\frac{a}{b}`: math-verify makes `sympy.Rational(a, b)` of two Integers, else a product."""
    (a, kind_a), (b, kind_b) = numerator, denominator
    if kind_a != INTEGER or kind_b != INTEGER:
        return OTHER
    if max(abs(a), abs(b)) >= 2**53 or (a / b).is_integer():  # beyond exact floats: assume it divides (stricter)
        return INTEGER
    return RATIONAL


class _Parser:
    """Recursive descent over the tokens; every method returns (value, kind) or raises `_Unsupported`."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _Unsupported
        self.i += 1
        return token

    def expect(self, token: str):
        if self.take() != token:
            raise _Unsupported

    def group(self, close: str | None) -> tuple[float, str]:
        """An expression up to `close` (None: the end). One that is a braced group alone (`{3}`, `({3})`) is a set
        to math-verify, so it is not read."""
        if self.peek() == "{":
            depth, j = 0, self.i
            while j < len(self.tokens):
                depth += self.tokens[j] == "{"
                depth -= self.tokens[j] == "}"
                if depth == 0:
                    break
                j += 1
            if depth == 0 and (self.tokens[j + 1] if j + 1 < len(self.tokens) else None) == close:
                raise _Unsupported
        value = self.expression()
        if close is not None:
            self.expect(close)
        return value

    def expression(self) -> tuple[float, str]:
        value, kind = self.term()
        while self.peek() in ("+", "-"):
            operator = self.take()
            right, _ = self.term()
            total = value + right if operator == "+" else value - right
            # cancellation (`10^{15}+0.5-10^{15}`, `1-1`) leaves float error of the size of the terms: math-verify
            if max(abs(value), abs(right)) > MAX_CANCELLATION * abs(total):
                raise _Unsupported
            value, kind = total, OTHER
        return value, kind

    def term(self) -> tuple[float, str]:
        (value, kind), _ = self.product()
        while self.peek() in _MULTIPLY or self.peek() == "/":
            operator = self.take()
            (right, right_kind), factors = self.product()
            if operator == "/":
                if factors > 1 or right == 0:  # `1/2\pi`: math-verify reads 1/(2 pi), plain LaTeX (1/2) pi
                    raise _Unsupported
                value, kind = _checked(value / right, value), _quotient_kind((value, kind), (right, right_kind))
            else:
                value, kind = _checked(value * right, value, right), OTHER
        return value, kind

    def product(self) -> tuple[tuple[float, str], int]:
        """A signed run of implicitly multiplied factors (`2\\sqrt{3}\\pi`); returns ((value, kind), factors)."""
        if self.peek() in ("+", "-"):
            sign = -1.0 if self.take() == "-" else 1.0
            (value, kind), factors = self.product()
            return (sign * value, kind if factors == 1 else OTHER), factors
        start = self.i
        value, kind = self.power()
        factors = 1
        while True:
            token = self.peek()
            if token is None or not (_is_number(token) or token in _IMPLICIT_START or token == "{"):
                return (value, kind if factors == 1 else OTHER), factors
            previous = self.tokens[start : self.i]
            literal = (len(previous) == 1 and _is_number(previous[0])) or previous[0] == "{"
            # `\sqrt{1}2`, `2{3}`; after a number or a braced group `2\frac{1}{2}` (a mixed number to math-verify),
            # `2(3)` (5 to math-verify); after `\pi` (or `\pi^2`), `\pi(3)` is a function called on 3 to math-verify
            if _is_number(token) or token == "{":
                raise _Unsupported
            if literal and token in ("\\frac", "("):
                raise _Unsupported
            if previous[0] == "\\pi" and token == "(":
                raise _Unsupported
            start = self.i
            right, right_kind = self.power()
            if kind == INTEGER and right_kind in (INTEGER, RATIONAL):  # a mixed number: `(2)\frac{1}{2}` = 5/2
                raise _Unsupported
            value, kind = _checked(value * right, value, right), right_kind
            factors += 1

    def power(self) -> tuple[float, str]:
        """An atom with an optional exponent."""
        base, kind = self.atom()
        if self.peek() != "^":
            return base, kind
        self.take()
        if self.peek() == "{":
            self.take()
            exponent, _ = self.expression()
            self.expect("}")
        elif _is_number(self.peek()) and len(self.peek()) == 1:
            exponent = float(self.take())
        else:  # `2^10`, `2^-1`, `2^\frac12`: LaTeX and math-verify disagree
            raise _Unsupported
        if self.peek() == "^" or (base < 0 and not float(exponent).is_integer()) or (base == 0 and exponent <= 0):
            raise _Unsupported
        return _checked(base**exponent, base), OTHER

    def argument(self) -> tuple[float, str]:
        """A command argument: a braced group or one digit (`\\frac12`). math-verify misreads a bare command
        (`\\sqrt\\pi`, `\\frac1\\pi`), so that is not one."""
        token = self.peek()
        if token == "{":
            self.take()
            value = self.expression()
            self.expect("}")
            return value
        if _is_number(token) and token[0].isdigit():
            if len(token) == 1:
                self.take()
            else:  # LaTeX takes one digit: `\frac12` is 1/2; the rest stays for the next argument
                self.tokens[self.i] = token[1:]
            return float(token[0]), INTEGER
        raise _Unsupported

    def atom(self) -> tuple[float, str]:
        token = self.take()
        if _is_number(token):
            if token.endswith("."):  # `2.`: math-verify does not parse it, and reads another part of the answer
                raise _Unsupported
            return float(token), OTHER if "." in token else INTEGER
        if token == "{":
            return self.group("}")
        if token == "(":
            return self.group(")")
        if token == "\\pi":
            return math.pi, OTHER
        if token == "\\frac":
            numerator, denominator = self.argument(), self.argument()
            if denominator[0] == 0:
                raise _Unsupported
            return _checked(numerator[0] / denominator[0], numerator[0]), _quotient_kind(numerator, denominator)
        if token == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take()
                index, _ = self.expression()
                self.expect("]")
                if not index.is_integer() or index < 2 or self.peek() != "{":  # math-verify misreads `\sqrt[3]8`
                    raise _Unsupported
            radicand, _ = self.argument()
            if radicand < 0:
                raise _Unsupported
            return radicand ** (1.0 / index), OTHER
        raise _Unsupported


@lru_cache(maxsize=65536)
def latex_value(text: str) -> float | None:
    """The real value of a simple LaTeX arithmetic expression, or None when it is outside the grammar.

    Example:

    ```python
    >>> values_compare(latex_value("2\\\\sqrt{3}"), latex_value("\\\\sqrt{12}"))
    True
    >>> latex_value("\\\\frac{\\\\pi}{2}"), latex_value("x+1"), latex_value("2\\\\frac{1}{2}")
    (1.5707963267948966, None, None)

    ```
    """
    if len(text) > 200 or re.search(r"\s\s", text):  # math-verify misreads `\frac1  2` (two spaces) as 2
        return None
    try:
        tokens = _tokens(text)
        if not tokens:
            return None
        parser = _Parser(tokens)
        value, _ = parser.group(None)
        if parser.i != len(parser.tokens):
            return None
    except (_Unsupported, ArithmeticError, ValueError, RecursionError):
        return None
    if isinstance(value, complex) or not math.isfinite(value):
        return None
    return float(value)


def values_compare(a: float, b: float) -> bool | None:
    """True if `a` and `b` are the same number, False if certainly different, None if too close to tell.

    Example:

    ```python
    >>> values_compare(0.5, 0.5000000000000001), values_compare(0.5, 0.6), values_compare(1.4142135, 2**0.5)
    (True, False, None)

    ```
    """
    difference = abs(a - b)
    if difference <= EQUAL_RTOL * max(abs(a), abs(b)) and max(abs(a), abs(b)) < MAX_EQUAL_MAGNITUDE:
        return True
    if difference > DIFFERENT_RTOL * max(1.0, abs(a), abs(b)):
        return False
    return None
