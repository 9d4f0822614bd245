"""A one-screen summary of a run from the trainer's log history: first the held-out accuracy before -> after training
and the verdict (where `accuracy_before_after` scored them), then what the rewards, the votes and (where the data has
answers) the accuracy did, the held-out evaluations, and a verdict when the policy grows confident
(`collapse.collapse_check`).

`SummaryCallback` writes the summary at the end of training (`SelfEvolveGRPOTrainer` registers it).
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from typing import Any

from transformers import TrainerCallback

from .badrows import rows_text
from .collapse import collapse_check
from .console import emphasize
from .diagnostics import KINDS

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
    ("labels/pass_at_g", "pass@G (hidden labels)"),
    ("labels/reward_accuracy", "reward accuracy (hidden labels)"),
]
# The lines also shown by kind of question, below their own, when the run logged both kinds (`<key>/image`,
# `<key>/text`; docs/math.md#diagnostics-kinds).
BY_KIND = ("self_consistency/majority_ratio", "labels/pseudo_label_accuracy")
# Held-out evaluation (`eval_strategy`); the best value names the checkpoint step to keep.
EVAL_METRICS = [
    ("eval_labels/rollout_accuracy", "eval pass@1 (sampled)"),
    ("eval_labels/maj_at_g", "eval maj@k"),
    ("eval_labels/pass_at_g", "eval pass@k"),
]
# Every `judge/*` metric goes to summary.json; the text shows those of SUMMARY_METRICS only (one screen).
JUDGE_PREFIX = "judge/"

FLAT_RELATIVE_CHANGE = 0.05
CLEAR_CHANGE = 0.02  # held-out greedy pass@1 moves by less: "no clear change"
HELDOUT_PREFIX = "heldout/"  # before/after scores (`self_evolve_trl.training.before_after`)
HELDOUT_KEY = HELDOUT_PREFIX + "greedy_pass1"
WIDTH = 119  # the summary's text is wrapped to this many columns


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


def heldout_before_after(log_history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The held-out scores before and after training (`accuracy_before_after`): the first and the last
    `heldout/*` entries of the log history, without their prefix; None unless both exist.

    Example:

    ```python
    >>> history = [{"step": 0, "heldout/greedy_pass1": 0.3, "heldout/maj_at_k": 0.6, "heldout/k": 8.0},
    ...            {"step": 2, "reward": 0.5},
    ...            {"step": 2, "heldout/greedy_pass1": 0.7, "heldout/maj_at_k": 0.75, "heldout/k": 8.0}]
    >>> heldout_before_after(history)["after"]
    {'step': 2, 'greedy_pass1': 0.7, 'maj_at_k': 0.75, 'k': 8.0}

    ```
    """
    entries = [e for e in log_history if HELDOUT_KEY in e]
    if len(entries) < 2 or entries[0].get("step", 0) == entries[-1].get("step", 0):
        return None

    def strip(entry):
        return {k.removeprefix(HELDOUT_PREFIX): v for k, v in entry.items()
                if k.startswith(HELDOUT_PREFIX) or k == "step"}

    return {"before": strip(entries[0]), "after": strip(entries[-1])}


def verdict(summary: dict[str, Any]) -> str | None:
    """One word on the run: from the held-out greedy pass@1 where it was scored before and after (`improved`,
    `worse`, or `no clear change` within `CLEAR_CHANGE`), else the collapse check's verdict (None if neither).

    ```python
    >>> verdict({"heldout": {"before": {"greedy_pass1": 0.3}, "after": {"greedy_pass1": 0.7}}})
    'improved'
    >>> verdict({"collapse_check": {"verdict": "collapse"}})
    'collapse'

    ```
    """
    heldout = summary.get("heldout")
    if heldout is not None:
        change = heldout["after"]["greedy_pass1"] - heldout["before"]["greedy_pass1"]
        if abs(change) < CLEAR_CHANGE:
            return "no clear change"
        return "improved" if change > 0 else "worse"
    return summary.get("collapse_check", {}).get("verdict")


def format_heldout(summary: dict[str, Any]) -> list[str]:
    """The summary's first lines: held-out accuracy before -> after, then the verdict (none without held-out scores:
    the collapse check's message, last, says it)."""
    heldout = summary.get("heldout")
    if heldout is None:
        return []
    before, after = heldout["before"], heldout["after"]
    left_out = int(after.get("left_out_seen_in_training", 0))
    note = f"; {left_out} left out, seen in training" if left_out else ""
    points = 100 * (after["greedy_pass1"] - before["greedy_pass1"])
    detail = f"held-out greedy pass@1 {points:+.1f} points"
    check = summary.get("collapse_check")
    if check is not None:
        detail += f"; training curves: {check['verdict']}"
    return [
        f"Held-out accuracy, before -> after training ({int(after.get('questions', 0))} questions never trained "
        f"on{note}):",
        f"  {'greedy pass@1':<16} {before['greedy_pass1']:.3f} -> {after['greedy_pass1']:.3f}",
        f"  {'maj@' + str(int(after.get('k', 0))):<16} {before['maj_at_k']:.3f} -> {after['maj_at_k']:.3f}",
        f"Verdict: {summary['verdict']} ({detail})",
    ]


def summarize_log_history(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of the summary metrics over the logged training steps, the held-out evaluations and the collapse
    check."""
    steps = [entry for entry in log_history if "step" in entry and "reward" in entry]
    evals = [entry for entry in log_history if any(key.startswith("eval_") for key in entry) and "reward" not in entry]
    summary: dict[str, Any] = {"steps": max((e["step"] for e in steps), default=0), "metrics": {}, "eval": {}}
    judge_keys = sorted({k for e in steps for k in e if k.startswith(JUDGE_PREFIX)})
    keys = [k for k, _ in SUMMARY_METRICS] + judge_keys
    by_kind = {key: [f"{key}/{kind}" for kind in KINDS] for key in BY_KIND}  # each below its own line
    for key in [logged for key in keys for logged in [key, *by_kind.get(key, [])]]:
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
    collapse = collapse_check(summary["metrics"], summary["eval"])
    if collapse is not None:
        summary["collapse_check"] = collapse
    heldout = heldout_before_after(log_history)
    if heldout is not None:
        summary["heldout"] = heldout
    summary["verdict"] = verdict(summary)
    final = [e for e in log_history if "train_runtime" in e]
    if final:
        summary["train_runtime_s"] = final[-1]["train_runtime"]
        summary["train_loss"] = final[-1].get("train_loss")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """One screen of text (at most about 40 lines of `WIDTH` columns): each metric at the start and the end of the
    run (means of the first and the last quarter of the logged steps, robust to step-to-step noise) and its trend,
    the held-out evaluations (first, last, best and its step), and the collapse check's verdict if it fired. Judge
    metrics other than those of `SUMMARY_METRICS` are counted on one line and left to summary.json."""
    lines = format_heldout(summary) + [
        f"Run summary: {summary['steps']} steps"
        + (f" in {summary['train_runtime_s']:.0f}s" if "train_runtime_s" in summary else "")
    ]
    labels = dict(SUMMARY_METRICS) | {f"{key}/{kind}": f"  {kind} questions" for key in BY_KIND for kind in KINDS}
    if summary["metrics"]:
        lines.append(f"  {'metric (means: first -> last quarter)':<46} {'start':>8}    {'end':>8}  trend")
    for key, stats in summary["metrics"].items():
        if key not in labels:
            continue
        lines.append(
            f"  {labels[key]:<46} {stats['first_quarter_mean']:>8.3f} -> {stats['last_quarter_mean']:>8.3f}"
            f"  {stats['trend']}"
        )
    more_judge = [key for key in summary["metrics"] if key not in labels and key.startswith(JUDGE_PREFIX)]
    if more_judge:
        lines.append(f"  (and {len(more_judge)} more judge/* metrics in summary.json)")
    if summary.get("eval"):
        count = max(stats["evaluations"] for stats in summary["eval"].values())
        lines.append(f"Held-out evaluation ({count} evaluations):")
        eval_labels = dict(EVAL_METRICS)
        for key, stats in summary["eval"].items():
            lines.append(
                f"  {eval_labels[key]:<46} {stats['first']:>8.3f} -> {stats['last']:>8.3f}  "
                f"best {stats['best']:.3f} at step {stats['best_step']}"
            )
    if "collapse_check" in summary:
        message = summary["collapse_check"]["message"]
        lines.append(textwrap.fill(message, width=WIDTH, subsequent_indent="  ", break_on_hyphens=False))
    return "\n".join(lines)


def write_summary(output_dir: str, log_history: list[dict[str, Any]], nonfinite: dict[str, int] | None = None,
                  skipped_rows: dict[int, str] | None = None) -> str:
    """Write `summary.json` and `summary.txt` to `output_dir`; return the text.

    `nonfinite`: the run's totals of non-finite rewards and advantages (`trainer.nonfinite_counter.state_dict()`);
    `skipped_rows`: the unreadable training rows skipped (index -> reason, `trainer.bad_rows.rows`).
    """
    summary = summarize_log_history(log_history)
    text = format_summary(summary)
    totals = nonfinite_totals(log_history, nonfinite)
    if totals is not None:
        summary["nonfinite"] = totals
        text += "\n" + format_nonfinite(totals)
    if skipped_rows:
        summary["skipped_rows"] = {str(index): reason for index, reason in sorted(skipped_rows.items())}
        text += "\n" + format_skipped_rows(skipped_rows)
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


def format_skipped_rows(rows: dict[int, str]) -> str:
    """The summary line of the unreadable dataset rows skipped (`on_bad_row: skip`).

    ```python
    >>> format_skipped_rows({40: "Cannot read image 40.png", 3: "Image file not found: 3.png"})
    '  dataset rows skipped (unreadable)                   2: rows 3, 40'

    ```
    """
    return f"  {'dataset rows skipped (unreadable)':<44} {len(rows):>8d}: rows {rows_text(rows)}"


class SummaryCallback(TrainerCallback):
    """Write `summary.txt` / `summary.json` to `output_dir` at the end of training and print the text unless
    `print_summary` is off (on the main process only), for the command line and the Python API alike.

    `Trainer.train` calls `on_train_end` after it has logged the run's totals (`train_runtime`, `train_loss`), so
    the log history is complete; `nonfinite_counter` is the trainer's run totals of non-finite rewards and
    advantages (restored in place on resume), `bad_rows` its skipped dataset rows (`badrows.BadRows`).
    """

    def __init__(self, nonfinite_counter=None, bad_rows=None):
        self.nonfinite_counter = nonfinite_counter
        self.bad_rows = bad_rows
        self.text: str | None = None

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        nonfinite = self.nonfinite_counter.state_dict() if self.nonfinite_counter is not None else None
        skipped = self.bad_rows.rows if self.bad_rows is not None else None
        self.text = write_summary(args.output_dir, state.log_history, nonfinite, skipped)
        if getattr(args, "print_summary", True):
            print(emphasize(self.text), flush=True)
