"""The token-level confidence rewards: `self_certainty` (Intuitor) and `token_entropy` (RENT).

Both read the `token_stats` reward input (per completion, the per-token self-certainty and entropy of the policy's
next-token distributions, computed by `self_evolve_trl.certainty.provider`) and average it over the completion's
tokens. The formulas are in docs/math.md, section "Self-certainty and entropy" (#certainty).
"""

from __future__ import annotations

from typing import Any

SELF_CERTAINTY = "self_certainty"  # key of the per-token self-certainty in a `token_stats` entry
ENTROPY = "entropy"  # key of the per-token entropy in a `token_stats` entry


def last_part(values: list[float], last_tokens: int | None = None, last_fraction: float | None = None) -> list[float]:
    """The tokens a reward averages over: all of them, the last `last_tokens`, or the last `last_fraction` of them
    (at least one token of a non-empty completion).

    Example:

    ```python
    >>> last_part([1, 2, 3, 4]), last_part([1, 2, 3, 4], last_tokens=3), last_part([1, 2, 3, 4], last_fraction=0.3)
    ([1, 2, 3, 4], [2, 3, 4], [4])

    ```
    """
    if last_tokens is not None:
        return values[-last_tokens:] if last_tokens > 0 else []
    if last_fraction is not None:
        return values[len(values) - max(1, round(last_fraction * len(values))):] if values else []
    return values


def mean_stat(stats: dict[str, list[float]], key: str, last_tokens: int | None, last_fraction: float | None):
    """The mean of one per-token statistic over the chosen tokens; None (unscored) for a completion without tokens."""
    values = last_part(list(stats[key]), last_tokens, last_fraction)
    return sum(values) / len(values) if values else None


def self_certainty(
    completions: list[Any],
    token_stats: list[dict[str, list[float]]],
    last_tokens: int | None = None,
    last_fraction: float | None = None,
) -> list[float | None]:
    """r_i = (1/|o_i|) Σ_t KL(U ‖ p_θ(·| q, o_{i,<t})), Intuitor's self-certainty: the mean over the completion's
    tokens of the KL divergence from the uniform distribution over the vocabulary to the policy's next-token
    distribution, KL(U ‖ p) = logsumexp(z) − mean_j z_j − log V (z: the temperature-scaled logits). Higher means
    more confident; 0 for a uniform distribution.

    Args:
        completions: the completions (only their number is read).
        token_stats: per completion, its per-token `self_certainty` and `entropy` lists (computed by the trainer).
        last_tokens, last_fraction: average over the last `last_tokens` tokens, or the last `last_fraction` of them,
            instead of all (released Intuitor: all tokens). A completion without tokens gets None (unscored).

    Example:

    ```python
    >>> stats = [{"self_certainty": [1.0, 3.0], "entropy": [0.5, 0.1]}, {"self_certainty": [0.5], "entropy": [2.0]}]
    >>> self_certainty(["a b", "c"], stats)
    [2.0, 0.5]

    ```
    """
    if len(token_stats) != len(completions):
        raise ValueError(f"token_stats has {len(token_stats)} entries for {len(completions)} completions.")
    return [mean_stat(stats, SELF_CERTAINTY, last_tokens, last_fraction) for stats in token_stats]

self_certainty.reward_inputs = ("token_stats",)


def token_entropy(
    completions: list[Any],
    token_stats: list[dict[str, list[float]]],
    last_tokens: int | None = None,
    last_fraction: float | None = None,
) -> list[float | None]:
    """r_i = −(1/|o_i|) Σ_t H(p_θ(·| q, o_{i,<t})), RENT's reward: the negative mean entropy of the policy's
    next-token distributions over the completion's tokens (higher means more confident; 0 at most).

    Args:
        completions: the completions (only their number is read).
        token_stats: per completion, its per-token `self_certainty` and `entropy` lists (computed by the trainer).
        last_tokens, last_fraction: average over the last `last_tokens` tokens, or the last `last_fraction` of them
            (RENT's ablation of which tokens to use), instead of all (the default). A completion without tokens gets
            None (unscored).

    Example:

    ```python
    >>> stats = [{"self_certainty": [1.0, 3.0], "entropy": [0.5, 0.1]}, {"self_certainty": [0.5], "entropy": [2.0]}]
    >>> token_entropy(["a b", "c"], stats), token_entropy(["a b", "c"], stats, last_tokens=1)
    ([-0.3, -2.0], [-0.1, -2.0])

    ```
    """
    if len(token_stats) != len(completions):
        raise ValueError(f"token_stats has {len(token_stats)} entries for {len(completions)} completions.")
    means = [mean_stat(stats, ENTROPY, last_tokens, last_fraction) for stats in token_stats]
    return [None if m is None else -m for m in means]

token_entropy.reward_inputs = ("token_stats",)
