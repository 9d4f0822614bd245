"""Per-step diagnostics of label-free training (SPEC §6).

Label-free training fails quietly: the policy collapses onto its own early majority while the reward keeps rising.
These numbers show it while it happens. All are computed from the group votes; the label metrics only where the
data has reference answers (which never reach a reward).

Label-free (always):
    self_consistency/majority_ratio         mean p_max over groups
    self_consistency/high_confidence_share  share of groups with p_max >= 0.8 (the collapse indicator)
    self_consistency/answer_entropy         mean entropy (nats) of the answer-class distribution of a group
    self_consistency/distinct_answers       mean number of answer classes per group
    self_consistency/abstention_rate        share of completions without a final answer
    self_consistency/format_violation_rate  share of completions that break the output format
With labels:
    labels/pseudo_label_accuracy  share of groups (with a majority) whose majority answer is right
    labels/maj_at_g               share of all groups whose majority answer is right (maj@G)
    labels/rollout_accuracy       share of completions whose answer is right (pass@1 of the samples)
    labels/reward_accuracy        share of completions where "in the majority" agrees with "is right"
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .answers import is_equivalent
from .rewards.format import DEFAULT_FORMAT_PATTERN, matches_format
from .voting import ABSTAIN_CLASS_ANSWER, GroupVote


HIGH_CONFIDENCE = 0.8


def _entropy(counts: dict[int, int]) -> float:
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values()) if total else 0.0


def correctness(vote: GroupVote, label: str | None, match: str = "math") -> list[bool] | None:
    """Whether each completion's answer equals the label (compared once per class); None without a label."""
    if label is None:
        return None
    right_by_class: dict[int, bool] = {}
    result = []
    for answer, cls in zip(vote.answers, vote.classes):
        if cls is None or answer == ABSTAIN_CLASS_ANSWER:  # abstentions (also as the "None" class) are never right
            result.append(False)
            continue
        if cls not in right_by_class:
            right_by_class[cls] = is_equivalent(answer, label, match)
        result.append(right_by_class[cls])
    return result


def group_diagnostics(
    votes: Sequence[GroupVote],
    completions: Sequence[Any],
    labels: Sequence[str | None] | None = None,
    match: str = "math",
    format_pattern: str = DEFAULT_FORMAT_PATTERN,
) -> dict[str, float]:
    """Diagnostics of one batch of groups.

    Args:
        votes: one `GroupVote` per group, in order (see `voting.vote_groups`).
        completions: all completions, group after group (for the format check).
        labels: one reference answer per *group* (`None` where unknown), or None for no labels at all.
        match: answer equivalence used against the labels.
        format_pattern: the output format counted by `format_violation_rate`.
    """
    n_groups = len(votes)
    n_completions = sum(v.size for v in votes)
    metrics = {
        "self_consistency/majority_ratio": sum(v.p_max for v in votes) / n_groups,
        "self_consistency/high_confidence_share": sum(v.p_max >= HIGH_CONFIDENCE for v in votes) / n_groups,
        "self_consistency/answer_entropy": sum(_entropy(v.counts) for v in votes) / n_groups,
        "self_consistency/distinct_answers": sum(len(v.counts) for v in votes) / n_groups,
        "self_consistency/abstention_rate": sum(
            c is None or a == ABSTAIN_CLASS_ANSWER for v in votes for a, c in zip(v.answers, v.classes)
        )
        / n_completions,
        "self_consistency/format_violation_rate": sum(not matches_format(c, format_pattern) for c in completions)
        / len(completions),
    }
    if labels is None:
        return metrics
    labelled = [(v, label) for v, label in zip(votes, labels) if label is not None]
    if not labelled:
        return metrics
    majority_right, with_majority, right, agree, total = 0, 0, 0, 0, 0
    for vote, label in labelled:
        correct = correctness(vote, label, match)
        if vote.majority is not None:
            with_majority += 1
            majority_right += correct[vote.classes.index(vote.majority)]
        for cls, is_right in zip(vote.classes, correct):
            in_majority = cls is not None and cls == vote.majority
            right += is_right
            agree += in_majority == is_right
            total += 1
    metrics.update(
        {
            "labels/pseudo_label_accuracy": majority_right / with_majority if with_majority else 0.0,
            "labels/maj_at_g": majority_right / len(labelled),
            "labels/rollout_accuracy": right / total,
            "labels/reward_accuracy": agree / total,
        }
    )
    return metrics
