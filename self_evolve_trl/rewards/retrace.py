"""CSRS's Softened Frequency Reward: agreement of a completion's answer with the group's re-inferred answers (SPEC §2).

The re-inferences themselves (cutting each completion at anchor points and letting the policy finish it again) are
made by the trainer (`self_evolve_trl.retrace`); this module only counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ..answers import answer_classes, extract_answer
from .format import DEFAULT_FORMAT_PATTERN, matches_format


def retrace_frequency(
    completions: list[Any],
    group_size: int,
    retrace_completions: list[list[Any]],
    beta: float = 1.2,
    weight: float = 0.9,
    format_pattern: str = DEFAULT_FORMAT_PATTERN,
    extractor: str = "boxed",
    match: str = "math",
    log_metric: Callable[[str, float], None] | None = None,
    log_extra: Callable[[str, list], None] | None = None,
) -> list[float]:
    """r_i = w·min(1, β·c_i / (G·(K+1))) + (1 − w)·fmt_i, CSRS's Softened Frequency Reward.

    c_i counts how many of the group's G·K re-inferred answers (those of *every* completion of the group, not only
    completion i's own) fall in the equivalence class of a_i, completion i's answer. The G original answers are not
    counted. A completion without an answer gets c_i = 0, and a re-inference without an answer matches nothing.
    fmt_i is 1 when completion i fully matches `format_pattern`, else 0. With several anchors, K is the number of
    re-inferences per completion (anchors × samples per anchor).

    Args:
        completions: whole groups of completions, in order.
        group_size: completions per prompt (G).
        retrace_completions: for each completion, the texts of its K re-inferences (computed by the trainer).
        beta: β, the softening boost (released: 1.2).
        weight: w, the weight of the frequency term (released: 0.9); the format term gets 1 − w.
        format_pattern: full-match pattern of a well-formed completion (released: `<think>…</think>…\\boxed{…}`).
        extractor, match: how answers are read and compared (as in `majority_vote`).
        log_metric, log_extra: TRL's logging callbacks (passed by the trainer): logs `retrace/agreement` (share of a
            completion's own re-inferences that agree with it, over completions with an answer),
            `retrace/abstention_rate` (re-inferences without an answer), and the re-inferred answers per completion
            as the `retrace_answers` column of the completions table.

    Example:

    ```python
    >>> group = ["\\\\boxed{2}", "\\\\boxed{2}", "\\\\boxed{3}"]                 # G = 3, K = 2
    >>> retraced = [["\\\\boxed{2}", "\\\\boxed{2.0}"], ["\\\\boxed{2}", "no answer"], ["\\\\boxed{3}", "\\\\boxed{2}"]]
    >>> [round(r, 6) for r in retrace_frequency(group, 3, retraced, format_pattern=".*")]  # c = 4, 4, 1
    [0.58, 0.58, 0.22]

    ```
    """
    if group_size <= 0 or len(completions) % group_size:
        raise ValueError(f"{len(completions)} completions do not make whole groups of {group_size}.")
    if len(retrace_completions) != len(completions):
        raise ValueError(
            f"retrace_completions has {len(retrace_completions)} entries for {len(completions)} completions."
        )
    rewards: list[float] = []
    own_agreement: list[float] = []
    retraced_total = retraced_abstained = 0
    answers_column: list[str] = []
    for start in range(0, len(completions), group_size):
        group = completions[start : start + group_size]
        retraced_texts = [list(texts or []) for texts in retrace_completions[start : start + group_size]]
        k = len(retraced_texts[0])
        if any(len(texts) != k for texts in retraced_texts):
            raise ValueError(
                f"Every completion of a group needs the same number of re-inferences, got {[len(t) for t in retraced_texts]}."
            )
        answers = [extract_answer(c, extractor) for c in group]
        retraced = [extract_answer(t, extractor) for texts in retraced_texts for t in texts]
        classes = answer_classes(answers + retraced, match=match)
        original_classes, retraced_classes = classes[:group_size], classes[group_size:]
        counts = Counter(c for c in retraced_classes if c is not None)
        for i, (completion, c_class) in enumerate(zip(group, original_classes)):
            c_i = counts[c_class] if c_class is not None else 0
            frequency = min(1.0, beta * c_i / (group_size * (k + 1)))
            fmt = 1.0 if matches_format(completion, format_pattern) else 0.0
            rewards.append(weight * frequency + (1.0 - weight) * fmt)
            own = retraced_classes[i * k : (i + 1) * k]
            if c_class is not None and k:
                own_agreement.append(sum(c == c_class for c in own) / k)
            answers_column.append(" | ".join("" if a is None else a for a in retraced[i * k : (i + 1) * k]))
        retraced_total += len(retraced)
        retraced_abstained += sum(a is None for a in retraced)
    if log_metric is not None:
        if own_agreement:
            log_metric("retrace/agreement", sum(own_agreement) / len(own_agreement))
        if retraced_total:
            log_metric("retrace/abstention_rate", retraced_abstained / retraced_total)
    if log_extra is not None:
        log_extra("retrace_answers", answers_column)
    return rewards


retrace_frequency.reward_inputs = ("retrace_completions",)
