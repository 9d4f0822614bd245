"""Rewards and diagnostics on whole groups: what the trainer's main process computes from the gathered rows.

The trainer gathers one row per completion from every process (`rows`: the completion, and the prompt, token ids,
label, dataset columns and extra reward inputs), scores them here, then broadcasts the result (see
`docs/architecture.md`, "Training step"). The rewards are documented in `docs/math.md`, "Rewards"; the diagnostics in
`docs/math.md`, "Diagnostics".
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch

from ..answers import MATCH_STATS, completion_text
from .diagnostics import format_pattern_of, per_group_diagnostics, vote_settings
from .heldout import eval_command_label_metrics
from ..data.messages import prompt_text
from ..rewards import RewardFunction
from ..ttrl import larger_vote_metrics, larger_votes
from ..voting import vote_groups

FLOAT32_MAX = torch.finfo(torch.float32).max

# Dataset columns that never reach reward functions as keyword arguments (images are large; prompts come stripped).
NOT_REWARD_COLUMNS = ("prompt", "completion", "completion_ids", "image", "images")


def strip_images(prompt: Any) -> Any:
    """A conversational prompt with image objects replaced by bare `{"type": "image"}` placeholders."""
    if not isinstance(prompt, list):
        return prompt
    stripped = []
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):
            content = [{"type": "image"} if part.get("type") == "image" else part for part in content]
        stripped.append({**message, "content": content})
    return stripped


class RewardLogs:
    """What reward functions log through their `log_metric` / `log_extra` inputs, for a batch of `size` completions."""

    def __init__(self, size: int):
        self.size = size
        self.metrics: dict[str, list[float]] = defaultdict(list)
        self.extra: dict[str, list] = {}

    def log_metric(self, name: str, value: float):
        self.metrics[name].append(float(value))

    def log_extra(self, column: str, values: list):
        if len(values) != self.size:
            raise ValueError(f"log_extra({column!r}) needs one value per completion ({self.size}), got {len(values)}.")
        self.extra[column] = list(values)


def readable_columns(prompts: list, completions: list) -> dict[str, list[str]]:
    """Plain-text `prompt_text` and `completion_text` columns for the completions table of conversational prompts:
    trackers show TRL's `prompt` / `completion` columns (lists of messages) as opaque objects. Empty otherwise."""
    if not prompts or not isinstance(prompts[0], list):
        return {}
    return {"prompt_text": [prompt_text(prompt) for prompt in prompts],
            "completion_text": [completion_text(completion) for completion in completions]}


def row_inputs(rows: list[dict], columns: list[str], extra_names: list[str]) -> dict[str, list]:
    """The per-completion reward inputs of the gathered rows: completions, prompts, token ids, columns and extras."""
    return {
        "completions": [row["completion"] for row in rows],
        "prompts": [row["prompt"] for row in rows],
        "completion_ids": [None if row["completion_ids"] is None else list(row["completion_ids"]) for row in rows],
        **{k: [row["columns"][k] for row in rows] for k in columns},
        **{k: [row["extras"][k] for row in rows] for k in extra_names},
    }


def reward_values(function: RewardFunction, values: list, size: int) -> tuple[list[float], int]:
    """One reward function's values as float32 rewards: None (not scored), NaN, infinities and values beyond float32
    become NaN; returns them with the count of the non-finite ones (None is not counted)."""
    if len(values) != size:
        raise ValueError(
            f"The reward function {function.name!r} returned {len(values)} rewards for {size} completions; "
            "it must return one per completion."
        )
    rewards, nonfinite = [], 0
    for i, value in enumerate(values):
        if value is None:
            rewards.append(math.nan)  # TRL's convention: None = this function does not score this completion
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"The reward function {function.name!r} returned {value!r} for completion {i}; "
                "it must return numbers (or None for a completion it does not score)."
            ) from None
        if math.isfinite(value) and abs(value) <= FLOAT32_MAX:  # rewards are float32: 1e39 would be inf
            rewards.append(value)
        else:
            rewards.append(math.nan)
            nonfinite += 1
    return rewards, nonfinite


def reward_table(reward_funcs: list, reward_inputs: dict[str, Any], size: int) -> tuple[torch.Tensor, int]:
    """The rewards of this package's reward functions, one column per entry of `reward_funcs` (a reward model's column
    stays 0: reward models are scored on each process), and the count of non-finite values."""
    rewards = torch.zeros(size, len(reward_funcs))
    nonfinite = 0
    for j, function in enumerate(reward_funcs):
        if isinstance(function, RewardFunction):
            values, bad = reward_values(function, function.call_with(reward_inputs), size)
            rewards[:, j] = torch.tensor(values, dtype=torch.float32)
            nonfinite += bad
    return rewards, nonfinite


def group_metrics(reward_funcs: list, settings: dict[str, Any], completions: list, labels: list, group_size: int,
                  training: bool, vote_completions: list | None = None) -> tuple[dict[str, Any], list]:
    """The diagnostics of the groups, by the vote the rewards took, and every completion's answer in that vote; with
    TTRL's extra votes (`vote_completions`), the `ttrl/*` metrics of the larger vote too."""
    voted, _, _ = vote_settings(reward_funcs, settings)  # the vote the rewards took
    votes = vote_groups(completions, group_size, **voted)
    group_labels = labels[::group_size] if any(label is not None for label in labels) else None
    metrics: dict[str, Any] = per_group_diagnostics(
        votes,
        completions,
        group_labels,
        match=voted["match"],
        format_pattern=format_pattern_of(reward_funcs),
        abstain_as_answer=voted["abstain_as_answer"],
    )
    if not training and "labels/rollout_accuracy" in metrics:
        # held-out evaluation: pass@1, maj@k and pass@k as the evaluation command scores them (see `heldout`)
        metrics.update(eval_command_label_metrics(completions, group_labels, group_size))
    if vote_completions is not None:
        larger = larger_votes(completions, group_size, vote_completions, **voted)
        metrics.update(larger_vote_metrics(larger, group_size, group_labels, voted["match"], voted["abstain_as_answer"]))
    return metrics, [answer for vote in votes for answer in vote.answers]


def match_failures(before: dict[str, int]) -> dict[str, float]:
    """Answer comparisons that timed out or raised since the `MATCH_STATS` snapshot `before` (counted "not equal")."""
    after = MATCH_STATS.snapshot()
    return {f"answers/{key}": float(after.get(key, 0) - before.get(key, 0)) for key in ("math_timeouts", "math_errors")}
