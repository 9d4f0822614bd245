"""Rule-based scoring of extracted answers, one function per answer format, and the benchmarks' aggregate metrics.

Formats:

- `choice`: one option letter. The prediction may be the letter in any common dress (`B`, `(B)`, `B.`, `B: 12`,
  `Option B`) or the content of the option (`12`, compared with the project's math-aware equivalence). The
  reference is read through the options too (`reference_letters`): a reference giving an option's text (`False`)
  is that option's letter; one naming several letters needs them all; one naming no option is compared as a value.
- `choices`: a set of letters (LogicVista: `A, C`); the prediction's letter set must equal the reference's. Only
  the letters offered count as letters (the listed options, else A-H), so `NO` or `BED` is not read as a set.
- `free`: a free-form answer, compared with `answers.is_equivalent(match="math")` (normalisation + math-verify).
- `float`: a number within an absolute tolerance of 1e-3 (DynaMath's rule; `\\pi` and surds are evaluated).

Aggregates (`summarize`): plain accuracy, DynaMath's average-case and worst-case accuracy over the variants of each
seed question, and WeMath's four-dimensional metrics and scores over its composite problems.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Iterable, Sequence

from ..answers import is_equivalent, normalize_answer, parse_key
from ..voting import GroupVote, vote


ANSWER_TYPES = ("choice", "choices", "free", "float")
FLOAT_TOLERANCE = 1e-3

_LETTER_PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is\s*)?:?\s*", re.IGNORECASE)
# `(b)`, or a capital letter alone or followed by punctuation or by option content that is not a lower-case word
_LETTER = re.compile(r"^\(([A-Za-z])\)|^([A-Z])(?=$|[.:)]|\s+[^a-z\s])")
_LETTER_RUN = re.compile(r"^[A-Z]{1,8}$")
OFFERED_LETTERS = "ABCDEFGH"  # the letters offered where the options are not listed (they are drawn in the image)
_LETTER_SPLIT = re.compile(r"\s*(?:,|;|/|&|\band\b|\s)\s*")


def _strip_latex_text(answer: str) -> str:
    answer = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", answer)
    return answer.replace("$", "").strip()


def choice_letter(answer: str | None, options: dict[str, str] | None = None, match: str = "math") -> str | None:
    """The option letter an extracted answer names, or None.

    A bare or dressed letter counts first; otherwise, when the options are known, the option whose content equals
    the answer.

    Example:

    ```python
    >>> [choice_letter(a) for a in ["B", "(c)", "D. 40", "Option A", "\\\\text{E}", "12"]]
    ['B', 'C', 'D', 'A', 'E', None]
    >>> choice_letter("\\\\frac{1}{2}", {"A": "0.25", "B": "0.5"})
    'B'

    ```
    """
    if answer is None:
        return None
    text = _strip_latex_text(answer)
    if len(text) == 1 and text.isalpha():
        return text.upper()
    found = _LETTER.match(_LETTER_PREFIX.sub("", text, count=1))
    if found:
        return (found.group(1) or found.group(2)).upper()
    if options:
        matches = [letter for letter, value in options.items() if value and is_equivalent(answer, value, match)]
        if len(matches) == 1:
            return matches[0]
    return None


def choice_letters(answer: str | None, offered: Iterable[str] = OFFERED_LETTERS) -> frozenset[str] | None:
    """The set of option letters an answer names (`A, C`, `AC`, `(A) and (C)`, `A`), or None; every letter must be
    one of the `offered` ones, so that a capitalised word (`NO`) is not read as letters.

    Example:

    ```python
    >>> sorted(choice_letters("A, C")), sorted(choice_letters("(B) and (D)")), sorted(choice_letters("CA"))
    (['A', 'C'], ['B', 'D'], ['A', 'C'])
    >>> choice_letters("apples") is None, choice_letters("NO") is None, choice_letters("ACE", offered="ABCD") is None
    (True, True, True)

    ```
    """
    letters = _choice_letters(answer)
    return letters if letters is not None and letters <= set(offered) else None


def _choice_letters(answer: str | None) -> frozenset[str] | None:
    if answer is None:
        return None
    text = _strip_latex_text(answer).strip().rstrip(".")
    text = re.sub(r"[()\[\]]", " ", text).strip()
    if not text:
        return None
    if _LETTER_RUN.match(text):
        return frozenset(text)
    tokens = [t for t in _LETTER_SPLIT.split(text) if t]
    if tokens and all(len(t) == 1 and t.isalpha() for t in tokens):
        return frozenset(t.upper() for t in tokens)
    single = choice_letter(answer)
    return frozenset(single) if single else None


def _plain(text: str) -> str:
    return re.sub(r"\s+", "", _strip_latex_text(text)).lower()


def reference_letters(reference: str, options: dict[str, str] | None = None) -> frozenset[str] | None:
    """The option letter(s) a choice question's reference names, read through its options, or None.

    A reference is a letter (`B`), an option's text (`False`, `053 ^\\circ T`), several letters (`B, D`, or one a
    line), or a value equal to one option only (`0.5` for the option `\\frac{1}{2}`), in that order.

    Example:

    ```python
    >>> options = {"A": "True", "B": "False", "C": "AC"}
    >>> [sorted(reference_letters(r, options)) for r in ["B", "(b)", "False", "AC", "A\\nB"]]
    [['B'], ['B'], ['B'], ['C'], ['A', 'B']]
    >>> reference_letters("7", options) is None, sorted(reference_letters("I", {"A": "I", "B": "II"}))
    (True, ['A'])

    ```
    """
    text = _strip_latex_text(reference or "")
    options = options or {}
    exact = [letter for letter, value in options.items() if value and _plain(value) == _plain(text)]
    if len(text) == 1 and text.isalpha() and (text.upper() in options or len(exact) != 1):
        return frozenset(text.upper())
    if len(exact) == 1:
        return frozenset(exact)
    letters = _choice_letters(reference)
    if letters:
        return letters
    matches = [letter for letter, value in options.items() if value and is_equivalent(reference, value, "math")]
    return frozenset(matches) if len(matches) == 1 else None


def numeric_value(answer: str | None) -> float | None:
    """The real value of an answer (`3.142`, `\\\\pi`, `2\\\\sqrt{3}`, `1/2`), or None.

    Example:

    ```python
    >>> round(numeric_value("2\\\\pi"), 4), numeric_value("1/2"), numeric_value("x") is None
    (6.2832, 0.5, True)

    ```
    """
    if answer is None:
        return None
    key = normalize_answer(answer).replace("π", "\\pi")
    try:
        return float(key)
    except ValueError:
        pass
    parsed = parse_key(key)  # math-verify's parse, cached and under the project's thread deadline
    if not parsed:
        return None
    try:
        value = float(parsed[0].evalf())
    except Exception:
        return None
    return value if math.isfinite(value) else None


def score_answer(
    prediction: str | None,
    reference: str,
    answer_type: str,
    options: dict[str, str] | None = None,
    match: str = "math",
) -> bool:
    """Whether an extracted answer is right under the benchmark's rule for `answer_type` (an abstention never is).

    Example:

    ```python
    >>> score_answer("(B)", "B", "choice"), score_answer("C, A", "A, C", "choices")
    (True, True)
    >>> score_answer("A", "A, C", "choices")
    False
    >>> score_answer("6.2832", "2\\\\pi", "float"), score_answer("0.5", "\\\\frac{1}{2}", "free")
    (True, True)

    ```
    """
    if prediction is None:
        return False
    if answer_type in ("choice", "choices"):
        expected = reference_letters(reference, options) if answer_type == "choice" else _choice_letters(reference)
        if expected is None:  # a reference that names no option: its content is the answer
            return is_equivalent(prediction, reference, match)
        if answer_type == "choice" and len(expected) == 1:
            return choice_letter(prediction, options, match) in expected
        letters = choice_letters(prediction, set(options or OFFERED_LETTERS) | expected)
        return letters is not None and letters == expected
    if answer_type == "float":
        value, expected = numeric_value(prediction), numeric_value(reference)
        if value is not None and expected is not None:
            return abs(value - expected) <= FLOAT_TOLERANCE
        return is_equivalent(prediction, reference, match)
    if answer_type == "free":
        return is_equivalent(prediction, reference, match)
    raise ValueError(f"Unknown answer type {answer_type!r}; valid types: {', '.join(ANSWER_TYPES)}.")


def vote_key(prediction: str | None, answer_type: str, options: dict[str, str] | None = None) -> str | None:
    """A canonical key for majority voting: the letter(s) of choice answers, the value to 3 decimals of float
    answers (else the normalised text). Free-form answers are voted with `voting.vote`'s math-aware classes instead.

    Example:

    ```python
    >>> vote_key("(b)", "choice"), vote_key("C, A", "choices"), vote_key("3.1416", "float"), vote_key("2x", "float")
    ('B', 'A,C', '3.142', '2x')

    ```
    """
    if prediction is None:
        return None
    if answer_type == "choice":
        return choice_letter(prediction, options)
    if answer_type == "choices":
        letters = choice_letters(prediction, options or OFFERED_LETTERS)
        return ",".join(sorted(letters)) if letters else None
    if answer_type == "float":
        value = numeric_value(prediction)
        return f"{value:.3f}" if value is not None else normalize_answer(prediction)
    raise ValueError(f"vote_key is for choice and float answers, not {answer_type!r}.")


def score_samples(
    answers: Sequence[str | None], reference: str, answer_type: str, options: dict[str, str] | None = None
) -> tuple[list[bool], GroupVote, bool]:
    """Score k sampled answers to one question: (each one right?, their vote, is the majority right? — maj@k).

    Choice and float answers vote on `vote_key`; free-form answers on the math-aware classes of `voting.vote`.

    Example:

    ```python
    >>> right, group_vote, majority_right = score_samples(["0.5", "1/2", "3", None], "\\\\frac{1}{2}", "free")
    >>> right, group_vote.majority_answer, majority_right
    ([True, True, False, False], '0.5', True)

    ```
    """
    right = [score_answer(a, reference, answer_type, options) for a in answers]
    if answer_type in ("choice", "choices", "float"):
        group_vote = vote([vote_key(a, answer_type, options) for a in answers], match="exact")
    else:
        group_vote = vote(list(answers), match="math")
    majority_right = group_vote.majority is not None and right[group_vote.classes.index(group_vote.majority)]
    return right, group_vote, majority_right


# ----------------------------------------------------------------------------------------------------------------
# Aggregates


def accuracy(correct: Sequence[bool]) -> float | None:
    """Percentage of correct items (None for no items)."""
    return 100.0 * sum(bool(c) for c in correct) / len(correct) if correct else None


def dynamath_accuracy(groups: Sequence[str], correct: Sequence[bool]) -> dict[str, float | None]:
    """DynaMath's average-case accuracy (over all variants) and worst-case accuracy (a seed question counts only if
    every one of its variants is right), in percent.

    Example:

    ```python
    >>> dynamath_accuracy(["q1", "q1", "q2", "q2"], [True, True, True, False])
    {'average_case': 75.0, 'worst_case': 50.0, 'seed_questions': 2}

    ```
    """
    per_seed: dict[str, bool] = {}
    for group, ok in zip(groups, correct):
        per_seed[group] = per_seed.get(group, True) and bool(ok)
    return {
        "average_case": accuracy(correct),
        "worst_case": accuracy(list(per_seed.values())),
        "seed_questions": len(per_seed),
    }


WEMATH_STEPS = {"2steps": ("2steps_1", "2steps_2"), "3steps": ("3steps_1", "3steps_2", "3steps_3")}


def wemath_metrics(problems: Sequence[str], parts: Sequence[str], correct: Sequence[bool]) -> dict:
    """WeMath's four-dimensional metrics over its composite problems, as in its official script (and VLMEvalKit).

    Each composite problem (same `ID`) has one-step sub-questions (`2steps_1`, `2steps_2` or `3steps_1..3`) and the
    composite question (`2steps_multi` / `3steps_multi`). Per problem:
    IK (insufficient knowledge) = a step wrong and the composite wrong; IG (inadequate generalisation) = every step
    right, the composite wrong; CM (complete mastery) = composite right and every step right (strict) or some step
    right (loose); RM (rote memorisation) = composite right and some step wrong (strict) or every step wrong (loose).
    Score = (N - 0.5 IG - RM - IK) / N in percent, N = complete problems (525 in testmini; the official script
    hard-codes 525). Incomplete problems (a `--limit` cut) are left out of the four-dimensional metrics.

    Example:

    ```python
    >>> m = wemath_metrics(["1", "1", "1", "2", "2", "2"],
    ...                    ["2steps_1", "2steps_2", "2steps_multi"] * 2,
    ...                    [True, True, True, False, True, True])
    >>> m["score_strict"], m["score_loose"], m["CM_strict"], m["RM_strict"]
    (50.0, 100.0, 1, 1)

    ```
    """
    found: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for problem, part, ok in zip(problems, parts, correct):
        steps = part.split("_")[0]
        if steps in WEMATH_STEPS:
            found[(steps, problem)][part] = bool(ok)
    counts = dict(IK=0, IG=0, CM_strict=0, CM_loose=0, RM_strict=0, RM_loose=0)
    complete = 0
    for (steps, _), answers in found.items():
        step_keys = WEMATH_STEPS[steps]
        if f"{steps}_multi" not in answers or any(k not in answers for k in step_keys):
            continue
        complete += 1
        step_results = [answers[k] for k in step_keys]
        multi = answers[f"{steps}_multi"]
        if multi:
            counts["CM_strict"] += all(step_results)
            counts["RM_strict"] += not all(step_results)
            counts["CM_loose"] += any(step_results)
            counts["RM_loose"] += not any(step_results)
        else:
            counts["IG"] += all(step_results)
            counts["IK"] += not all(step_results)

    def score(rm: int) -> float | None:
        if not complete:
            return None
        return 100.0 * (complete - 0.5 * counts["IG"] - rm - counts["IK"]) / complete

    return {
        "accuracy": accuracy(correct),
        "score_strict": score(counts["RM_strict"]),
        "score_loose": score(counts["RM_loose"]),
        "composite_problems": complete,
        **counts,
    }


def mean_metrics(runs: Iterable[dict]) -> dict:
    """Element-wise mean of the numeric metrics of several runs (sampled pass@1 = the metric averaged over samples)."""
    runs = list(runs)
    if not runs:
        return {}
    out = {}
    for key, value in runs[0].items():
        values = [run.get(key) for run in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = sum(values) / len(values)
        else:
            out[key] = value if all(v == value for v in values) else None
    return out
