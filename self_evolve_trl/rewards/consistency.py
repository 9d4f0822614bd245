"""Consistency rewards: how much a completion's answer agrees with the rest of its group (docs/math.md, "Rewards")."""

from __future__ import annotations

from typing import Any

from ..voting import vote_groups


def majority_vote(
    completions: list[Any],
    group_size: int,
    extractor: str = "boxed",
    match: str = "math",
    abstain_as_answer: bool = False,
    tie: str = "first",
) -> list[float]:
    """MM-UPT's reward: 1 for completions whose answer is in the group's majority class, else 0.

    Abstentions get 0. Equivalent answers (`1/2`, `0.5`, `\\frac{1}{2}`) count as one class under `match="math"`.

    Args:
        completions: whole groups of completions, in order (`len(completions) % group_size == 0`).
        group_size: completions per prompt (TRL's `num_generations`).
        extractor: answer extractor (`boxed`, `answer_tag`, `last_number`).
        match: answer equivalence (`exact`, `normalized`, `math`).
        abstain_as_answer: treat a missing answer as the literal class "None" (released behaviour).
        tie: `first` (the class seen first wins a tie) or `none` (a tie has no majority: everyone gets 0).

    Example:

    ```python
    >>> majority_vote(["\\\\boxed{1/2}", "\\\\boxed{0.5}", "\\\\boxed{3}", "no answer"], group_size=4)
    [1.0, 1.0, 0.0, 0.0]

    ```
    """
    rewards = []
    for group in vote_groups(completions, group_size, extractor, match, abstain_as_answer, tie):
        rewards.extend(1.0 if c is not None and c == group.majority else 0.0 for c in group.classes)
    return rewards


def soft_frequency(
    completions: list[Any],
    group_size: int,
    hard_threshold: float | None = None,
    power: float = 1.0,
    extractor: str = "boxed",
    match: str = "math",
    abstain_as_answer: bool = False,
    tie: str = "first",
) -> list[float]:
    """Self-Judge's consistency prior b_i = p_i^power, the share of the group that agrees with the completion.

    With `hard_threshold` h (released Self-Judge code: 0.85), a group whose majority share p_max exceeds h gets hard
    rewards instead: 1 for the majority class, 0 for the rest. Abstentions get 0.

    Args:
        completions: whole groups of completions, in order.
        group_size: completions per prompt.
        hard_threshold: h, or `None` to disable the hard branch.
        power: γ in p_i^γ (EvoLMM's continuous reward; 1 = plain frequency).
        extractor, match, abstain_as_answer, tie: as in `majority_vote`.

    Example:

    ```python
    >>> soft_frequency(["\\\\boxed{2}", "\\\\boxed{2}", "\\\\boxed{2.0}", "\\\\boxed{5}"], group_size=4)
    [0.75, 0.75, 0.75, 0.25]
    >>> soft_frequency(["\\\\boxed{2}", "\\\\boxed{2}", "\\\\boxed{2.0}", "\\\\boxed{5}"], group_size=4, hard_threshold=0.7)
    [1.0, 1.0, 1.0, 0.0]

    ```
    """
    rewards = []
    for group in vote_groups(completions, group_size, extractor, match, abstain_as_answer, tie):
        if hard_threshold is not None and group.p_max > hard_threshold:
            rewards.extend(1.0 if c is not None and c == group.majority else 0.0 for c in group.classes)
        else:
            rewards.extend(p**power if p > 0 else 0.0 for p in group.frequencies)
    return rewards
