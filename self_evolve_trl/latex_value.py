"""The numeric value of a simple LaTeX arithmetic expression: the fast path of answer matching (issue 8).

Most final answers are numbers written in some LaTeX spelling: `2\\sqrt{3}`, `\\sqrt{12}`, `\\frac{4\\pi}{4}`,
`\\frac{\\sqrt{3}}{2}`. Comparing two of them with math-verify costs milliseconds (parse, then sympy); evaluating
both here costs microseconds. `latex_value` understands a small grammar — numbers, `+ - * / \\cdot \\times`,
`^`, `\\frac`, `\\sqrt` (with an optional index), `\\pi`, braces, parentheses and implicit multiplication — and
returns None for anything else, including every spelling whose reading is ambiguous (where math-verify's parser
reads it another way than plain LaTeX would): mixed numbers `2\\frac{1}{2}`, `2(3)`, `1/2\\pi`, `2^10`, `2^-1`,
`\\sqrt12`. Only real, finite values are returned.

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


def _is_number(token: str | None) -> bool:
    return token is not None and (token[0].isdigit() or token[0] == ".")


class _Parser:
    """Recursive descent over the tokens; every method returns a float or raises `_Unsupported`."""

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

    def expression(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            operator = self.take()
            right = self.term()
            value = value + right if operator == "+" else value - right
        return value

    def term(self) -> float:
        value, _ = self.product()
        while self.peek() in _MULTIPLY or self.peek() == "/":
            operator = self.take()
            right, factors = self.product()
            if operator == "/":
                if factors > 1 or right == 0:  # `1/2\pi`: math-verify reads 1/(2 pi), plain LaTeX (1/2) pi
                    raise _Unsupported
                value = value / right
            else:
                value = value * right
        return value

    def product(self) -> tuple[float, int]:
        """A signed run of implicitly multiplied factors (`2\\sqrt{3}\\pi`); returns (value, number of factors)."""
        if self.peek() in ("+", "-"):
            sign = -1.0 if self.take() == "-" else 1.0
            value, factors = self.product()
            return sign * value, factors
        value, literal = self.power()
        factors = 1
        while True:
            token = self.peek()
            if token is None or not (_is_number(token) or token in _IMPLICIT_START or token == "{"):
                return value, factors
            # `\sqrt{1}2`, `2{3}`, and after a plain number `2\frac{1}{2}` (a mixed number to math-verify), `2(3)`
            if _is_number(token) or token == "{" or (literal and token in ("\\frac", "(")):
                raise _Unsupported
            right, literal = self.power()
            value *= right
            factors += 1

    def power(self) -> tuple[float, bool]:
        """An atom with an optional exponent; returns (value, whether it is a plain number literal)."""
        base, literal = self.atom()
        if self.peek() != "^":
            return base, literal
        self.take()
        if self.peek() == "{":
            self.take()
            exponent = self.expression()
            self.expect("}")
        elif _is_number(self.peek()) and len(self.peek()) == 1:
            exponent = float(self.take())
        else:  # `2^10`, `2^-1`, `2^\frac12`: LaTeX and math-verify disagree
            raise _Unsupported
        if self.peek() == "^" or (base < 0 and not float(exponent).is_integer()) or (base == 0 and exponent <= 0):
            raise _Unsupported
        return base**exponent, False

    def argument(self) -> float:
        """A command argument: a braced group, one digit (`\\frac12`), or `\\pi`."""
        token = self.peek()
        if token == "{":
            self.take()
            value = self.expression()
            self.expect("}")
            return value
        if token == "\\pi":
            self.take()
            return math.pi
        if _is_number(token) and token[0].isdigit():
            if len(token) == 1:
                self.take()
            else:  # LaTeX takes one digit: `\frac12` is 1/2; the rest stays for the next argument
                self.tokens[self.i] = token[1:]
            return float(token[0])
        raise _Unsupported

    def atom(self) -> tuple[float, bool]:
        token = self.take()
        if _is_number(token):
            return float(token), True
        if token == "{":
            value = self.expression()
            self.expect("}")
            return value, True  # `{2}\frac{1}{2}` is as ambiguous as `2\frac{1}{2}`
        if token == "(":
            value = self.expression()
            self.expect(")")
            return value, False
        if token == "\\pi":
            return math.pi, False
        if token == "\\frac":
            numerator, denominator = self.argument(), self.argument()
            if denominator == 0:
                raise _Unsupported
            return numerator / denominator, False
        if token == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take()
                index = self.expression()
                self.expect("]")
                if not index.is_integer() or index < 2:
                    raise _Unsupported
            radicand = self.argument()
            if radicand < 0:
                raise _Unsupported
            return radicand ** (1.0 / index), False
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
    if len(text) > 200:
        return None
    try:
        tokens = _tokens(text)
        if not tokens:
            return None
        parser = _Parser(tokens)
        value = parser.expression()
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
