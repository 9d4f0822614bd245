"""Normalisation of final answers: the cheap key compared before any math (`match: normalized`, see `docs/math.md`,
section "Answers").

`normalize_answer(answer)` removes spacing, `$`, `\\text{}`, degrees, trailing units and punctuation, `\\dfrac`, outer
braces, reads choice letters and writes plain numbers in a canonical form. A unit is dropped only after a plain number
(`12 cm`, `3h`) or where it is marked as text (`(x+2)\\text{ cm}`): a letter in an expression is a variable (`2+3h`).
`x = 12` is 12 when one variable stands on the left; any other equation (`2x + y = 1`) stays an equation, which equals
no number. `as_number` reads plain integers, decimals and simple fractions exactly.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache


_ONE_LETTER_UNITS = "m|s|g|h|l"
_LONGER_UNITS = (
    "degrees?|deg|cm|mm|km|meters?|metres?|centimeters?|millimeters?|kilometers?|inches|inch|in|feet|foot|ft|"
    "yards?|yd|miles?|units?|square units?|sq units?|cm\\^2|cm\\^3|cm²|cm³|grams?|kg|seconds?|"
    "minutes?|min|hours?|hrs?|dollars?|cents?|percent|liters?|ml|mph|km/h|m/s"
)
_UNITS = f"{_LONGER_UNITS}|{_ONE_LETTER_UNITS}"
_POWER = r"(?:\^\s*\{?\s*[23]\s*\}?|[23²³])?"
# After a plain number: a known unit (`12 cm`, `12cm`, `5 m^2`; a one-letter one only after a space: `3 h`, while
# `3h` is a product), words after a space (`12 apples`), or a percent sign.
_BARE_UNIT = re.compile(
    rf"^(.*?)(?:\s*(?:{_LONGER_UNITS}){_POWER}|\s+(?:(?:{_ONE_LETTER_UNITS}){_POWER}|[a-z]{{2,}}(?:\s+[a-z]+)*)"
    rf"|\s*\\?%)$",
    re.IGNORECASE,
)
# A unit marked as text (`2\pi \text{ cm}^2`, `(x+2)\,\mathrm{m}`): a unit after whatever precedes it.
_TEXT_UNIT = re.compile(
    rf"^(.*?)\\(?:text|textrm|mathrm|mbox)\s*\{{\s*(?:(?:{_UNITS})|[A-Za-z]{{2,}}(?:\s+[A-Za-z]+)*)\s*\}}\s*{_POWER}$",
    re.IGNORECASE,
)
_SPACING = ("\\!", "\\,", "\\;", "\\:", "\\quad", "\\qquad", "~", "\\ ")
_TEXT_COMMANDS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_CHOICE = re.compile(r"^\(?([A-Za-z])\)?[.:]?$")
_GREEK = (
    "alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|rho|sigma|tau|"
    "upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Sigma|Phi|Psi|Omega"
)
# `x = 12`, `\theta_1 = 30`: one variable on the left, and no further `=` on the right (`x=2,y=3` is a system)
_ASSIGNMENT = re.compile(rf"^(?:[A-Za-z]|\\(?:{_GREEK}))(?:_\{{?\w+\}}?)?\s*=\s*(?=[^=]+$)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def _strip_outer_braces(s: str) -> str:
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        depth = 0
        for i, ch in enumerate(s):
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 0 and i < len(s) - 1:
                return s  # the first brace closes before the end: `{a}+{b}`
        s = s[1:-1].strip()
    return s


@lru_cache(maxsize=65536)
def normalize_answer(answer: str) -> str:
    """Cheap, exact-preserving normalisation of a final answer (`match: normalized`).

    Two readings here are deliberate and differ from math-verify on the raw strings:

    - a percent sign after a plain number is a unit and is dropped: `25\\%` is `25` (math-verify reads 0.25, equal
      to `\\frac14`). Reading both ways would put `25` and `\\frac14` in one class through `25\\%`. Inside an
      expression it is math-verify's: `2+3\\%` is 2.03;
    - a single letter is a choice letter, upper-cased: `e` is the choice `E` (math-verify reads Euler's number,
      equal to `2.718281828459045`).

    Example:

    ```python
    >>> [normalize_answer(a) for a in ["$140^\\\\circ$", "140°", " \\\\dfrac{1}{2} ", "(b)", "5 cm", "x = 2.50"]]
    ['140', '140', '0.5', 'B', '5', '2.5']

    ```
    """
    s = answer.strip()
    s = s.replace("\\$", "").replace("$", "")
    for wrapper in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(wrapper[0]) and s.endswith(wrapper[1]):
            s = s[2:-2]
    unit = _TEXT_UNIT.match(s)
    if unit:
        body = _without_spacing(unit.group(1))
        if body and (body[-1].isalnum() or body[-1] in "})]|!"):
            return normalize_answer(body)
    for _ in range(3):  # nested \text{\textbf{...}}
        s = _TEXT_COMMANDS.sub(r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\left", "").replace("\\right", "")
    for spacing in _SPACING:
        s = s.replace(spacing, " ")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree", "", s)
    s = s.strip().rstrip(".,;:!?。").strip()
    s = _strip_outer_braces(s)
    s = _ASSIGNMENT.sub("", s)
    unit = _BARE_UNIT.match(s)
    if unit and _plain_number(unit.group(1)) is not None:  # `12 cm`, `25\%`; never `2+3h` (a variable)
        s = unit.group(1)
    s = s.rstrip(".").strip()
    choice = _CHOICE.match(s)
    if choice:  # a choice letter, whatever its case: `e` is `E`, not Euler's number (see the docstring)
        return choice.group(1).upper()
    s = re.sub(r"\s+", "", s)
    number = _plain_number(s)
    if number is not None:
        return _number_key(number, decimal="." in s)
    return s


def _without_spacing(s: str) -> str:
    s = s.rstrip()
    while s.endswith(_SPACING):
        s = s[: -len(next(spacing for spacing in _SPACING if s.endswith(spacing)))].rstrip()
    return s


def _plain_number(s: str) -> Fraction | None:
    """`as_number` of `s` without whitespace and thousands separators (`1,000`)."""
    s = re.sub(r"\s+", "", s)
    return as_number(s.replace(",", "") if _THOUSANDS.match(s) else s)


_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+)/(\d+)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac\{?([+-]?\d+)\}?\{?(\d+)\}?$")


def as_number(s: str) -> Fraction | None:
    """A rational value for plain integers, decimals and simple fractions; None for anything else."""
    try:
        if _PLAIN_NUMBER.match(s):
            return Fraction(s)
        match = _SLASH_FRACTION.match(s)
        if match and int(match.group(2)) != 0:
            return Fraction(int(match.group(1)), int(match.group(2)))
        match = _LATEX_FRACTION.match(s)
        if match and int(match.group(3)) != 0:
            value = Fraction(int(match.group(2)), int(match.group(3)))
            return -value if match.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _terminating_decimal(value: Fraction) -> str | None:
    """`value` written as a decimal without an exponent (`0.00001`, not `1e-05`, which math-verify reads as e - 5),
    or None when it has no finite decimal expansion."""
    rest, twos, fives = value.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        return None
    places = max(twos, fives)
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    return ("-" if value < 0 else "") + digits[:-places] + "." + digits[-places:]


def _number_key(value: Fraction, decimal: bool) -> str:
    """The canonical key of a plain number: an integer (`5` for `5.0`), a decimal (`2.5` for `5/2` and `2.50`), or
    `p/q`. math-verify reads a decimal as a float and compares it with others after rounding (`0.333333` = `1/3`), a
    fraction exactly, so a number written as a decimal (`decimal`) keeps a decimal key however long it is; a fraction
    gets one only when it is a short decimal (`0.5`, `0.125`: as long as a float's shortest repr)."""
    if value.denominator == 1:
        return str(value.numerator)
    if decimal or Fraction(repr(float(value))) == value:
        written = _terminating_decimal(value)
        if written is not None:
            return written
    return f"{value.numerator}/{value.denominator}"
