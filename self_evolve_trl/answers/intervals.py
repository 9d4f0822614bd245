"""One-variable inequalities and intervals with integer ends, read and compared without math-verify.

`interval_reading(key)` reads `x>2`, `2<x`, `-1<x\\leq3`, `(2,\\infty)`, `[0,1)` and `x\\in(2,\\infty)` as sets;
`interval_verdict(a, b)` decides, as math-verify would in either argument order, what two such answers can be decided
on: `x>2` = `2<x` = `(2,\\infty)`, `x>2` != `x\\geq2`. Anything else is left to math-verify.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache


# One-variable inequalities and intervals with integer ends, read without math-verify (`interval_reading`). The
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
def interval_reading(key: str) -> tuple[str, str | None, tuple] | None:
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


def interval_verdict(a: str, b: str) -> bool | None:
    """For two answers that `interval_reading` reads: whether math-verify finds them equal in either argument order.

    Different sets are never equal. The same set is equal when one side is an interval (math-verify reads an
    inequality given as gold, and `x\\in I`, as its set: `x>2` = `(2,\\infty)`), or for an inequality against a
    membership, or for two inequalities in the same variable (`x>2`, `2<x`); otherwise math-verify decides.
    """
    reading_a, reading_b = interval_reading(a), interval_reading(b)
    if reading_a is None or reading_b is None:
        return None
    (kind_a, variable_a, set_a), (kind_b, variable_b, set_b) = reading_a, reading_b
    if set_a != set_b:
        return False
    if "interval" in (kind_a, kind_b) or {kind_a, kind_b} == {"relation", "member"}:
        return True
    return True if kind_a == kind_b == "relation" and variable_a == variable_b else None
