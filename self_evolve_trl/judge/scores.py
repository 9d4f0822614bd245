"""The judge's score in its output: `parse_judge_score` (docs/math.md, "Actor–Judge")."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..answers import extract_answer


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# Where the judge's JSON scores may be, in order of preference (released parser): the closed score block, the score
# block cut off at the end of the output, then anywhere.
_SCORE_BLOCKS = (
    re.compile(r"\[BEGIN SCORES\](.*?)\[END SCORES\]", re.DOTALL),
    re.compile(r"\[SCORES\](.*?)\[END SCORES\]", re.DOTALL),
    re.compile(r"\[BEGIN SCORES\](.*)", re.DOTALL),
    re.compile(r"\[SCORES\](.*)", re.DOTALL),
)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not _NUMBER.fullmatch(value):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


_JSON = json.JSONDecoder()


def _json_objects(text: str):
    """Every JSON object that starts at a `{` of `text`, in order (an outer object before the ones inside it)."""
    start = text.find("{")
    while start >= 0:
        try:
            value, _ = _JSON.raw_decode(text, start)
        except ValueError:  # not JSON from here (LaTeX braces, a truncated object): fails at the first bad character
            value = None
        if isinstance(value, dict):
            yield value
        start = text.find("{", start + 1)


def parse_judge_score(text: str | None, clamp: bool = True) -> float | None:
    """The overall score in a judge's output, clamped to [0, 1]; `None` when there is none (a parse failure).

    Rules: the last `\\boxed{}` holding a bare number; else the `overall_score` of a JSON object, looked for
    first in the `[BEGIN SCORES] ... [END SCORES]` block (also `[SCORES]`, and a block cut off at the end of the
    output), then anywhere in the output; else `None`. A number outside [0, 1] (e.g. a box that quotes the
    candidate's answer, `\\boxed{3}`) is clamped; `clamp=False` returns it as written, so that a caller can count
    such scores (the judge's `judge/out_of_range_share`).

    Example:

    ```python
    >>> parse_judge_score("[BEGIN THOUGHT] fine [END THOUGHT] ... \\\\boxed{0.85}")
    0.85
    >>> parse_judge_score('[BEGIN SCORES] {"answer_correctness": 1.0, "overall_score": 0.9} [END SCORES] \\\\boxed{0')
    0.9
    >>> parse_judge_score("The answer looks right.") is None
    True
    >>> parse_judge_score("\\\\boxed{3}"), parse_judge_score("\\\\boxed{3}", clamp=False)
    (1.0, 3.0)

    ```
    """
    score = _find_score(text)
    return min(1.0, max(0.0, score)) if clamp and score is not None else score


def _find_score(text: str | None) -> float | None:
    if not text:
        return None
    boxed = extract_answer(text, "boxed")
    if boxed is not None:
        score = _as_number(boxed.strip().strip("$").strip())
        if score is not None:
            return score
    regions = [m.group(1) for pattern in _SCORE_BLOCKS for m in [pattern.search(text)] if m] + [text]
    for region in regions:
        for obj in _json_objects(region):
            if "overall_score" in obj:
                score = _as_number(obj["overall_score"])
                if score is not None:
                    return score
    return None
