"""CSRS's Softened Frequency Reward: agreement of a completion's answer with the group's re-inferred answers.

The re-inferences themselves (cutting each completion at anchor points and letting the policy finish it again) are
made during the rollout by `self_evolve_trl.csrs.provider`; this module only counts. The formula is written out in
docs/math.md, section "`retrace_frequency`" (under "Rewards").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..answers import answer_classes, extract_answer
from ..rewards.format import DEFAULT_FORMAT_PATTERN, matches_format


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
    scores = [
        score_group(
            completions[start : start + group_size], retrace_completions[start : start + group_size],
            beta, weight, format_pattern, extractor, match,
        )
        for start in range(0, len(completions), group_size)
    ]
    agreement = [a for score in scores for a in score.agreement]
    retraced = [a for score in scores for a in score.retraced_answers]
    if log_metric is not None:
        if agreement:
            log_metric("retrace/agreement", sum(agreement) / len(agreement))
        if retraced:
            log_metric("retrace/abstention_rate", sum(a is None for a in retraced) / len(retraced))
    if log_extra is not None:
        log_extra("retrace_answers", [entry for score in scores for entry in score.answers_column])
    return [r for score in scores for r in score.rewards]

retrace_frequency.reward_inputs = ("retrace_completions",)


@dataclass
class GroupScore:
    """`retrace_frequency` on one group: the rewards, and what its metrics and completions-table column are made of."""

    rewards: list[float]
    agreement: list[float]  # per completion with an answer: share of its own re-inferences in its class
    retraced_answers: list[str | None]  # every re-inferred answer of the group (None: no answer)
    answers_column: list[str]  # per completion: its re-inferred answers, " | "-joined


def score_group(
    group: list[Any], retrace_texts: list[list[Any]], beta: float, weight: float, format_pattern: str,
    extractor: str, match: str,
) -> GroupScore:
    """`retrace_frequency` on one group of G completions and their K re-inferences each."""
    group_size = len(group)
    retraced_texts = [list(texts or []) for texts in retrace_texts]
    k = len(retraced_texts[0])
    if any(len(texts) != k for texts in retraced_texts):
        counts = [len(texts) for texts in retraced_texts]
        raise ValueError(f"Every completion of a group needs the same number of re-inferences, got {counts}.")
    answers = [extract_answer(c, extractor) for c in group]
    retraced = [extract_answer(t, extractor) for texts in retraced_texts for t in texts]
    classes = answer_classes(answers + retraced, match=match)
    original_classes, retraced_classes = classes[:group_size], classes[group_size:]
    counts = Counter(c for c in retraced_classes if c is not None)
    score = GroupScore([], [], retraced, [])
    for i, (completion, c_class) in enumerate(zip(group, original_classes)):
        c_i = counts[c_class] if c_class is not None else 0
        frequency = min(1.0, beta * c_i / (group_size * (k + 1)))
        fmt = 1.0 if matches_format(completion, format_pattern) else 0.0
        score.rewards.append(weight * frequency + (1.0 - weight) * fmt)
        own = retraced_classes[i * k : (i + 1) * k]
        if c_class is not None and k:
            score.agreement.append(sum(c == c_class for c in own) / k)
        score.answers_column.append(" | ".join("" if a is None else a for a in retraced[i * k : (i + 1) * k]))
    return score
