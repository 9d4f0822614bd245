"""A one-screen summary of a run from the trainer's log history: what the rewards, the votes and (where the data has
answers) the accuracy did, the held-out evaluations, and a warning when the run looks like it is collapsing.

Collapse (label-free training converging on its own early majority) shows as the share of confident groups
(p_max >= 0.8) rising fast while the token entropy or the completion length falls. The warning fires when, from the
first to the last quarter of the logged steps, the high-confidence share rises by at least `COLLAPSE_MIN_RISE` and
the token entropy or the completion length falls by at least `COLLAPSE_MIN_RELATIVE_FALL` of its first value.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any


# (log key, label) in display order; metrics that a run does not log (labels, judge, ...) are left out.
SUMMARY_METRICS = [
    ("reward", "reward"),
    ("self_consistency/majority_ratio", "majority ratio (mean p_max)"),
    ("self_consistency/high_confidence_share", "groups with p_max >= 0.8"),
    ("self_consistency/answer_entropy", "answer entropy (nats)"),
    ("self_consistency/distinct_answers", "distinct answers per group"),
    ("self_consistency/abstention_rate", "abstention rate"),
    ("self_consistency/format_violation_rate", "format violations"),
    ("entropy", "token entropy"),
    ("completions/mean_length", "completion length (tokens)"),
    ("judge/score_mean", "judge score (mean, parsed judgements)"),  # Actor–Judge rows: only with judge_modulated
    ("judge/gate_mean", "judge gate (mean)"),
    ("judge/parse_failure_rate", "judge answers without a parseable score"),
    ("judge/request_failure_rate", "judge requests failed"),
    ("labels/rollout_accuracy", "rollout accuracy (pass@1, hidden labels)"),
    ("labels/pseudo_label_accuracy", "pseudo-label accuracy (hidden labels)"),
    ("labels/maj_at_g", "maj@G (hidden labels)"),
    ("labels/reward_accuracy", "reward accuracy (hidden labels)"),
]
# Held-out evaluation (`eval_strategy`); the best value names the checkpoint step to keep.
EVAL_METRICS = [
    ("eval_labels/rollout_accuracy", "eval pass@1 (sampled)"),
    ("eval_labels/maj_at_g", "eval maj@k"),
    ("eval_labels/pass_at_g", "eval pass@k"),
]
JUDGE_PREFIX = "judge/"

COLLAPSE_MIN_RISE = 0.3
COLLAPSE_MIN_RELATIVE_FALL = 0.25
FLAT_RELATIVE_CHANGE = 0.05


def _values(entries: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every entry that logged a finite value for `key`."""
    out = []
    for entry in entries:
        value = entry.get(key)
        if isinstance(value, (int, float)) and not math.isnan(value):
            out.append((entry.get("step", 0), float(value)))
    return out


def _window_means(values: list[float]) -> tuple[float, float]:
    """Means of the first and the last quarter of the values (at least one value each)."""
    width = max(1, len(values) // 4)
    return sum(values[:width]) / width, sum(values[-width:]) / width


def trend(values: list[float]) -> str:
    """`rising`, `falling` or `flat`: the last quarter's mean against the first quarter's.

    Example:

    ```python
    >>> trend([0.1, 0.2, 0.5, 0.9]), trend([5.0, 4.0, 2.0, 1.0]), trend([1.0, 1.01, 0.99, 1.0])
    ('rising', 'falling', 'flat')

    ```
    """
    first, last = _window_means(values)
    change = last - first
    if abs(change) <= FLAT_RELATIVE_CHANGE * max(abs(first), abs(last)) or abs(change) < 1e-12:
        return "flat"
    return "rising" if change > 0 else "falling"


def _stats(values: list[float]) -> dict[str, Any]:
    first_window, last_window = _window_means(values)
    return {
        "first": values[0],
        "last": values[-1],
        "min": min(values),
        "max": max(values),
        "first_quarter_mean": first_window,
        "last_quarter_mean": last_window,
        "trend": trend(values),
    }


def collapse_check(metrics: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The collapse warning from the summary statistics of the training metrics, or None when the run looks fine
    (or does not log what the check needs)."""
    confident = metrics.get("self_consistency/high_confidence_share")
    if confident is None:
        return None
    rise = confident["last_quarter_mean"] - confident["first_quarter_mean"]
    if rise < COLLAPSE_MIN_RISE:
        return None
    falls = {}
    for key, name in (("entropy", "token entropy"), ("completions/mean_length", "completion length")):
        stats = metrics.get(key)
        if stats is None or stats["first_quarter_mean"] <= 0:
            continue
        fall = 1 - stats["last_quarter_mean"] / stats["first_quarter_mean"]
        if fall >= COLLAPSE_MIN_RELATIVE_FALL:
            falls[name] = (stats["first_quarter_mean"], stats["last_quarter_mean"], fall)
    if not falls:
        return None
    parts = [
        f"groups with p_max >= 0.8 rose {confident['first_quarter_mean']:.2f} -> {confident['last_quarter_mean']:.2f}"
    ]
    parts += [f"{name} fell {a:.3g} -> {b:.3g} (-{fall:.0%})" for name, (a, b, fall) in falls.items()]
    pseudo = metrics.get("labels/pseudo_label_accuracy")
    if pseudo is not None:
        parts.append(
            f"pseudo-label accuracy {pseudo['first_quarter_mean']:.2f} -> {pseudo['last_quarter_mean']:.2f}"
        )
    message = (
        "WARNING: possible collapse: " + "; ".join(parts) + ". The policy may be converging on its own early "
        "majority: check held-out accuracy, and consider an earlier checkpoint, a lower learning rate or a larger "
        "KL coefficient (beta)."
    )
    return {"high_confidence_rise": rise, "falls": {k: v[2] for k, v in falls.items()}, "message": message}


def summarize_log_history(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of the summary metrics over the logged training steps, the held-out evaluations and the collapse
    check."""
    steps = [entry for entry in log_history if "step" in entry and "reward" in entry]
    evals = [entry for entry in log_history if any(key.startswith("eval_") for key in entry) and "reward" not in entry]
    summary: dict[str, Any] = {"steps": max((e["step"] for e in steps), default=0), "metrics": {}, "eval": {}}
    judge_keys = sorted({k for e in steps for k in e if k.startswith(JUDGE_PREFIX)})
    for key in [k for k, _ in SUMMARY_METRICS] + judge_keys:
        values = [v for _, v in _values(steps, key)]
        if values:
            summary["metrics"][key] = _stats(values)
    for key, _ in EVAL_METRICS:
        points = _values(evals, key)
        if points:
            best_step, best = max(points, key=lambda p: (p[1], -p[0]))  # the earliest of equal bests
            summary["eval"][key] = {
                "first": points[0][1],
                "last": points[-1][1],
                "best": best,
                "best_step": best_step,
                "evaluations": len(points),
            }
    collapse = collapse_check(summary["metrics"])
    if collapse is not None:
        summary["collapse_warning"] = collapse
    final = [e for e in log_history if "train_runtime" in e]
    if final:
        summary["train_runtime_s"] = final[-1]["train_runtime"]
        summary["train_loss"] = final[-1].get("train_loss")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """One screen of text: each metric at the start and the end of the run (means of the first and the last quarter
    of the logged steps, robust to step-to-step noise) and its trend, the held-out evaluations (first, last, best
    and its step), and the collapse warning if any."""
    lines = [
        f"Run summary: {summary['steps']} steps"
        + (f" in {summary['train_runtime_s']:.0f}s" if "train_runtime_s" in summary else "")
    ]
    labels = dict(SUMMARY_METRICS)
    if summary["metrics"]:
        lines.append(f"  {'metric (means: first -> last quarter)':<46} {'start':>8}    {'end':>8}  trend")
    for key, stats in summary["metrics"].items():
        lines.append(
            f"  {labels.get(key, key):<46} {stats['first_quarter_mean']:>8.3f} -> {stats['last_quarter_mean']:>8.3f}"
            f"  {stats['trend']}"
        )
    if summary.get("eval"):
        count = max(stats["evaluations"] for stats in summary["eval"].values())
        lines.append(f"Held-out evaluation ({count} evaluations):")
        eval_labels = dict(EVAL_METRICS)
        for key, stats in summary["eval"].items():
            lines.append(
                f"  {eval_labels[key]:<46} {stats['first']:>8.3f} -> {stats['last']:>8.3f}  "
                f"best {stats['best']:.3f} at step {stats['best_step']}"
            )
    if "collapse_warning" in summary:
        lines.append(summary["collapse_warning"]["message"])
    return "\n".join(lines)


def write_summary(output_dir: str, log_history: list[dict[str, Any]], nonfinite: dict[str, int] | None = None) -> str:
    """Write `summary.json` and `summary.txt` to `output_dir`; return the text.

    `nonfinite`: the run's totals of non-finite rewards and advantages (`trainer.nonfinite_counter.state_dict()`).
    """
    summary = summarize_log_history(log_history)
    text = format_summary(summary)
    totals = nonfinite_totals(log_history, nonfinite)
    if totals is not None:
        summary["nonfinite"] = totals
        text += "\n" + format_nonfinite(totals)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(output_dir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    return text


def nonfinite_totals(log_history: list[dict[str, Any]], nonfinite: dict[str, int] | None = None) -> dict[str, int] | None:
    """Non-finite rewards and advantages set to 0 over the run: the trainer's exact totals when given, else the sum
    of the logged per-round counts (exact when every log covers one generation round); None if neither exists.

    ```python
    >>> nonfinite_totals([{"step": 1, "rewards/nonfinite_count": 2.0}, {"step": 2, "rewards/nonfinite_count": 1.0}])
    {'rewards': 3, 'advantages': 0}

    ```
    """
    if nonfinite is None:
        steps = [entry for entry in log_history if "rewards/nonfinite_count" in entry]
        if not steps:
            return None
        nonfinite = {kind: sum(e.get(f"{kind}/nonfinite_count") or 0 for e in steps) for kind in ("rewards", "advantages")}
    return {"rewards": int(nonfinite.get("rewards", 0)), "advantages": int(nonfinite.get("advantages", 0))}


def format_nonfinite(totals: dict[str, int]) -> str:
    """The summary line of the non-finite guards."""
    return f"  {'non-finite rewards / advantages (set to 0)':<44} {totals['rewards']:>8d} / {totals['advantages']}"
