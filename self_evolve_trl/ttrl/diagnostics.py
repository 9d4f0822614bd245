"""The diagnostics of TTRL's larger vote (docs/math.md, section "TTRL"), one value per group, computed by the
trainer's main process next to the diagnostics of the G trained completions (`training/diagnostics.py`).

Label-free:
    ttrl/majority_ratio          p_max of the larger vote: the share of the G + M answers in the largest class
With labels (the hidden label column, which never reaches a reward; groups without a label are left out):
    ttrl/pseudo_label_accuracy   the majority answer of the G + M is right (groups without a majority left out)
    ttrl/maj_at_n                the same, a group without a majority counting as wrong (maj@(G+M))
    ttrl/reward_accuracy         share of the G trained completions whose `ttrl_vote` majority reward (1 in the
                                 majority, else 0) equals the true reward (1 if right, else 0), as in TTRL
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..voting import GroupVote, correctness, usable_label

NAN = math.nan
LABEL_METRICS = ("ttrl/pseudo_label_accuracy", "ttrl/maj_at_n", "ttrl/reward_accuracy")


def larger_vote_metrics(
    votes: Sequence[GroupVote],
    group_size: int,
    labels: Sequence[Any] | None = None,
    match: str = "math",
    abstain_as_answer: bool = False,
) -> dict[str, list[float]]:
    """The `ttrl/*` metrics of the larger votes (`reward.larger_votes`), one value per group (NaN where undefined);
    the label metrics only when some group has a label.

    Example:

    ```python
    >>> from self_evolve_trl.voting import vote
    >>> metrics = larger_vote_metrics([vote(["2", "2", "3", "3", "3", "3"])], 4, ["3"])  # G = 4 trained, M = 2 extra
    >>> round(metrics["ttrl/majority_ratio"][0], 4), metrics["ttrl/pseudo_label_accuracy"], metrics["ttrl/maj_at_n"]
    (0.6667, [1.0], [1.0])

    ```
    """
    metrics: dict[str, list[float]] = {"ttrl/majority_ratio": [v.p_max for v in votes]}
    if labels is None or all(usable_label(label) is None for label in labels):
        return metrics
    for name in LABEL_METRICS:
        metrics[name] = []
    for v, label in zip(votes, labels):
        right = correctness(v, label, match, abstain_as_answer)
        if right is None:
            for name in LABEL_METRICS:
                metrics[name].append(NAN)
            continue
        majority_right = v.majority is not None and right[v.classes.index(v.majority)]
        metrics["ttrl/pseudo_label_accuracy"].append(NAN if v.majority is None else float(majority_right))
        metrics["ttrl/maj_at_n"].append(float(majority_right))
        trained = zip(v.classes[:group_size], right[:group_size])
        agree = [(c is not None and c == v.majority) == is_right for c, is_right in trained]
        metrics["ttrl/reward_accuracy"].append(sum(agree) / len(agree))
    return metrics
