"""A short summary of a run from the trainer's log history: what the rewards and the votes did."""

from __future__ import annotations

import json
import os
from typing import Any


# (log key, label) in display order; label metrics appear only when the data has labels.
SUMMARY_METRICS = [
    ("reward", "reward"),
    ("self_consistency/majority_ratio", "majority ratio (mean p_max)"),
    ("self_consistency/high_confidence_share", "groups with p_max >= 0.8"),
    ("self_consistency/answer_entropy", "answer entropy"),
    ("self_consistency/abstention_rate", "abstention rate"),
    ("self_consistency/format_violation_rate", "format violations"),
    ("labels/rollout_accuracy", "rollout accuracy (pass@1, hidden labels)"),
    ("labels/pseudo_label_accuracy", "pseudo-label accuracy (hidden labels)"),
    ("labels/maj_at_g", "maj@G (hidden labels)"),
    ("completions/mean_length", "completion length (tokens)"),
    ("entropy", "token entropy"),
]


def summarize_log_history(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """First, last, min and max of the summary metrics over the logged training steps."""
    steps = [entry for entry in log_history if "step" in entry and "reward" in entry]
    summary: dict[str, Any] = {"steps": max((e["step"] for e in steps), default=0), "metrics": {}}
    for key, _ in SUMMARY_METRICS:
        values = [e[key] for e in steps if e.get(key) is not None]
        if values:
            summary["metrics"][key] = {"first": values[0], "last": values[-1], "min": min(values), "max": max(values)}
    final = [e for e in log_history if "train_runtime" in e]
    if final:
        summary["train_runtime_s"] = final[-1]["train_runtime"]
        summary["train_loss"] = final[-1].get("train_loss")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines of text: each metric's first and last value."""
    lines = [f"Run summary: {summary['steps']} steps"
             + (f" in {summary['train_runtime_s']:.0f}s" if "train_runtime_s" in summary else "")]
    labels = dict(SUMMARY_METRICS)
    for key, stats in summary["metrics"].items():
        lines.append(f"  {labels[key]:<44} {stats['first']:>8.3f} -> {stats['last']:>8.3f}")
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
