"""The format reward: a penalty for completions that break the output format (docs/math.md, "Rewards")."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ..answers import completion_text


DEFAULT_FORMAT_PATTERN = r"<think>.*</think>.*\\boxed\{.*\}.*"
NO_THINK_FORMAT_PATTERN = r".*\\boxed\{.*\}.*"


@lru_cache(maxsize=32)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)


def matches_format(completion: Any, pattern: str = DEFAULT_FORMAT_PATTERN) -> bool:
    """Whether the whole completion matches `pattern` (full match, `.` matches newlines)."""
    return _compiled(pattern).fullmatch(completion_text(completion)) is not None


def format_reward(
    completions: list[Any],
    group_size: int | None = None,
    pattern: str = DEFAULT_FORMAT_PATTERN,
    penalty: float = 0.5,
) -> list[float]:
    """f_i = 0 if the completion fully matches `pattern`, else -`penalty`.

    The default pattern asks for `<think>...</think>` followed by a `\\boxed{}` answer; use
    `NO_THINK_FORMAT_PATTERN` (`.*\\\\boxed\\{.*\\}.*`) to drop the `<think>` requirement.

    Example:

    ```python
    >>> format_reward(["<think>1+1=2</think> \\\\boxed{2}", "the answer is 2"])
    [0.0, -0.5]

    ```
    """
    regex = _compiled(pattern)
    return [0.0 if regex.fullmatch(completion_text(c)) else -float(penalty) for c in completions]
