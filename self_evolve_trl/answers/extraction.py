"""Reading the final answer of a completion.

`extract_answer(text, extractor)` takes the last `\\boxed{...}` (default), the last `<answer>...</answer>`, or the last
number. No answer found is an *abstention* (`None`), not an answer. `completion_text` reads a completion given as a
plain string or in TRL's conversational form.
"""

from __future__ import annotations

import re
from typing import Any


EXTRACTORS = ("boxed", "answer_tag", "last_number")


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
