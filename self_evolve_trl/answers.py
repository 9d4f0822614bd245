"""Final answers: extraction from completions and math-aware equivalence classes (SPEC §1).

Three things live here:

- `extract_answer(text, extractor)`: the last `\\boxed{...}` (default), the last `<answer>...</answer>`, or the last
  number. No answer found is an *abstention* (`None`), not an answer.
- `normalize_answer(answer)`: the cheap normalisation applied before any comparison (spacing, `$`, `\\text{}`,
  degrees, trailing units and punctuation, `\\dfrac`, outer braces, choice letters, plain numbers to a canonical form).
  A unit is dropped only after a plain number (`12 cm`, `3h`) or where it is marked as text (`(x+2)\\text{ cm}`): a
  letter in an expression is a variable (`2+3h`). `x = 12` is 12 when one variable stands on the left; any other
  equation (`2x + y = 1`) stays an equation, which equals no number.
- `answer_classes(answers, match)`: one class id per answer, equal ids for equivalent answers. `match="math"` adds
  math-verify on top of the normalisation for the classes still distinct (`1/2` = `0.5` = `\\frac{1}{2}`,
  `2\\sqrt{3}` = `\\sqrt{12}`).

Fast paths (`keys_equivalent`), so that a generation batch of 4096 answers takes a fraction of a second instead of
seconds (`benchmarks/answer_matching.py`): equal keys; two plain numbers (integers and fractions exactly, decimals
unless within math-verify's rounding of the other: `0.333333` = `1/3` to it); two choice letters; two numbers
written in LaTeX, compared by value (`latex_value`: `2\\sqrt{3}` = `\\sqrt{12}`, `\\frac{\\pi}{3}` !=
`\\frac{\\pi}{2}`); one-variable inequalities and intervals with integer ends, compared as sets (`x>2` = `2<x` =
`(2,\\infty)`); words (`undefined`) against numbers, letters and other words; and, from math-verify's parse of the
non-number alone (cached per answer), pairs that `verify` could never find equal (a number against a product of
symbols, a set or infinity). Each shortcut decides only what math-verify would decide the same way; the rest goes to
math-verify, in both argument orders (its `verify` is not symmetric: `x>2` = `(2,\\infty)` only with the inequality
as gold), and two answers are equal if either order says so.

math-verify's own timeouts use `signal.alarm`, which fails off the main thread (one released trainer scored
everything 0 because of it). Here they are disabled and replaced by a deadline on a worker thread: a comparison that
times out or raises counts as "not equal" and is counted in `MATCH_STATS` each time. A timeout is never cached (the
next comparison of the pair asks again), since it says nothing about the answers: the first parse of a process can
take seconds. math-verify's own unit removal is off too; it would read `2+3h` as 5.
"""

from __future__ import annotations

import concurrent.futures
import math
import re
import threading
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from typing import Any

from .latex_value import latex_value, values_compare


EXTRACTORS = ("boxed", "answer_tag", "last_number")
MATCH_MODES = ("exact", "normalized", "math")

# Answers longer than this are compared as normalised strings only: sympy can take minutes on long expressions.
MAX_MATH_LENGTH = 120
# Seconds allowed for one math-verify parse or comparison.
MATH_TIMEOUT_SECONDS = 2.0


def completion_text(completion: Any) -> str:
    """The text of a completion given as a plain string or in TRL's conversational form.

    Example:

    ```python
    >>> completion_text([{"role": "assistant", "content": "\\\\boxed{3}"}])
    '\\\\boxed{3}'

    ```
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return completion_text(completion.get("content", ""))
    if isinstance(completion, list):
        parts = []
        for item in completion:
            if isinstance(item, dict) and "content" in item:
                parts.append(completion_text(item["content"]))
            elif isinstance(item, dict) and item.get("type") == "text":
                parts.append(item.get("text") or "")
            elif isinstance(item, str):
                parts.append(item)
        return "".join(parts)
    return "" if completion is None else str(completion)


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) with balanced braces, else None."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0 or text[start:i].strip() not in ("\\boxed", "\\fbox"):
        # `\boxed 5` (no braces): take the following token
        match = re.match(r"\\(?:boxed|fbox)\s+([^\s$]+)", text[start:])
        return match.group(1) if match else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # braces never close: truncated completion


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def extract_answer(text: Any, extractor: str = "boxed") -> str | None:
    """The final answer of a completion, or None when there is none (an abstention).

    Args:
        text: the completion (a string or TRL's conversational form).
        extractor: `"boxed"` (last `\\boxed{}`, braces balanced), `"answer_tag"` (last `<answer>...</answer>`,
            and a `\\boxed{}` inside it if any) or `"last_number"`.

    Example:

    ```python
    >>> extract_answer("<think>2+2</think> so \\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_answer("no box here") is None
    True

    ```
    """
    text = completion_text(text)
    if extractor == "boxed":
        answer = _last_boxed(text)
    elif extractor == "answer_tag":
        matches = _ANSWER_TAG.findall(text)
        answer = matches[-1] if matches else None
        if answer is not None:
            answer = _last_boxed(answer) or answer
    elif extractor == "last_number":
        matches = _NUMBER.findall(text)
        answer = matches[-1] if matches else None
    else:
        raise ValueError(f"Unknown answer extractor {extractor!r}; valid extractors: {', '.join(EXTRACTORS)}.")
    if answer is None:
        return None
    answer = answer.strip()
    return answer or None


# ----------------------------------------------------------------------------------------------------------------
# Normalisation

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
    """Cheap, exact-preserving normalisation of a final answer (SPEC §1, `match: normalized`).

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
    """`_as_number` of `s` without whitespace and thousands separators (`1,000`)."""
    s = re.sub(r"\s+", "", s)
    return _as_number(s.replace(",", "") if _THOUSANDS.match(s) else s)


_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+)/(\d+)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac\{?([+-]?\d+)\}?\{?(\d+)\}?$")


def _as_number(s: str) -> Fraction | None:
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


# ----------------------------------------------------------------------------------------------------------------
# math-verify, with a thread deadline instead of signal.alarm


class MatchStats:
    """Counts of math-verify work: calls, timeouts and errors (each timeout or error counted as "not equal")."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: Counter = Counter()

    def add(self, key: str, n: int = 1):
        with self.lock:
            self.counts[key] += n

    def snapshot(self, reset: bool = False) -> dict[str, int]:
        with self.lock:
            counts = dict(self.counts)
            if reset:
                self.counts.clear()
        return counts


MATCH_STATS = MatchStats()


class _TimedOut(Exception):
    """math-verify ran past its deadline: no verdict. Raised through the `lru_cache`d functions, which cache no
    call that raises, so a timed-out parse or comparison is never kept as a result."""


class _Deadline:
    """Runs a call on a worker thread and gives up after `seconds`; a stuck worker is abandoned, not reused.

    The trade-off: Python cannot stop a thread, so an abandoned worker runs its sympy call to the end (a pathological
    one may never end), taking GIL time from the trainer. A call given a `key` that timed out is not started again
    while it runs: the next call with that key waits for the same future (up to its own deadline), so one stuck
    computation leaves one thread behind however often it is asked for, and a slow one (a cold parse) that finishes
    late gives its result to the next call. `signal.alarm` would stop the call, but it works only on the main thread,
    where rewards do not always run."""

    def __init__(self):
        self._executor = None
        self._lock = threading.Lock()
        self._late: dict[Any, concurrent.futures.Future] = {}  # key -> future of a call that timed out

    def __call__(self, fn, *args, key: Any = None, seconds: float | None = None):
        seconds = MATH_TIMEOUT_SECONDS if seconds is None else seconds
        with self._lock:
            future = self._late.pop(key, None) if key is not None else None
            if future is None or future.cancelled():
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="math-verify")
                executor = self._executor
                future = executor.submit(fn, *args)
            else:
                executor = None  # an abandoned worker's call: no executor of ours is blocked by it
        try:
            return future.result(timeout=seconds)
        except concurrent.futures.CancelledError:  # queued behind a call that timed out: it never ran
            raise concurrent.futures.TimeoutError from None
        except concurrent.futures.TimeoutError:
            with self._lock:
                if key is not None:
                    self._late[key] = future
                if executor is not None and self._executor is executor:
                    self._executor = None
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            raise


_deadline = _Deadline()


_warm = threading.Event()
_warm_lock = threading.Lock()


def _warm_up():
    """math-verify's imports and first parse and comparison, once per process, with no deadline: they take seconds
    (5 on a loaded machine), which says nothing about the answers, and would otherwise time out the first ones."""
    if _warm.is_set():
        return
    with _warm_lock:
        if not _warm.is_set():
            _mv_verify(_mv_parse("x+1"), _mv_parse("1+x"))
            _warm.set()


def _silence_timeout_warnings():
    """math-verify warns once that its timeouts are off; they are off on purpose (see the module docstring)."""
    import math_verify.grader
    import math_verify.parser

    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True


def _mv_parse(expression: str):
    """math-verify's parse, without its unit removal: `normalize_answer` drops the units (only after a plain
    number), while math-verify's would also drop a variable that looks like one (`2+3h` would read as 5)."""
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    _silence_timeout_warnings()

    normalization = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True)
    return parse(
        f"${expression}$",
        extraction_config=[LatexExtractionConfig(normalization_config=normalization), ExprExtractionConfig()],
        parsing_timeout=None,
        raise_on_error=True,
    )


def _mv_verify(gold, target) -> bool:
    from math_verify import verify

    return bool(verify(gold, target, timeout_seconds=None, raise_on_error=True))


def _mv_verify_either_order(a, b) -> tuple[bool, bool]:
    """`verify` in both argument orders, and whether an order raised: it is not symmetric (gold `x>2`, target
    `(2,\\infty)` is equal, the reverse is not: only an inequality given as gold is read as its set). The second
    order runs only when the first says no; an order that raises counts as "no"."""
    raised = False
    for gold, target in ((a, b), (b, a)):
        MATCH_STATS.add("math_verify")
        try:
            if _mv_verify(gold, target):
                return True, False
        except Exception:
            raised = True
    return False, raised


@lru_cache(maxsize=65536)
def _parse_once(key: str):
    """math-verify's parse of a normalised answer, None when it cannot be parsed; raises `_TimedOut` (not cached)."""
    MATCH_STATS.add("math_parse")
    try:
        _warm_up()
        result = _deadline(_mv_parse, key, key=("parse", key))
    except concurrent.futures.TimeoutError:
        MATCH_STATS.add("math_timeouts")
        raise _TimedOut from None
    except Exception:
        MATCH_STATS.add("math_errors")
        return None
    return result or None


def _parsed(key: str):
    """math-verify's parse of a normalised answer (cached); None when it cannot be parsed or the parse timed out
    (a timed-out parse is counted and tried again at the next call)."""
    try:
        return _parse_once(key)
    except _TimedOut:
        return None


# What math-verify's parse of an answer is, as far as the shortcuts of `_reading_verdict` need to know (an answer
# whose reading rules out equality with the other is "not equal" without calling `verify`). See `_reading`.
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


def _reading(expression) -> tuple[str, Any]:
    """The kind of a sympy expression parsed by math-verify, for `_reading_verdict`:

    - `("monomial", powers)`: a product of symbols (at least one, not a lone symbol) and numbers (`n/a`,
      `2\\pi c m^2`, `\\angle ABC`); `powers` maps each symbol to its (rational, non-zero) exponent;
    - `("symbol", name)`: a lone one-letter symbol (`D`);
    - `("not_real", None)`: infinity, NaN or the imaginary unit (`\\infty`, `I`);
    - `("collection", None)`: a set, tuple or interval of two or more elements (`2,3,5`);
    - `("equation", None)`: an equation whose left side is not a single variable (`2x+y=1`), or a chain of them;
    - `("other", None)`: anything else (sums, inequalities, floats, ...).
    An assignment `x = 12` (a single variable on the left) reads as its right-hand side.
    """
    import sympy

    if isinstance(expression, sympy.Eq):
        if isinstance(expression.lhs, sympy.Symbol):
            return _reading(expression.rhs)
        return "equation", None
    if isinstance(expression, sympy.And) and all(isinstance(arg, sympy.Eq) for arg in expression.args):
        return "equation", None
    if isinstance(expression, (sympy.FiniteSet, sympy.Tuple)) and len(expression) >= 2:
        return "collection", None
    if isinstance(expression, sympy.Interval):
        return "collection", None
    if not isinstance(expression, sympy.Expr) or expression.has(sympy.Float):
        return "other", None
    if isinstance(expression, sympy.Symbol):
        return ("symbol", expression.name) if len(expression.name) == 1 else ("other", None)
    if expression.free_symbols:
        factors = sympy.Mul.make_args(expression)
        powers = Counter()
        for factor in factors:
            if factor.is_number:
                continue
            base, exponent = factor.as_base_exp()
            if not isinstance(base, sympy.Symbol) or not exponent.is_Rational:
                return "other", None
            powers[base] += exponent
        powers = {symbol: power for symbol, power in powers.items() if power}
        coefficient = sympy.Mul(*(factor for factor in factors if factor.is_number))
        # math-verify's numeric test chops tiny numbers (`evalf(chop=True)`): leave tiny coefficients to it
        if powers and (len(factors) >= 2 or isinstance(expression, sympy.Pow)) and abs(complex(coefficient)) > 1e-6:
            return "monomial", powers
        return "other", None
    if expression in (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan, sympy.I, -sympy.I):
        return "not_real", None
    return "other", None


@lru_cache(maxsize=65536)
def _parsed_reading(key: str) -> tuple[str, Any]:
    """`_reading` of what math-verify parses from a normalised answer (cached); `("unparsed", None)` if nothing.
    Raises `_TimedOut` (not cached) when the parse or the reading runs past its deadline."""
    parsed = _parse_once(key)
    if parsed is None:
        return "unparsed", None
    try:
        return _deadline(_reading, parsed[0], key=("reading", key))
    except concurrent.futures.TimeoutError:
        MATCH_STATS.add("math_timeouts")
        raise _TimedOut from None
    except Exception:
        return "other", None


# One-variable inequalities and intervals with integer ends, read without math-verify (`_interval_reading`). The
# variable is one lower-case letter but `e` and `i`, which math-verify reads as Euler's number and the imaginary unit.
_VARIABLE = r"[a-df-hj-z]"
_END = r"-?(?:0|[1-9]\d{0,5})"
_CLOSED = {"<": False, ">": False, "\\le": True, "\\leq": True, "\\ge": True, "\\geq": True}
_FLIPPED = {"<": ">", ">": "<", "\\le": "\\ge", "\\leq": "\\geq", "\\ge": "\\le", "\\geq": "\\leq"}
_RELATION = re.compile(rf"^(?:({_VARIABLE})(<|>|\\[lg]eq?)({_END})|({_END})(<|>|\\[lg]eq?)({_VARIABLE}))$")
_CHAIN = re.compile(rf"^({_END})(<|\\leq?)({_VARIABLE})(<|\\leq?)({_END})$")
_INTERVAL = re.compile(rf"^([(\[])({_END}|-\\infty),({_END}|\\infty)([)\]])$")
_MEMBER = re.compile(rf"^({_VARIABLE})\\in(.*)$")


def _interval_set(text: str) -> tuple | None:
    """(low, low closed, high, high closed) of `(2,\\infty)`, `[-1,3)`; None for anything else (and for `(3,1)`,
    a tuple to math-verify, or `(-\\infty,\\infty)`)."""
    match = _INTERVAL.match(text)
    if match is None:
        return None
    opening, low, high, closing = match.groups()
    low = -math.inf if low == "-\\infty" else int(low)
    high = math.inf if high == "\\infty" else int(high)
    if (low == -math.inf and opening == "[") or (high == math.inf and closing == "]") or not low < high:
        return None
    if low == -math.inf and high == math.inf:
        return None
    return low, opening == "[", high, closing == "]"


@lru_cache(maxsize=65536)
def _interval_reading(key: str) -> tuple[str, str | None, tuple] | None:
    """`(kind, variable, set)` of a one-variable inequality (`x>2`, `2<x`, `-1<x\\leq3`: kind `"relation"`), an
    interval (`(2,\\infty)`, `[0,1)`: `"interval"`, no variable) or a membership (`x\\in(2,\\infty)`: `"member"`),
    with integer ends; the set is as `_interval_set` gives it. None for anything else."""
    match = _RELATION.match(key)
    if match:
        if match.group(1):  # x > 2
            variable, operator, end = match.group(1), match.group(2), int(match.group(3))
        else:  # 2 < x is x > 2
            end, operator, variable = int(match.group(4)), match.group(5), match.group(6)
            operator = _FLIPPED[operator]
        closed = _CLOSED[operator]
        if operator in (">", "\\ge", "\\geq"):
            return "relation", variable, (end, closed, math.inf, False)
        return "relation", variable, (-math.inf, False, end, closed)
    match = _CHAIN.match(key)
    if match:
        low, low_operator, variable, high_operator, high = match.groups()
        if int(low) >= int(high):
            return None
        return "relation", variable, (int(low), _CLOSED[low_operator], int(high), _CLOSED[high_operator])
    match = _MEMBER.match(key)
    if match:
        interval = _interval_set(match.group(2))
        return None if interval is None else ("member", match.group(1), interval)
    interval = _interval_set(key)
    return None if interval is None else ("interval", None, interval)


def _interval_verdict(a: str, b: str) -> bool | None:
    """For two answers that `_interval_reading` reads: whether math-verify finds them equal in either argument order.

    Different sets are never equal. The same set is equal when one side is an interval (math-verify reads an
    inequality given as gold, and `x\\in I`, as its set: `x>2` = `(2,\\infty)`), or for an inequality against a
    membership, or for two inequalities in the same variable (`x>2`, `2<x`); otherwise math-verify decides.
    """
    reading_a, reading_b = _interval_reading(a), _interval_reading(b)
    if reading_a is None or reading_b is None:
        return None
    (kind_a, variable_a, set_a), (kind_b, variable_b, set_b) = reading_a, reading_b
    if set_a != set_b:
        return False
    if "interval" in (kind_a, kind_b) or {kind_a, kind_b} == {"relation", "member"}:
        return True
    return True if kind_a == kind_b == "relation" and variable_a == variable_b else None


def _key_reading(key: str) -> tuple[str, Any]:
    """`_reading` of a normalised answer; numbers in LaTeX (`latex_value`), single letters, one-variable inequalities
    and intervals (`_interval_reading`) are read without parsing (math-verify reads every letter as a one-letter
    symbol, except `e` (Euler's number) and `I`; an inequality is a `"relation"`, an interval a `"collection"`)."""
    value = latex_value(key)
    if value is not None:
        return "number", value
    if _is_letter(key) and key not in ("e", "I"):
        return "symbol", key
    interval = _interval_reading(key)
    if interval is not None:
        return ("collection", None) if interval[0] == "interval" else ("relation", None)
    return _parsed_reading(key)


def _reading_verdict(a: str, b: str) -> bool | None:
    """False when the two answers' readings rule out equality (see `_NEVER_EQUAL`, `_reading`); None when
    math-verify must compare."""
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
    """(equal, whether math-verify raised) for two keys; raises `_TimedOut`, so that a timeout is never cached."""
    if len(a) > MAX_MATH_LENGTH or len(b) > MAX_MATH_LENGTH:
        MATCH_STATS.add("math_skipped_long")
        return False, False
    if _reading_verdict(a, b) is False:
        MATCH_STATS.add("math_ruled_out")
        return False, False
    parsed_a, parsed_b = _parse_once(a), _parse_once(b)
    if parsed_a is None or parsed_b is None:
        return False, False
    try:  # one deadline for the pair, both orders included
        return _deadline(_mv_verify_either_order, parsed_a, parsed_b, key=("verify", a, b))
    except concurrent.futures.TimeoutError:
        MATCH_STATS.add("math_timeouts")
        raise _TimedOut from None
    except Exception:
        return False, True


def _math_equal_keys(a: str, b: str) -> bool:
    """math-verify's verdict on two keys. A comparison that raised is "not equal" and counted in `MATCH_STATS` at
    every call; one that timed out (its parse included) is "not equal" this time, counted, and tried again at the
    next call: a timeout says nothing about the answers (a cold first parse can take seconds)."""
    try:
        equal, raised = _math_verdict(a, b)
    except _TimedOut:
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
    return False if values_compare(float(_as_number(a)), float(_as_number(b))) is False else None


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
    if _as_number(a) is not None and _as_number(b) is not None:
        return _plain_numbers_verdict(a, b)
    if _is_letter(a) and _is_letter(b):  # distinct choice letters
        return False
    value_a, value_b = latex_value(a), latex_value(b)
    if value_a is not None and value_b is not None:  # numbers in LaTeX: `2\sqrt{3}`, `\sqrt{12}`, `\frac{\pi}{2}`
        return values_compare(value_a, value_b)
    verdict = _interval_verdict(a, b)  # `x>2`, `(2,\infty)`
    if verdict is not None:
        return verdict
    prose_a, prose_b = _is_prose(a), _is_prose(b)
    if prose_a and prose_b:  # products of the same letters may be equal (`ab`, `ba`, `\text{ab}`); others are not
        return None if sorted(a.lower()) == sorted(b.lower()) else False
    if (prose_a and (value_b is not None or _is_letter(b) or _interval_reading(b) is not None)) or (
        prose_b and (value_a is not None or _is_letter(a) or _interval_reading(a) is not None)
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
