"""TTRL's reward: the G trained completions of a prompt are rewarded against the vote of G + M samples, the M extra
ones drawn only to vote (docs/math.md, section "TTRL").

The extra samples are drawn during the rollout by `self_evolve_trl.ttrl.provider` and reach the reward as the
`vote_completions` input; this module only counts, with the same vote as the consistency rewards (`voting.vote`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..answers import extract_answer
from ..voting import GroupVote, check_groups, extract_answers, vote


def larger_votes(
    completions: list[Any],
    group_size: int,
    vote_completions: list[list[Any]],
    extractor: str = "boxed",
    match: str = "math",
    abstain_as_answer: bool = False,
    tie: str = "first",
) -> list[GroupVote]:
    """The vote of each group over its G completions and its extra samples: G + M answers, the G trained ones first.

    A group's extra samples are the `vote_completions` entries of its G completions, in order (each completion holds
    its share, M / G, of its prompt's extra samples; any split works).

    Example:

    ```python
    >>> (v,) = larger_votes(["2", "2", "3", "3"], 4, [["3", "3"], ["3"], [], ["3"] * 5], extractor="last_number")
    >>> v.size, v.majority_answer, v.classes[:4]
    (12, '3', [0, 0, 1, 1])

    ```
    """
    check_groups(len(completions), group_size)
    if len(vote_completions) != len(completions):
        raise ValueError(f"vote_completions has {len(vote_completions)} entries for {len(completions)} completions.")
    votes = []
    for start in range(0, len(completions), group_size):
        extra = [text for texts in vote_completions[start : start + group_size] for text in (texts or [])]
        answers = extract_answers([*completions[start : start + group_size], *extra], extractor, abstain_as_answer)
        votes.append(vote(answers, match=match, tie=tie))
    return votes


def ttrl_vote(
    completions: list[Any],
    group_size: int,
    vote_completions: list[list[Any]],
    soft: bool = False,
    hard_threshold: float | None = None,
    power: float = 1.0,
    extractor: str = "boxed",
    match: str = "math",
    abstain_as_answer: bool = False,
    tie: str = "first",
    log_extra: Callable[[str, list], None] | None = None,
) -> list[float]:
    """TTRL's majority reward over the larger vote: 1 when a trained completion's answer is in the majority class of
    its group's G + M answers (the G completions and M extra samples), else 0. Abstentions get 0.

    With `soft`, the reward is instead the share of the G + M answers in the completion's class, to the power γ
    (`soft_frequency` over the larger vote), and `hard_threshold` h gives a group whose larger-vote p_max exceeds h
    the hard rewards (1 for the majority class, 0 for the rest). With M = 0 these are `majority_vote` and
    `soft_frequency`. Only the G trained completions get rewards; the extra samples only vote.

    Args:
        completions: whole groups of trained completions, in order.
        group_size: completions per prompt (G).
        vote_completions: for each completion, its share of its prompt's M extra samples (computed by the trainer).
        soft, hard_threshold, power: the `soft_frequency` reward over the larger vote, instead of the majority.
        extractor, match, abstain_as_answer, tie: as in `majority_vote`.
        log_extra: TRL's callback (passed by the trainer): the completions table gets the columns `vote_majority`
            (the majority answer of the group's G + M answers) and `vote_answers` (the answers of the completion's
            share of extra samples, " | "-joined).

    Example: the trained 4 say 2, 2, 3, 3; the 8 extra samples say 3. The majority of the 12 is 3.

    ```python
    >>> group = ["\\\\boxed{2}", "\\\\boxed{2}", "\\\\boxed{3}", "\\\\boxed{3}"]
    >>> extra = [["\\\\boxed{3}"] * 2] * 4
    >>> ttrl_vote(group, 4, extra)
    [0.0, 0.0, 1.0, 1.0]
    >>> [round(r, 4) for r in ttrl_vote(group, 4, extra, soft=True)]  # 2/12 and 10/12
    [0.1667, 0.1667, 0.8333, 0.8333]

    ```
    """
    rewards = []
    votes = larger_votes(completions, group_size, vote_completions, extractor, match, abstain_as_answer, tie)
    for group in votes:
        trained = group.classes[:group_size]
        if not soft or (hard_threshold is not None and group.p_max > hard_threshold):
            rewards.extend(1.0 if c is not None and c == group.majority else 0.0 for c in trained)
        else:
            rewards.extend((group.counts[c] / group.size) ** power if c is not None else 0.0 for c in trained)
    if log_extra is not None:
        log_extra("vote_majority", [v.majority_answer or "" for v in votes for _ in range(group_size)])
        shares = [share_answers(texts, extractor) for texts in vote_completions]
        log_extra("vote_answers", [" | ".join(a or "" for a in answers) for answers in shares])
    return rewards


def share_answers(texts: list[Any] | None, extractor: str) -> list[str | None]:
    """The answers of one completion's share of extra samples."""
    return [extract_answer(text, extractor) for text in texts or []]

ttrl_vote.reward_inputs = ("vote_completions",)
