"""Answer-matching throughput: soft_frequency rewards for 512 prompts x 8 completions (issue 8).

Measures, on one generation batch of realistic completions (seeded):

1. ours, cold: `soft_frequency(..., match="math")` with every cache of `self_evolve_trl.answers` cleared first
   (math-verify already imported), then warm: the same call again with the caches filled;
2. the released codebases' approach: mathruler's `extract_boxed_content`, exact-string counting
   (`Counter.most_common`), then `grade_answer(a_i, majority)` for every completion (MM-UPT / Self-Judge);
   skipped, with a message, when mathruler is not installed (`pip install -e .[bench]`);
3. agreement of our classes with brute force: every pair of answers in a group compared with math-verify (on the raw
   strings, and on our normalised keys with no fast path). A pair that brute force finds equal but that our classes
   split is a *lost equivalence* (goal: none); a pair that we merge but that brute force never finds equal directly
   is reported as a merge through a third answer. Since brute force also accepts equal normalised keys, a wrong merge
   by our normaliser would not show there: the batch also records which value every answer spells, and our classes
   are checked against that too (pairs of one value split, pairs of different values merged; goal: none).

Goals: the whole batch in at most 1 s on one core, no slower than the released approach, no lost equivalences.
Run on one core:

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/answer_matching.py          # --repeats 3

The figures are printed last.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from fractions import Fraction

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package here, if not installed


# ----------------------------------------------------------------------------------------------------------------
# A realistic generation batch


def _int_spellings(n: int) -> list[str]:
    spellings = [str(n), f"{n}.0", f"{{{n}}}", f"x = {n}", f"\\text{{{n}}}", f"{n} cm", f"${n}$", f"{n}."]
    if abs(n) >= 1000:
        spellings.append(f"{n:,}")
    return spellings


def _rational_spellings(value: Fraction) -> list[str]:
    p, q = value.numerator, value.denominator
    sign = "-" if p < 0 else ""
    p = abs(p)
    spellings = [
        f"{sign}\\frac{{{p}}}{{{q}}}",
        f"{sign}{p}/{q}",
        f"{sign}\\dfrac{{{p}}}{{{q}}}",
        f"{sign}\\tfrac{{{p}}}{{{q}}}",
        f"{sign}\\frac{{{2 * p}}}{{{2 * q}}}",  # unreduced
    ]
    if p < 10 and q < 10:
        spellings.append(f"{sign}\\frac{p}{q}")  # \frac12
    decimal = float(value)
    if Fraction(repr(decimal)) == value:  # terminating: 2.5 = 5/2
        spellings += [repr(decimal), f"{decimal:.2f}" if len(repr(decimal)) < 5 else repr(decimal), f"{decimal} m"]
    else:  # rounded to 6 decimals, which math-verify takes for the fraction: 0.333333 = 1/3, 1.666667 = 5/3
        spellings.append(f"{decimal:.6f}")
    return spellings


def _surd_spellings(k: int, m: int) -> list[str]:
    return [
        f"{k}\\sqrt{{{m}}}", f"\\sqrt{{{k * k * m}}}", f"{k} \\sqrt{{{m}}}", f"{k}\\sqrt{m}", f"{k}\\cdot\\sqrt{{{m}}}"
    ]


def _pi_spellings(p: int, q: int) -> list[str]:
    if q == 1:
        return [f"{p}\\pi", f"{p} \\pi", f"\\pi \\cdot {p}", f"{p}\\pi \\text{{ cm}}^2"]
    return [f"\\frac{{{p}\\pi}}{{{q}}}", f"{p}\\pi/{q}", f"\\frac{{{p}}}{{{q}}}\\pi", f"\\dfrac{{{p} \\pi}}{{{q}}}"]


def _root_fraction_spellings(m: int, q: int) -> list[str]:
    return [
        f"\\frac{{\\sqrt{{{m}}}}}{{{q}}}", f"\\sqrt{{{m}}}/{q}", f"\\frac{{1}}{{{q}}}\\sqrt{{{m}}}",
        f"\\dfrac{{\\sqrt{m}}}{{{q}}}",
    ]


def _degree_spellings(d: int) -> list[str]:
    return [f"{d}°", f"{d}^\\circ", f"{d}^{{\\circ}}", str(d), f"{d} degrees", f"{d}\\degree", f"{d}^{{\\circ }}"]


def _choice_spellings(letter: str) -> list[str]:
    return [letter, f"({letter})", f"{letter}.", f"\\text{{{letter}}}", letter.lower(), f"({letter.lower()})",
            f"\\text{{({letter})}}", f"\\mathrm{{{letter}}}"]


def _interval_spellings(kind: str, a: int, b: int | None = None) -> list[str]:
    """An inequality and its solution set, as math-verify reads them equal (`x>2`, `(2,\\infty)`, `2<x`)."""
    if kind == "gt":
        return [f"x>{a}", f"x > {a}", f"({a},\\infty)", f"{a}<x", f"({a}, \\infty)", f"x\\in({a},\\infty)"]
    if kind == "ge":
        return [f"x\\geq {a}", f"x \\ge {a}", f"[{a},\\infty)", f"x\\geq{a}", f"[{a}, \\infty)"]
    if kind == "lt":
        return [f"x<{a}", f"x < {a}", f"(-\\infty,{a})", f"{a}>x", f"(-\\infty, {a})"]
    return [f"{a}<x<{b}", f"({a},{b})", f"{a} < x < {b}", f"({a}, {b})"]


def _answer_family(rng: random.Random):
    """A question's true answer and two wrong ones, each as a list of equivalent spellings, and the value each list
    spells (a key that is equal exactly when the values are: two wrong answers may equal each other, e.g. 2π and
    8π/4)."""
    kind = rng.choices(
        ["integer", "decimal", "fraction", "surd", "pi", "root_fraction", "degrees", "choice", "interval"],
        weights=[22, 8, 12, 8, 6, 4, 16, 24, 5],
    )[0]
    if kind == "integer":
        values = rng.sample([*range(-20, 60), 100, 120, 144, 360, 1200, 2024, 15000], 3)
        return kind, [_int_spellings(v) for v in values], values
    if kind == "decimal":
        values = rng.sample([Fraction(n, d) for n in range(1, 40) for d in (2, 4, 5, 8) if n % d], 3)
        return kind, [_rational_spellings(v) for v in values], values
    if kind == "fraction":
        values = rng.sample([Fraction(n, d) for d in (3, 6, 7, 9, 11, 12) for n in range(-5, 20) if n % d], 3)
        return kind, [_rational_spellings(v) for v in values], values
    if kind == "surd":
        values = rng.sample([(k, m) for k in (2, 3, 4, 5, 6) for m in (2, 3, 5, 6, 7)], 3)
        return kind, [_surd_spellings(k, m) for k, m in values], [("surd", k * k * m) for k, m in values]
    if kind == "pi":
        values = rng.sample([(p, q) for p in (1, 2, 3, 4, 5, 8, 9, 16) for q in (1, 2, 3, 4, 6)], 3)
        return kind, [_pi_spellings(p, q) for p, q in values], [("pi", Fraction(p, q)) for p, q in values]
    if kind == "root_fraction":
        values = rng.sample([(m, q) for m in (2, 3, 5, 7) for q in (2, 3, 4)], 3)
        return kind, [_root_fraction_spellings(m, q) for m, q in values], [("root", m, q) for m, q in values]
    if kind == "degrees":
        values = rng.sample(range(10, 180, 5), 3)
        return kind, [_degree_spellings(v) for v in values], values
    if kind == "interval":
        values = rng.sample([(k, a) for k in ("gt", "ge", "lt") for a in (-3, -1, 0, 1, 2, 3, 5)]
                            + [("between", a, b) for a in (-2, -1, 0, 1) for b in (1, 2, 4) if a < b], 3)
        return kind, [_interval_spellings(*v) for v in values], [("interval", *v) for v in values]
    letters = rng.sample("ABCDE", 3)
    return kind, [_choice_spellings(letter) for letter in letters], letters


_WORDS = ("so the angle is", "therefore", "we get", "by the Pythagorean theorem", "the area equals", "hence",
          "substituting x =", "triangle ABC has sides", "which gives", "the ratio is", "the radius is")
_GARBAGE = ("I cannot determine the answer", "", "see the reasoning above", "x^2 + 3x - \\frac{y}{2} = \\sqrt{z}",
            "\\text{The answer is not among the options}", "undefined", "???", "\\frac{1}{", "2, 3, 5",
            "\\angle ABC", "A and C", "n/a", "\\infty", "None")


def _reasoning(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(4, 40)):
        parts.append(f"{rng.choice(_WORDS)} {rng.randint(0, 500)}")
    return ", ".join(parts)


def make_batch(n_prompts: int = 512, group_size: int = 8, seed: int = 0) -> list[str]:
    """`n_prompts * group_size` completions, group after group: mostly the true answer in varied spellings, some
    wrong answers (also in varied spellings), some completions without a final answer, some garbage."""
    return make_labelled_batch(n_prompts, group_size, seed)[0]


def make_labelled_batch(n_prompts: int = 512, group_size: int = 8, seed: int = 0) -> tuple[list[str], list]:
    """`make_batch`'s completions and, for each, the value its answer spells (every spelling of a value is equal by
    construction), "garbage" or None (no answer)."""
    rng = random.Random(seed)
    completions, values = [], []
    for _ in range(n_prompts):
        _, (right, *wrong), keys = _answer_family(rng)
        accuracy = rng.random()  # some questions are easy, some hard
        for _ in range(group_size):
            roll = rng.random()
            if roll < 0.08:
                completions.append(f"<think>{_reasoning(rng)}</think> I am not sure.")  # abstention
                values.append(None)
                continue
            if roll < 0.12:
                answer, value = rng.choice(_GARBAGE), "garbage"
            elif roll < 0.12 + 0.88 * accuracy:
                answer, value = rng.choice(right), keys[0]
            else:
                index = rng.randrange(len(wrong))  # the same draw as rng.choice(wrong)
                answer, value = rng.choice(wrong[index]), keys[1 + index]
            completions.append(f"<think>{_reasoning(rng)}</think> The answer is $\\boxed{{{answer}}}$.")
            values.append(value)
    return completions, values


# ----------------------------------------------------------------------------------------------------------------
# The three contenders


def clear_caches():
    from self_evolve_trl.answers import clear_caches as clear_answer_caches

    clear_answer_caches()


def ours(completions, group_size):
    from self_evolve_trl.rewards.consistency import soft_frequency

    return soft_frequency(completions, group_size=group_size, match="math")


def released(completions, group_size):
    """MM-UPT's reward (Self-Judge counts the same strings): exact-string majority, then grade_answer against it."""
    from mathruler.grader import extract_boxed_content, grade_answer

    rewards = []
    for start in range(0, len(completions), group_size):
        answers = [extract_boxed_content(c).strip() for c in completions[start : start + group_size]]
        majority = Counter(answers).most_common(1)[0][0]
        rewards.extend(1.0 if grade_answer(a, majority) else 0.0 for a in answers)
    return rewards


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def brute_force_pairs(completions, group_size):
    """(group, i, j) of every pair of answers in a group that brute force finds equal: the same stripped string, the
    same normalised key, or math-verify (either argument order, no deadline, no shortcut) finds the raw strings or
    the normalised keys equal. Each distinct pair of strings is compared once."""
    from self_evolve_trl.answers import extract_answer, normalize_answer
    from self_evolve_trl.answers.verify import mv_parse, mv_verify

    parsed, verdicts = {}, {}

    def parse(s):
        if s not in parsed:
            try:
                parsed[s] = mv_parse(s) or None
            except Exception:
                parsed[s] = None
        return parsed[s]

    def mv_equal(a, b):
        if (a, b) not in verdicts:
            pa, pb = parse(a), parse(b)
            equal = False
            for gold, target in ((pa, pb), (pb, pa)):
                try:
                    equal = equal or bool(gold and target and mv_verify(gold, target))
                except Exception:
                    pass
            verdicts[a, b] = verdicts[b, a] = equal
        return verdicts[a, b]

    equal = set()
    answers = [extract_answer(c) for c in completions]
    for g, start in enumerate(range(0, len(answers), group_size)):
        group = answers[start : start + group_size]
        for i in range(group_size):
            for j in range(i + 1, group_size):
                a, b = group[i], group[j]
                if a is None or b is None:
                    continue
                ka, kb = normalize_answer(a), normalize_answer(b)
                if a.strip() == b.strip() or ka == kb or mv_equal(a, b) or mv_equal(ka, kb):
                    equal.add((g, i, j))
    return equal, answers


def class_agreement(completions, group_size):
    from self_evolve_trl.answers import answer_classes

    clear_caches()
    equal, answers = brute_force_pairs(completions, group_size)
    clear_caches()
    lost, merged_through_third, pairs = [], 0, 0
    for g, start in enumerate(range(0, len(answers), group_size)):
        group = answers[start : start + group_size]
        classes = answer_classes(group)
        for i in range(group_size):
            for j in range(i + 1, group_size):
                if classes[i] is None or classes[j] is None:
                    continue
                pairs += 1
                same = classes[i] == classes[j]
                if (g, i, j) in equal and not same:
                    lost.append((group[i], group[j]))
                elif same and (g, i, j) not in equal:
                    merged_through_third += 1
    return pairs, len(equal), lost, merged_through_third


def construction_agreement(n_prompts: int, group_size: int, seed: int):
    """Our classes against the values the answers spell by construction (garbage and abstentions left out):
    (pairs of the same value, of them split by us, pairs of different values, of them merged by us, examples)."""
    from self_evolve_trl.answers import answer_classes, extract_answer

    clear_caches()
    completions, values = make_labelled_batch(n_prompts, group_size, seed)
    same = split = different = merged = 0
    examples = []
    for start in range(0, len(completions), group_size):
        group = [extract_answer(c) for c in completions[start : start + group_size]]
        classes = answer_classes(group)
        value = values[start : start + group_size]
        for i in range(group_size):
            for j in range(i + 1, group_size):
                if any(v is None or v == "garbage" for v in (value[i], value[j])):
                    continue
                together = classes[i] is not None and classes[i] == classes[j]
                if value[i] == value[j]:
                    same += 1
                    split += not together
                    if not together:
                        examples.append(("split", group[i], group[j]))
                else:
                    different += 1
                    merged += together
                    if together:
                        examples.append(("merged", group[i], group[j]))
    return same, split, different, merged, examples


# ----------------------------------------------------------------------------------------------------------------


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):7.3f}  ({min(times):.3f} - {max(times):.3f})"


def _fresh_process_seconds(contender: str, args) -> float:
    """Seconds of one call of `contender` on the seed-0 batch, first thing in a new Python process."""
    command = [sys.executable, __file__, "--worker", contender, "--prompts", str(args.prompts),
               "--group-size", str(args.group_size), "--seed", str(args.seed)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _worker(args):
    completions = make_batch(args.prompts, args.group_size, args.seed)
    fn = ours if args.worker == "ours" else released
    if args.worker == "ours":
        import math_verify  # noqa: F401  (imports are not timed; everything after them is)
    else:
        import mathruler.grader  # noqa: F401
    print(timed(fn, completions, args.group_size)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each measurement (median, range)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch that brute force checks")
    parser.add_argument("--skip-brute-force", action="store_true")
    parser.add_argument("--skip-released", action="store_true", help="leave out the mathruler comparison")
    parser.add_argument("--worker", choices=["ours", "released"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)

    from self_evolve_trl.answers import MATCH_STATS, extract_answer

    try:
        import mathruler.grader  # noqa: F401
    except ImportError as error:
        has_released = False
        released_note = f"skipped: mathruler is not installed ({error}); pip install -e .[bench]"
    else:
        has_released, released_note = True, ""
    if args.skip_released:
        has_released, released_note = False, "skipped (--skip-released)"

    # 1. the first batch of a process: our caches and math-verify's parser (and sympy's caches) all cold
    fresh = {"ours": [], "released": []}
    for _ in range(args.repeats):
        for contender in ("ours", "released") if has_released else ("ours",):
            fresh[contender].append(_fresh_process_seconds(contender, args))

    # 2. a new batch in a process that has matched answers before (libraries warm): our caches cleared;
    # 3. the same batch again (our caches warm)
    ours(make_batch(64, args.group_size, seed=10_000), args.group_size)
    if has_released:
        released(make_batch(64, args.group_size, seed=10_000), args.group_size)
    steady = {"ours": [], "released": [], "warm": []}
    for repeat in range(args.repeats):
        batch = make_batch(args.prompts, args.group_size, seed=args.seed + 1 + repeat)
        clear_caches()
        MATCH_STATS.snapshot(reset=True)
        steady["ours"].append(timed(ours, batch, args.group_size)[0])
        stats = MATCH_STATS.snapshot(reset=True)
        steady["warm"].append(timed(ours, batch, args.group_size)[0])
        if has_released:
            steady["released"].append(timed(released, batch, args.group_size)[0])

    agreement = None if args.skip_brute_force else class_agreement(
        make_batch(args.prompts, args.group_size, args.seed), args.group_size
    )
    construction = construction_agreement(args.prompts, args.group_size, args.seed)

    completions = make_batch(args.prompts, args.group_size, args.seed)
    answers = [extract_answer(c) for c in completions]
    print(f"batch (seed {args.seed}): {args.prompts} prompts x {args.group_size} completions = {len(completions)}; "
          f"{sum(a is None for a in answers)} without an answer; {len(set(a for a in answers if a))} distinct answers")
    print(f"math-verify work for one new batch in a warm process: {stats}")
    if agreement is not None:
        pairs, equal, lost, merged = agreement
        print(f"brute force (seed {args.seed}): {pairs} answer pairs, {equal} equal; our classes lose {len(lost)}, "
              f"merge {merged} through a third answer")
        for a, b in lost[:20]:
            print(f"  lost: {a!r} ~ {b!r}")
    same, split, different, merged_wrongly, examples = construction
    print(f"by construction (seed {args.seed}): {same} pairs spell the same value, our classes split {split}; "
          f"{different} pairs spell different values, our classes merge {merged_wrongly}")
    for kind, a, b in examples[:20]:
        print(f"  {kind}: {a!r} ~ {b!r}")
    print()
    print(f"figures (seconds for the whole batch of {len(completions)} completions; median (min - max) of "
          f"{args.repeats}):")
    print(f"  first batch in a fresh process       ours {_spread(fresh['ours'])}", end="")
    print(f"   released {_spread(fresh['released'])}" if has_released else "")
    print(f"  new batch, warm process, cold caches ours {_spread(steady['ours'])}", end="")
    print(f"   released {_spread(steady['released'])}" if has_released else "")
    print(f"  same batch again, warm caches        ours {_spread(steady['warm'])}")
    if has_released:
        first = statistics.median(fresh["ours"]) / statistics.median(fresh["released"])
        new = statistics.median(steady["ours"]) / statistics.median(steady["released"])
        print(f"  ratio ours / released: first batch {first:.3f}, new batch {new:.3f}")
    else:
        print(f"  released (mathruler)   {released_note}")
    if agreement is not None:
        print(f"  lost equivalences vs brute-force math-verify: {len(agreement[2])} (of {agreement[1]} equal pairs)")
    print(f"  against the values spelled: split {construction[1]} of {construction[0]} same-value pairs, merged "
          f"{construction[3]} of {construction[2]} different-value pairs")


if __name__ == "__main__":
    main()
