"""The Actor–Judge reward `judge_modulated`: a consistency prior modulated by a frozen judge's score (docs/math.md,
"Actor–Judge"), and the judge's failure policy as the reward binds it.

r_i = clip(b_i·g(s_i) + f_i, 0, 1), with b_i a base consistency reward (default `soft_frequency` with hard threshold
0.85), g the bounded gate (`judge_gate`) on the judge's score s_i (`parse_judge_score`) and f_i the format penalty.
The judge scores come from `JudgeScoreProvider` (a frozen copy of the initial policy in process, or an
OpenAI-compatible server); the trainer passes them as the `judge_scores` reward input.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..rewards.format import DEFAULT_FORMAT_PATTERN, format_reward
from ..rewards.registry import RewardError, RewardFunction, get_reward_function
from .gate import GATE_TOLERANCE, judge_gate


ON_FAILURE_POLICIES = ("zero", "neutral")


def _is_missing(score: Any) -> bool:
    return score is None or (isinstance(score, float) and math.isnan(score))


def judge_modulated(
    completions: list[Any],
    group_size: int,
    judge_scores: list[float | None],
    base_reward: str = "soft_frequency",
    base_kwargs: dict[str, Any] | None = None,
    format_pattern: str | None = DEFAULT_FORMAT_PATTERN,
    format_penalty: float = 0.5,
    on_failure: str = "zero",
    t_high: float = 0.95,
    tau_high: float = 0.02,
    lam_pos: float = 0.2,
    t_low: float = 0.40,
    tau_low: float = 0.05,
    lam_neg: float = 0.2,
    g_min: float = 0.8,
    g_max: float = 1.2,
    extractor: str = "boxed",
    match: str = "math",
    abstain_as_answer: bool = False,
    tie: str = "first",
    log_metric=None,
    log_extra=None,
) -> list[float]:
    """Self-Judge's reward r_i = clip(b_i·g(s_i) + f_i, 0, 1).

    b_i is the base consistency reward of the completion within its group, g the bounded gate of `judge_gate` on the
    judge's score s_i, and f_i = 0 or −`format_penalty` (the `format` reward with `format_pattern`).

    Args:
        completions: whole groups of completions, in order.
        group_size: completions per prompt.
        judge_scores: the judge's score in [0, 1] per completion (the trainer's `judge_scores` input); `None` or NaN
            for a judgement that failed or could not be parsed.
        base_reward: registry name or `module:function` of the consistency prior b (default `soft_frequency`).
        base_kwargs: its keyword arguments; default `{"hard_threshold": 0.85}` (released Self-Judge) for
            `soft_frequency`.
        format_pattern: full-match pattern of a well-formed completion; `None` drops the format term.
        format_penalty: f_i for a completion that does not match (as a positive number).
        on_failure: a failed judgement counts as s = 0 (`zero`, released: strongest suppression) or gets gate 1
            (`neutral`: the reward is the base reward alone). In training, set it with `judge_on_failure`.
        t_high, tau_high, lam_pos, t_low, tau_low, lam_neg, g_min, g_max: the gate's parameters (`judge_gate`).
        extractor, match, abstain_as_answer, tie: answer settings for the base reward (the trainer passes the
            recipe's).
        log_metric, log_extra: the trainer's loggers: `judge/score_mean`, `judge/gate_mean`,
            `judge/amplified_share`, `judge/suppressed_share` and `judge/missing_share` per step, and the columns
            `judge_score`, `judge_gate` of the completions table.

    Example:

    ```python
    >>> group = ["<think>a</think> \\\\boxed{2}"] * 3 + ["<think>b</think> \\\\boxed{3}"]
    >>> [round(r, 3) for r in judge_modulated(group, 4, judge_scores=[1.0, 0.8, 0.0, None], base_kwargs={})]
    [0.889, 0.75, 0.6, 0.2]

    ```
    """
    if on_failure not in ON_FAILURE_POLICIES:
        raise ValueError(f"Unknown on_failure {on_failure!r}; valid choices: {', '.join(ON_FAILURE_POLICIES)}.")
    if len(judge_scores) != len(completions):
        raise ValueError(f"judge_scores has {len(judge_scores)} values for {len(completions)} completions.")
    if base_kwargs is None:
        base_kwargs = {"hard_threshold": 0.85} if base_reward == "soft_frequency" else {}
    base_function = get_reward_function(base_reward, **base_kwargs)
    base = base_function.call_with(
        {
            "completions": completions,
            "group_size": group_size,
            "extractor": extractor,
            "match": match,
            "abstain_as_answer": abstain_as_answer,
            "tie": tie,
        }
    )
    if format_pattern is None:
        fmt = [0.0] * len(completions)
    else:
        fmt = format_reward(completions, pattern=format_pattern, penalty=format_penalty)

    missing = torch.tensor([_is_missing(s) for s in judge_scores], dtype=torch.bool)
    scores = torch.tensor([0.0 if _is_missing(s) else min(1.0, max(0.0, float(s))) for s in judge_scores])
    gate = judge_gate(scores, t_high, tau_high, lam_pos, t_low, tau_low, lam_neg, g_min, g_max)
    if on_failure == "neutral":
        gate = torch.where(missing, torch.ones_like(gate), gate)
    rewards = (torch.tensor(base, dtype=gate.dtype) * gate + torch.tensor(fmt, dtype=gate.dtype)).clamp(0.0, 1.0)

    if log_metric is not None and len(completions):
        if not missing.all():
            log_metric("judge/score_mean", scores[~missing].mean().item())
        log_metric("judge/gate_mean", gate.mean().item())
        log_metric("judge/amplified_share", (gate > 1 + GATE_TOLERANCE).float().mean().item())
        log_metric("judge/suppressed_share", (gate < 1 - GATE_TOLERANCE).float().mean().item())
        log_metric("judge/missing_share", missing.float().mean().item())
    if log_extra is not None:
        log_extra("judge_score", [None if m else s for m, s in zip(missing.tolist(), scores.tolist())])
        log_extra("judge_gate", gate.tolist())
    return rewards.tolist()


judge_modulated.reward_inputs = ("judge_scores",)
judge_modulated.reward_choices = {"on_failure": ON_FAILURE_POLICIES}


def with_failure_policy(function: RewardFunction, judge_on_failure: str) -> RewardFunction:
    """`function` with `on_failure=judge_on_failure` bound when it reads `judge_scores` and takes `on_failure` (as
    `judge_modulated`); raises `RewardError` when it is bound with another policy (`failure_policy_problem`)."""
    if "judge_scores" not in function.required_inputs or not function.accepts("on_failure"):
        return function
    problem = failure_policy_problem(function.kwargs, judge_on_failure, f"the {function.name!r} reward's on_failure")
    if problem:
        raise RewardError(problem)
    return RewardFunction(function.name, function.function, {**function.kwargs, "on_failure": judge_on_failure})


def failure_policy_problem(bound: dict[str, Any], judge_on_failure: str, where: str) -> str | None:
    """The problem of a judge reward bound (`bound`: its keyword arguments) with another `on_failure` than the
    training's `judge_on_failure`, which the judge's provider also reads (to average repeats); None when they agree.
    `where` names the binding in the message.

    Example:

    ```python
    >>> failure_policy_problem({"on_failure": "neutral"}, "neutral", "its kwargs") is None
    True
    >>> print(failure_policy_problem({"on_failure": "zero"}, "neutral", "its kwargs").split("; ")[0])
    Set the judge failure policy with judge_on_failure, not its kwargs ('zero' there, 'neutral' in judge_on_failure

    ```
    """
    if bound.get("on_failure", judge_on_failure) == judge_on_failure:
        return None
    return (
        f"Set the judge failure policy with judge_on_failure, not {where} ({bound['on_failure']!r} there, "
        f"{judge_on_failure!r} in judge_on_failure; valid choices: {', '.join(ON_FAILURE_POLICIES)})."
    )

