"""math-verify under a thread deadline, with its work counted in `MATCH_STATS`.

math-verify's own timeouts use `signal.alarm`, which fails off the main thread (one released trainer scored
everything 0 because of it). Here they are disabled and replaced by a deadline on a worker thread (`Deadline`): a
comparison that times out or raises counts as "not equal" and is counted in `MATCH_STATS` each time. A timeout is
never cached (the next comparison of the pair asks again), since it says nothing about the answers: the first parse of
a process can take seconds. math-verify's own unit removal is off too; it would read `2+3h` as 5.

- `parse_key(key)`: math-verify's parse of a normalised answer (cached), None when it cannot be parsed or timed out;
- `verify_keys(a, b)`: math-verify's verdict on two normalised answers, in both argument orders;
- `parsed_reading(key)`: what the parse of an answer is (a number, a product of symbols, a set, ...), as far as the
  shortcuts of `equivalence` need to know.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter
from functools import lru_cache
from typing import Any


# Seconds allowed for one math-verify parse or comparison.
MATH_TIMEOUT_SECONDS = 2.0


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


class TimedOut(Exception):
    """math-verify ran past its deadline: no verdict. Raised through the `lru_cache`d functions, which cache no
    call that raises, so a timed-out parse or comparison is never kept as a result."""


class Deadline:
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


_deadline = Deadline()


_warm = threading.Event()
_warm_lock = threading.Lock()


def warm_up():
    """math-verify's imports and first parse and comparison, once per process, with no deadline: they take seconds
    (5 on a loaded machine), which says nothing about the answers, and would otherwise time out the first ones."""
    if _warm.is_set():
        return
    with _warm_lock:
        if not _warm.is_set():
            mv_verify(mv_parse("x+1"), mv_parse("1+x"))
            _warm.set()


def silence_timeout_warnings():
    """math-verify warns once that its timeouts are off; they are off on purpose (see the module docstring)."""
    import math_verify.grader  # math-verify (and sympy) are slow to import: only once they are needed
    import math_verify.parser

    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True


def mv_parse(expression: str):
    """math-verify's parse, without its unit removal: `normalize_answer` drops the units (only after a plain
    number), while math-verify's would also drop a variable that looks like one (`2+3h` would read as 5)."""
    from latex2sympy2_extended import NormalizationConfig  # slow to import: only once math-verify is needed
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    silence_timeout_warnings()

    normalization = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True)
    return parse(
        f"${expression}$",
        extraction_config=[LatexExtractionConfig(normalization_config=normalization), ExprExtractionConfig()],
        parsing_timeout=None,
        raise_on_error=True,
    )


def mv_verify(gold, target) -> bool:
    """math-verify's `verify` of two parses, without its `signal.alarm` timeout; raises what it raises."""
    from math_verify import verify  # slow to import: only once math-verify is needed

    return bool(verify(gold, target, timeout_seconds=None, raise_on_error=True))


def _verify_either_order(a, b) -> tuple[bool, bool]:
    """`verify` in both argument orders, and whether an order raised: it is not symmetric (gold `x>2`, target
    `(2,\\infty)` is equal, the reverse is not: only an inequality given as gold is read as its set). The second
    order runs only when the first says no; an order that raises counts as "no"."""
    raised = False
    for gold, target in ((a, b), (b, a)):
        MATCH_STATS.add("math_verify")
        try:
            if mv_verify(gold, target):
                return True, False
        except Exception:
            raised = True
    return False, raised


@lru_cache(maxsize=65536)
def _parse_once(key: str):
    """math-verify's parse of a normalised answer, None when it cannot be parsed; raises `TimedOut` (not cached)."""
    MATCH_STATS.add("math_parse")
    try:
        warm_up()
        result = _deadline(mv_parse, key, key=("parse", key))
    except concurrent.futures.TimeoutError:
        MATCH_STATS.add("math_timeouts")
        raise TimedOut from None
    except Exception:
        MATCH_STATS.add("math_errors")
        return None
    return result or None


def parse_key(key: str):
    """math-verify's parse of a normalised answer (cached); None when it cannot be parsed or the parse timed out
    (a timed-out parse is counted and tried again at the next call)."""
    try:
        return _parse_once(key)
    except TimedOut:
        return None


def verify_keys(a: str, b: str) -> tuple[bool, bool]:
    """math-verify's verdict on two normalised answers, in either argument order: (equal, whether it raised); not
    equal when one of them cannot be parsed. Raises `TimedOut` (counted) when a parse or the comparison runs past its
    deadline."""
    parsed_a, parsed_b = _parse_once(a), _parse_once(b)
    if parsed_a is None or parsed_b is None:
        return False, False
    try:  # one deadline for the pair, both orders included
        return _deadline(_verify_either_order, parsed_a, parsed_b, key=("verify", a, b))
    except concurrent.futures.TimeoutError:
        MATCH_STATS.add("math_timeouts")
        raise TimedOut from None
    except Exception:
        return False, True


def _reading(expression) -> tuple[str, Any]:
    """The kind of a sympy expression parsed by math-verify, for the shortcuts of `equivalence`:

    - `("monomial", powers)`: a product of symbols (at least one, not a lone symbol) and numbers (`n/a`,
      `2\\pi c m^2`, `\\angle ABC`); `powers` maps each symbol to its (rational, non-zero) exponent;
    - `("symbol", name)`: a lone one-letter symbol (`D`);
    - `("not_real", None)`: infinity, NaN or the imaginary unit (`\\infty`, `I`);
    - `("collection", None)`: a set, tuple or interval of two or more elements (`2,3,5`);
    - `("equation", None)`: an equation whose left side is not a single variable (`2x+y=1`), or a chain of them;
    - `("other", None)`: anything else (sums, inequalities, floats, ...).
    An assignment `x = 12` (a single variable on the left) reads as its right-hand side.
    """
    import sympy  # slow to import: only once math-verify is needed

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
def parsed_reading(key: str) -> tuple[str, Any]:
    """`_reading` of what math-verify parses from a normalised answer (cached); `("unparsed", None)` if nothing.
    Raises `TimedOut` (not cached) when the parse or the reading runs past its deadline."""
    parsed = _parse_once(key)
    if parsed is None:
        return "unparsed", None
    try:
        return _deadline(_reading, parsed[0], key=("reading", key))
    except concurrent.futures.TimeoutError:
        MATCH_STATS.add("math_timeouts")
        raise TimedOut from None
    except Exception:
        return "other", None
