"""Summaries of the runs: the training curves' quarter means, how fast the high-confidence share rises, means ± sd
over seeds, and 95 % t-intervals of the differences between two methods paired by seed."""

from __future__ import annotations

import math
import statistics
from typing import Any

from self_evolve_trl.plot import series

CURVES = {
    "high_confidence": "self_consistency/high_confidence_share",
    "answer_entropy": "self_consistency/answer_entropy",
    "completion_length": "completions/mean_length",
    "pseudo_label_accuracy": "labels/pseudo_label_accuracy",
    "rollout_accuracy": "labels/rollout_accuracy",
    "token_entropy": "entropy",
    "advantage_std": "advantages/std",
}
HELDOUT = ("greedy_pass1", "sampled_pass1", "maj_at_k", "pass_at_k", "sampled_length", "greedy_length",
           "route_direct", "route_rows", "route_cols")
CONFIDENT = 0.5  # the high-confidence share whose sustained reach the table reports
REACH_WINDOW = 5  # ... as a trailing mean over this many steps
REACH_RUN = 5  # ... that stays at or above CONFIDENT for this many consecutive steps

# Two-sided 95 % quantiles of Student's t, t_{0.975}(df), df = 1..30 (larger df: `t_975`'s expansion).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def curve(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the training steps' logged `key` (not the final summary entry)."""
    return series([e for e in history if "train_runtime" not in e], key)


def quarter_means(values: list[float]) -> tuple[float, float]:
    """Means of the first and the last quarter of `values` (NaN for none)."""
    if not values:
        return math.nan, math.nan
    width = max(1, len(values) // 4)
    return sum(values[:width]) / width, sum(values[-width:]) / width


def early_mean(values: list[float], share: float = 0.5) -> float:
    """Mean of the first `share` of `values` (rounded down, at least one value; NaN for none): the area under the
    curve over the early steps, per step, with no threshold.

    Example:

    ```python
    >>> early_mean([0.0, 0.5, 1.0, 1.0])
    0.25

    ```
    """
    if not values:
        return math.nan
    width = max(1, int(len(values) * share))
    return sum(values[:width]) / width


def sustained_step(steps: list[int], values: list[float], level: float = CONFIDENT, window: int = REACH_WINDOW,
                   run: int = REACH_RUN) -> int | None:
    """The first step from which the trailing `window`-step mean of `values` stays at or above `level` for `run`
    consecutive steps; None if it never does. The mean is defined from the `window`-th step on, so a single early
    value (with few groups a step the share jumps in steps of 1/groups) cannot count on its own.

    Example:

    ```python
    >>> sustained_step([1, 2, 3, 4, 5, 6, 7], [1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 0.0], level=0.5, window=2, run=2)
    5
    >>> print(sustained_step([1, 2, 3], [1.0, 0.0, 0.0], level=0.5, window=3, run=1))
    None

    ```
    """
    streak = 0
    for i in range(window - 1, len(values)):
        mean = sum(values[i - window + 1 : i + 1]) / window
        streak = streak + 1 if mean >= level else 0
        if streak == run:
            return steps[i - run + 1]
    return None


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd; NaN if there are no values or any is NaN (a missing value is never dropped silently)."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def t_975(df: int) -> float:
    """Student's t quantile at 0.975 with `df` degrees of freedom: the table to 30, then the Cornish-Fisher
    expansion around the normal quantile (within 0.001 of the exact value from 30 on).

    Example:

    ```python
    >>> t_975(4), round(t_975(60), 3), round(t_975(10**9), 3)
    (2.776, 2.0, 1.96)

    ```
    """
    if df < 1:
        raise ValueError(f"t_975 needs at least 1 degree of freedom, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Mean of the per-seed differences a − b over the seeds both have, its sample sd and the 95 % t-interval
    mean ± t_{0.975}(n − 1) · sd / √n (NaN bounds for fewer than 2 seeds).

    Example (differences 0.2, 0.0, 0.4: mean 0.2, sd 0.2, half-width 4.303 · 0.2 / √3 = 0.497):

    ```python
    >>> d = paired_difference({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.6, 1: 0.7, 2: 0.5, 3: 0.1})
    >>> d["seeds"], round(d["mean"], 3), round(d["sd"], 3), round(d["low"], 3), round(d["high"], 3)
    ([0, 1, 2], 0.2, 0.2, -0.297, 0.697)

    ```
    """
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    mean, sd = mean_sd(diffs)
    if len(diffs) < 2 or math.isnan(sd):
        return {"seeds": seeds, "mean": mean, "sd": sd, "low": math.nan, "high": math.nan}
    half = t_975(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return {"seeds": seeds, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


def per_seed(results: list[dict], method: str, key: str = "greedy_pass1") -> dict[int, float]:
    """{seed: held-out `key`} of one method's runs."""
    return {r["seed"]: r["heldout"][key] for r in results if r["method"] == method}


def aggregate(base: dict[str, float], results: list[dict], level: float = CONFIDENT, window: int = REACH_WINDOW,
              run: int = REACH_RUN) -> list[dict]:
    """One row per method: held-out means ± sd over seeds, the training curves' first/last quarter means, the mean
    high-confidence share of the first half of the steps, and per seed the step it stays >= `level` from (None:
    never; `sustained_step`)."""
    rows = [{"method": "base (supervised)", "seeds": 1, **{k: (v, 0.0) for k, v in base.items() if k != "examples"}}]
    for name in dict.fromkeys(r["method"] for r in results):
        runs = [r for r in results if r["method"] == name]
        row: dict[str, Any] = {"method": name, "seeds": len(runs), "seed_ids": [r["seed"] for r in runs]}
        for key in HELDOUT:
            row[key] = mean_sd([r["heldout"][key] for r in runs])
        for short, key in CURVES.items():
            firsts, lasts = zip(*(quarter_means(curve(r["history"], key)[1]) for r in runs))
            row[f"{short}_first"] = mean_sd(list(firsts))
            row[f"{short}_last"] = mean_sd(list(lasts))
        confidence = [curve(r["history"], CURVES["high_confidence"]) for r in runs]
        row["high_confidence_early"] = mean_sd([early_mean(values) for _, values in confidence])
        row["confident_steps"] = [sustained_step(steps, values, level, window, run) for steps, values in confidence]
        row["train_s"] = mean_sd([r["train_s"] for r in runs])
        rows.append(row)
    return rows
