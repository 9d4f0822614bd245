"""Final answers: extraction from completions and math-aware equivalence classes (see `docs/math.md`, section
"Answers").

The pieces, each importable from here:

- `extraction`: `extract_answer(text, extractor)`, the last `\\boxed{...}` (default), the last `<answer>...</answer>`,
  or the last number; no answer found is an *abstention* (`None`), not an answer. `completion_text` reads a
  completion in TRL's conversational form.
- `normalize`: `normalize_answer(answer)`, the cheap normalisation applied before any comparison (spacing, `$`,
  `\\text{}`, degrees, trailing units and punctuation, choice letters, plain numbers to a canonical form).
- `equivalence`: `is_equivalent(prediction, reference, match)` and `answer_classes(answers, match)`, one class id per
  answer; `match="math"` adds math-verify on top of the normalisation, behind fast paths (`keys_equivalent`) that
  decide most pairs as math-verify would without calling it.
- `verify`: math-verify under a thread deadline instead of `signal.alarm`; its work, timeouts and errors are counted
  in `MATCH_STATS`. The deadline is `verify.MATH_TIMEOUT_SECONDS`.
- `intervals`: one-variable inequalities and intervals with integer ends, compared as sets.
- `latex`: `latex_value`, the value of a number written in LaTeX (`2\\sqrt{3}`), and `values_compare`.

Example:

```python
>>> from self_evolve_trl.answers import answer_classes, extract_answer
>>> answer_classes([extract_answer("so \\\\boxed{0.5}"), extract_answer("\\\\boxed{\\\\frac12}"), None])
[0, 0, None]

```
"""

from . import equivalence, extraction, intervals, latex, normalize, verify
from .equivalence import MATCH_MODES, MAX_MATH_LENGTH, answer_classes, is_equivalent, keys_equivalent
from .extraction import EXTRACTORS, completion_text, extract_answer
from .latex import latex_value, values_compare
from .normalize import normalize_answer
from .verify import MATCH_STATS, MatchStats, parse_key


__all__ = [
    "EXTRACTORS",
    "MATCH_MODES",
    "MATCH_STATS",
    "MAX_MATH_LENGTH",
    "MatchStats",
    "answer_classes",
    "clear_caches",
    "completion_text",
    "extract_answer",
    "is_equivalent",
    "keys_equivalent",
    "latex_value",
    "normalize_answer",
    "parse_key",
    "values_compare",
]


def clear_caches() -> None:
    """Empties every cache of answer matching (normalised keys, values, parses, readings, verdicts), as in a fresh
    process: for benchmarks of a cold start, and tests."""
    for module in (extraction, normalize, latex, intervals, verify, equivalence):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
