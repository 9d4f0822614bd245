"""The Actor–Judge reward (SPEC §2 `judge_modulated`): a consistency prior modulated by a frozen judge's score.

Three pieces, each usable on its own:

- `judge_gate(scores)`: the bounded gate g(s) = clip(1 + λ⁺·σ((s − t_h)/τ_h) − λ⁻·σ((t_l − s)/τ_l), g_min, g_max);
- `parse_judge_score(text)`: the judge's overall score from its output, or `None` when there is none;
- `judge_modulated(completions, group_size, judge_scores)`: r_i = clip(b_i·g(s_i) + f_i, 0, 1), with b_i a base
  consistency reward (default `soft_frequency` with hard threshold 0.85) and f_i the format penalty.

The judge scores come from `self_evolve_trl.judge` (a frozen copy of the initial policy in process, or an
OpenAI-compatible server); the trainer passes them as the `judge_scores` reward input.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import torch

from ..answers import extract_answer
from . import RewardError, RewardFunction
from .format import DEFAULT_FORMAT_PATTERN, format_reward


ON_FAILURE_POLICIES = ("zero", "neutral")

# A gate within this distance of 1 counts as neither amplifying nor suppressing in the logged shares: the gate is
# flat (|g - 1| < 0.005) for scores in about [0.55, 0.88].
GATE_TOLERANCE = 0.01

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# Where the judge's JSON scores may be, in order of preference (released parser): the closed score block, the score
# block cut off at the end of the output, then anywhere.
_SCORE_BLOCKS = (
    re.compile(r"\[BEGIN SCORES\](.*?)\[END SCORES\]", re.DOTALL),
    re.compile(r"\[SCORES\](.*?)\[END SCORES\]", re.DOTALL),
    re.compile(r"\[BEGIN SCORES\](.*)", re.DOTALL),
    re.compile(r"\[SCORES\](.*)", re.DOTALL),
)


def judge_gate(
    scores: torch.Tensor | Any,
    t_high: float = 0.95,
    tau_high: float = 0.02,
    lam_pos: float = 0.2,
    t_low: float = 0.40,
    tau_low: float = 0.05,
    lam_neg: float = 0.2,
    g_min: float = 0.8,
    g_max: float = 1.2,
) -> torch.Tensor:
    """The bounded gate g(s) of Self-Judge, elementwise on judge scores s ∈ [0, 1].

    g(s) = clip(1 + lam_pos·σ((s − t_high)/tau_high) − lam_neg·σ((t_low − s)/tau_low), g_min, g_max), σ the logistic
    function. With the released defaults g is ≈ 1 for s in about [0.55, 0.88], rises towards 1 + lam_pos for scores
    near 1 and falls towards 1 − lam_neg for scores below t_low.

    Example:

    ```python
    >>> [round(g, 3) for g in judge_gate(torch.tensor([0.0, 0.4, 0.8, 0.95, 1.0])).tolist()]
    [0.8, 0.9, 1.0, 1.1, 1.185]

    ```
    """
    scores = torch.as_tensor(scores)
    if not scores.is_floating_point():
        scores = scores.float()
    amplify = lam_pos * torch.sigmoid((scores - t_high) / tau_high)
    suppress = lam_neg * torch.sigmoid((t_low - scores) / tau_low)
    return (1 + amplify - suppress).clamp(g_min, g_max)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not _NUMBER.fullmatch(value):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


_JSON = json.JSONDecoder()


def _json_objects(text: str):
    """Every JSON object that starts at a `{` of `text`, in order (an outer object before the ones inside it)."""
    start = text.find("{")
    while start >= 0:
        try:
            value, _ = _JSON.raw_decode(text, start)
        except ValueError:  # not JSON from here (LaTeX braces, a truncated object): fails at the first bad character
            value = None
        if isinstance(value, dict):
            yield value
        start = text.find("{", start + 1)


def parse_judge_score(text: str | None, clamp: bool = True) -> float | None:
    """The overall score in a judge's output, clamped to [0, 1]; `None` when there is none (a parse failure).

    Rules (SPEC §2): the last `\\boxed{}` holding a bare number; else the `overall_score` of a JSON object, looked for
    first in the `[BEGIN SCORES] ... [END SCORES]` block (also `[SCORES]`, and a block cut off at the end of the
    output), then anywhere in the output; else `None`. A number outside [0, 1] (e.g. a box that quotes the
    candidate's answer, `\\boxed{3}`) is clamped; `clamp=False` returns it as written, so that a caller can count
    such scores (the judge's `judge/out_of_range_share`).

    Example:

    ```python
    >>> parse_judge_score("[BEGIN THOUGHT] fine [END THOUGHT] ... \\\\boxed{0.85}")
    0.85
    >>> parse_judge_score('[BEGIN SCORES] {"answer_correctness": 1.0, "overall_score": 0.9} [END SCORES] \\\\boxed{0')
    0.9
    >>> parse_judge_score("The answer looks right.") is None
    True
    >>> parse_judge_score("\\\\boxed{3}"), parse_judge_score("\\\\boxed{3}", clamp=False)
    (1.0, 3.0)

    ```
    """
    score = _find_score(text)
    return min(1.0, max(0.0, score)) if clamp and score is not None else score


def _find_score(text: str | None) -> float | None:
    if not text:
        return None
    boxed = extract_answer(text, "boxed")
    if boxed is not None:
        score = _as_number(boxed.strip().strip("$").strip())
        if score is not None:
            return score
    regions = [m.group(1) for pattern in _SCORE_BLOCKS for m in [pattern.search(text)] if m] + [text]
    for region in regions:
        for obj in _json_objects(region):
            if "overall_score" in obj:
                score = _as_number(obj["overall_score"])
                if score is not None:
                    return score
    return None


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
    from . import get_reward_function  # the registry imports this module lazily

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

