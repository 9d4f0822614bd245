"""Seeded fuzz of answer matching on expressions with variables, units and equations, against math-verify.

Every answer is generated together with what it means under the matcher's rules (`self_evolve_trl.answers`): a
trailing unit is dropped only after a plain number (`12 cm`, `12cm`, `3 h`, `25\\%`; `3h` is a product) or where it
is marked as text (`(x+2)\\text{ cm}`); a letter in an expression is a variable (`2+3h`); `x = E` with one variable
on the left means E; any other equation (`2x + y = 1`, `1 = 2x+y`) stays an equation, equal only to an equation with
the same solutions.
Answers of a few such families (and confusers: `2+3h` next to `5`, `2x+y=1` next to `1`) are drawn into groups of 8,
and every pair in a group is judged three ways:

- ours: `is_equivalent(a, b)` (`match="math"`: the normaliser, the fast paths, math-verify with a deadline);
- math-verify on the raw strings, as its users call it (default extraction configs, its own unit removal on), in
  either argument order, no deadline;
- the construction (what the two answers mean).

Printed: our errors against the construction (goal: 0), and every pair where we and math-verify disagree, each put
down to the rule that makes them differ (math-verify agrees with the construction there: "unexplained"; goal 0).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/answer_fuzz.py            # --groups 100 --seed 0

The figures are printed last.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from collections import Counter

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package here, if not installed

# Variables, among them letters that are also units (h, m, s, g, t).
VARIABLES = ["x", "y", "a", "b", "h", "m", "s", "g", "t"]
UNITS = ["cm", "m", "h", "km", "s", "kg", "g", "meters", "hours", "apples", "units"]


def _term_latex(rng: random.Random, coefficient: int, variable: str | None, power: int) -> str:
    """One term without its sign: `3h`, `3 h`, `3\\cdot h`, `h^2`, `7`."""
    if variable is None:
        return str(coefficient)
    factor = variable if power == 1 else rng.choice([f"{variable}^{power}", f"{variable}^{{{power}}}"])
    if coefficient == 1:
        return factor
    return rng.choice([f"{coefficient}{factor}", f"{coefficient} {factor}", f"{coefficient}\\cdot {factor}"])


def _sum_latex(rng: random.Random, terms: list[tuple[int, str | None, int]]) -> str:
    """The terms in a random order, with their signs."""
    terms = rng.sample(terms, len(terms))
    parts = []
    for i, (coefficient, variable, power) in enumerate(terms):
        text = _term_latex(rng, abs(coefficient), variable, power)
        sign = "-" if coefficient < 0 else ("+" if i else "")
        parts.append(sign + rng.choice(["", " "]) + text if i else sign + text)
    return rng.choice(["", " "]).join(parts)


def _sympy_sum(terms):
    import sympy

    return sympy.Add(*(c * (sympy.Symbol(v) ** p if v else 1) for c, v, p in terms))


def _random_terms(rng: random.Random, n_variables: int) -> list[tuple[int, str | None, int]]:
    variables = rng.sample(VARIABLES, n_variables)
    terms = [(rng.choice([1, 2, 3, 4, 5, 7, -1, -2, -3]), v, rng.choice([1, 1, 1, 2])) for v in variables]
    if rng.random() < 0.8 or not terms:
        terms.append((rng.randint(1, 9), None, 1))
    return terms


def _family(rng: random.Random, kind: str):
    """(meaning, spellings, confusers): confusers are (meaning, spellings) of answers made to look alike."""
    import sympy

    if kind == "number":
        n = rng.choice([*range(2, 30), 100, 1200, 2024])
        spellings = [str(n), f"{n} {rng.choice(UNITS)}", f"{n}{rng.choice(['cm', 'km', 'kg', 'mm'])}",
                     f"{n}\\text{{ {rng.choice(UNITS)}}}", f"{n}\\,\\mathrm{{m}}^2", f"x = {n}",
                     f"\\theta = {n}^\\circ", f"{n}\\%", f"{{{n}}}", f"{n}.0 cm"]
        if n >= 1000:
            spellings.append(f"{n:,} m")
        return ("expr", sympy.Integer(n)), spellings, []
    if kind == "expression":  # a sum with variables; the confuser is the sum with its letters dropped
        terms = _random_terms(rng, rng.choice([1, 1, 2]))
        meaning = _sympy_sum(terms)
        lhs_variable = rng.choice([v for v in ("y", "z", "k") if v not in {t[1] for t in terms}])
        spellings = [_sum_latex(rng, terms) for _ in range(3)]
        spellings += [f"{lhs_variable} = {_sum_latex(rng, terms)}", f"({_sum_latex(rng, terms)})\\text{{ cm}}",
                      f"${_sum_latex(rng, terms)}$"]
        dropped = sum(c for c, _, _ in terms)
        return ("expr", meaning), spellings, [(("expr", sympy.Integer(dropped)), [str(dropped), f"{dropped} h"])]
    if kind == "equation":  # lhs not a single variable; the confuser is the right-hand side
        terms = _random_terms(rng, 2)
        terms = [t for t in terms if t[1]] or terms
        rhs = rng.randint(-3, 9)
        lhs = _sympy_sum(terms)
        spellings = [f"{_sum_latex(rng, terms)} = {rhs}" for _ in range(3)]
        spellings += [f"{rhs} = {_sum_latex(rng, terms)}",
                      f"{_sum_latex(rng, [(2 * c, v, p) for c, v, p in terms])} = {2 * rhs}"]
        return ("eq", lhs - rhs), spellings, [(("expr", sympy.Integer(rhs)), [str(rhs), f"x = {rhs}"])]
    # a percent sign inside an expression: math-verify's reading (n/100), not a unit
    c, k = rng.randint(1, 9), rng.randint(1, 9)
    meaning = sympy.Rational(100 * c + k, 100)
    spellings = [f"{c}+{k}\\%", f"{k}\\% + {c}", f"{float(meaning)}"]
    return ("expr", meaning), spellings, [(("expr", sympy.Integer(c + k)), [str(c + k), f"{c}+{k}"])]


def same_meaning(m1, m2) -> bool:
    import sympy

    (kind1, e1), (kind2, e2) = m1, m2
    if kind1 != kind2:
        return False
    if kind1 == "expr":
        return sympy.expand(e1 - e2) == 0
    ratio = sympy.simplify(e1 / e2)  # the same equation up to a non-zero factor
    return ratio.is_number and ratio != 0


def make_groups(n_groups: int, seed: int, group_size: int = 8) -> list[list[tuple[str, tuple]]]:
    """Groups of (answer, meaning): each from one or two families and their confusers."""
    rng = random.Random(seed)
    groups = []
    for _ in range(n_groups):
        pool = []
        for kind in rng.sample(["number", "expression", "equation", "percent"], rng.choice([1, 2])):
            meaning, spellings, confusers = _family(rng, kind)
            pool += [(s, meaning) for s in spellings]
            pool += [(s, m) for m, ss in confusers for s in ss]
        groups.append(rng.sample(pool, min(group_size, len(pool))))
    return groups


def _raw_math_verify():
    """math-verify as its users call it: default configs (its unit removal on), both argument orders."""
    from math_verify import parse, verify

    from self_evolve_trl.answers.verify import silence_timeout_warnings

    silence_timeout_warnings()
    parsed = {}

    def parse_once(s):
        if s not in parsed:
            try:
                parsed[s] = parse(f"${s}$", parsing_timeout=None) or None
            except Exception:
                parsed[s] = None
        return parsed[s]

    def equal(a, b):
        pa, pb = parse_once(a), parse_once(b)
        if pa is None or pb is None:
            return False
        return any(bool(verify(g, t, timeout_seconds=None)) for g, t in ((pa, pb), (pb, pa)))

    return equal


EQUATION = "an equation is not its right-hand side (math-verify: equal with the number as gold)"
PERCENT = "a percent sign after a plain number is a unit (math-verify: n/100)"
UNIT_REMOVAL = "a letter in an expression is a variable (math-verify's unit removal drops it: 2+3h = 5)"
ASSIGNMENT = "x = E is E (math-verify: assignments to two variables differ, x=10 ~ \\theta=10)"
OTHER = "math-verify differs from the construction otherwise"


def _reason(a: str, b: str, ma, mb) -> str:
    """The rule that makes our verdict differ from math-verify's, where ours is the construction's."""
    if {ma[0], mb[0]} == {"eq", "expr"}:
        return EQUATION
    if any(re.fullmatch(r"\d+\\%", s) for s in (a, b)):
        return PERCENT
    if ma[0] == mb[0] == "expr" and "=" in a and "=" in b:
        return ASSIGNMENT
    if _drops_a_variable(a, ma) or _drops_a_variable(b, mb):
        return UNIT_REMOVAL
    return OTHER


def _drops_a_variable(answer: str, meaning) -> bool:
    """Whether math-verify's parse of `answer` (default configs) has fewer variables than the answer means, or has
    none where the matcher's (math-verify with its unit removal off) has one: `s^2 + 4\\cdot t` loses its `t`, and
    `s^2 + 4\\cdot` is not parsed."""
    from math_verify import parse
    from sympy import Eq, Symbol

    from self_evolve_trl.answers.verify import mv_parse

    try:
        parsed = parse(f"${answer}$", parsing_timeout=None)
        if not parsed or isinstance(parsed[0], str):
            parsed = mv_parse(answer)
            return bool(parsed) and not isinstance(parsed[0], str)
    except Exception:
        return False
    expression = parsed[0]
    if isinstance(expression, Eq) and isinstance(expression.lhs, Symbol):  # `k = E` means E
        expression = expression.rhs
    if not hasattr(expression, "free_symbols"):
        return False
    return {str(s) for s in expression.free_symbols} < {str(s) for s in meaning[1].free_symbols}


def warm_up():
    """math-verify's imports and parser warmed up with no deadline: a cold first parse can take seconds, and a
    comparison that times out would count here as a disagreement."""
    from self_evolve_trl.answers.verify import mv_parse, mv_verify

    mv_verify(mv_parse("x+1"), mv_parse("1+x"))
    _raw_math_verify()("x+1", "1+x")


def fuzz(n_groups: int, seed: int) -> dict:
    """Every pair of every group judged three ways; see the module docstring."""
    from self_evolve_trl.answers import MATCH_STATS, is_equivalent

    math_verify_equal = _raw_math_verify()
    MATCH_STATS.snapshot(reset=True)
    pairs = truth_equal = 0
    ours_wrong, disagreements, unexplained = [], Counter(), []
    examples: dict[str, tuple[str, str]] = {}
    for group in make_groups(n_groups, seed):
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                (a, ma), (b, mb) = group[i], group[j]
                pairs += 1
                truth = same_meaning(ma, mb)
                truth_equal += truth
                ours = is_equivalent(a, b)
                if ours != truth:
                    ours_wrong.append((a, b, ours))
                if ours != math_verify_equal(a, b):
                    if ours == truth:
                        reason = _reason(a, b, ma, mb)
                        disagreements[reason] += 1
                        examples.setdefault(reason, (a, b))
                    else:
                        unexplained.append((a, b, ours))
    return {"pairs": pairs, "truth_equal": truth_equal, "ours_wrong": ours_wrong, "disagreements": disagreements,
            "examples": examples, "unexplained": unexplained, "stats": MATCH_STATS.snapshot()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds allowed to one math-verify call of ours (the trainer's: 2): the fuzz checks "
                             "readings, and a loaded machine would turn slow comparisons into 'not equal'")
    args = parser.parse_args()

    from self_evolve_trl.answers import verify

    verify.MATH_TIMEOUT_SECONDS = args.timeout

    warm_up()
    start = time.perf_counter()
    result = fuzz(args.groups, args.seed)
    seconds = time.perf_counter() - start
    for a, b, ours in result["ours_wrong"][:20]:
        print(f"  ours {'merges' if ours else 'splits'}: {a!r} ~ {b!r}")
    for a, b, ours in result["unexplained"][:20]:
        print(f"  unexplained: ours {ours}, math-verify {not ours}: {a!r} ~ {b!r}")
    for reason, (a, b) in result["examples"].items():
        print(f"  e.g. {a!r} ~ {b!r}: {reason}")
    print(f"math-verify work (ours): {result['stats']}")
    print()
    disagreeing = sum(result["disagreements"].values()) + len(result["unexplained"])
    print(f"figures (seed {args.seed}, {args.groups} groups of 8, {seconds:.1f} s, math-verify deadline "
          f"{args.timeout:g} s, timeouts {result['stats'].get('math_timeouts', 0)}):")
    print(f"  pairs {result['pairs']}, equal by construction {result['truth_equal']}")
    print(f"  ours against the construction: wrong {len(result['ours_wrong'])}")
    print(f"  ours against math-verify on the raw strings: disagree {disagreeing}")
    for reason, count in sorted(result["disagreements"].items()):
        print(f"    {count:5d}  {reason}")
    print(f"    {len(result['unexplained']):5d}  unexplained (math-verify agrees with the construction)")


if __name__ == "__main__":
    main()
