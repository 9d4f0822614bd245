"""The tables: held-out results and training curves per method, the paired differences between methods (95 %
intervals over seeds), and the goal check."""

from __future__ import annotations

import math
import statistics
from typing import Any

from .stats import CONFIDENT, REACH_RUN, REACH_WINDOW, mean_sd, paired_difference, per_seed

BEST = "best"  # in KEY_PAIRS: the method with the highest mean held-out greedy pass@1
# (method A, method B, what A − B isolates); pairs with a method that did not run are left out.
KEY_PAIRS = (
    ("judge_modulated+lse", "soft_frequency+lse", "the judge, on the same prior and advantage"),
    ("judge_modulated+lse", "judge_modulated+lse (chance judge)", "the judge's verdicts (same scores, shuffled)"),
    ("judge_modulated+lse (expert judge)", "soft_frequency+lse", "an expert judge, on the same prior and advantage"),
    ("judge_modulated+lse (expert judge)", "judge_modulated+lse (chance judge)",
     "an expert judge against one at chance"),
    (BEST, "majority_vote+grpo", "the best method against MM-UPT"),
    ("soft_frequency+grpo", "majority_vote+grpo", "the reward (soft against hard), with grpo"),
    ("soft_frequency+centered", "majority_vote+centered", "the reward (soft against hard), with centered"),
    ("majority_vote+centered", "majority_vote+grpo", "the advantage (centered against grpo), majority vote"),
    ("soft_frequency+centered", "soft_frequency+grpo", "the advantage (centered against grpo), soft reward"),
    ("soft_frequency+lse", "soft_frequency+centered", "the advantage (lse against centered)"),
    ("ttrl_vote+grpo", "majority_vote+grpo", "TTRL's larger vote"),
    ("majority_vote+grpo (filter)", "majority_vote+grpo", "the consistency filter"),
    ("csrs", "csrs_continuation", "CSRS re-inference in a new turn against the same turn"),
    ("csrs", "csrs_no_vsp", "CSRS's visual perturbation (re-inference on noised images against clean ones)"),
    ("self_certainty+grpo", "token_entropy+grpo", "self-certainty (Intuitor) against token entropy (RENT)"),
)


def reached_summary(per_seed_steps: list[int | None]) -> str:
    """How many seeds reach the level and the mean step of those that do.

    Example:

    ```python
    >>> reached_summary([10, 40, None])
    '2 of 3 seeds, mean step 25 ± 21; 1 never'
    >>> reached_summary([None, None])
    '0 of 2 seeds; 2 never'

    ```
    """
    reached = [s for s in per_seed_steps if s is not None]
    text = f"{len(reached)} of {len(per_seed_steps)} seeds"
    if reached:
        mean, sd = mean_sd([float(s) for s in reached])
        text += f", mean step {mean:.0f}" + (f" ± {sd:.0f}" if sd else "")
    never = len(per_seed_steps) - len(reached)
    return text + (f"; {never} never" if never else "")


def pct(pair) -> str:
    mean, sd = pair
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * sd:.1f}" if sd else f"{100 * mean:.1f}"


def _arrow(row, short, digits=2, percent=False) -> str:
    first, last = row.get(f"{short}_first"), row.get(f"{short}_last")
    if first is None or math.isnan(first[0]):
        return "–"
    if percent:
        return f"{100 * first[0]:.0f} → {100 * last[0]:.0f}"
    return f"{first[0]:.{digits}f} → {last[0]:.{digits}f}"


def steps_per_seed(steps: list[int | None] | None) -> str:
    if not steps:
        return "–"
    return " / ".join("never" if s is None else str(s) for s in steps)


def format_table(rows: list[dict], k: int, level: float = CONFIDENT, window: int = REACH_WINDOW,
                 run: int = REACH_RUN) -> str:
    header = (f"| method | seeds | greedy pass@1 | sampled pass@1 | maj@{k} | pass@{k} | pseudo-label acc. (train) "
              f"| high-conf. share (train) | high-conf. share, mean of the first half "
              f"| step its {window}-step mean stays ≥ {level} for {run} steps (per seed) "
              f"| answer entropy (train) | completion length (train) |")
    lines = [header, "|" + "---|" * 12]
    for row in rows:
        early_share = row.get("high_confidence_early")
        lines.append(
            f"| {row['method']} | {row['seeds']} | {pct(row['greedy_pass1'])} | {pct(row['sampled_pass1'])} "
            f"| {pct(row['maj_at_k'])} | {pct(row['pass_at_k'])} "
            f"| {_arrow(row, 'pseudo_label_accuracy', percent=True)} "
            f"| {_arrow(row, 'high_confidence', percent=True)} "
            f"| {pct(early_share) if early_share else '–'} | {steps_per_seed(row.get('confident_steps'))} "
            f"| {_arrow(row, 'answer_entropy')} "
            f"| {_arrow(row, 'completion_length', digits=1)} |"
        )
    return "\n".join(lines)


def differences(results: list[dict], best: str | None, pairs=KEY_PAIRS,
                keys=("greedy_pass1", "maj_at_k")) -> list[dict]:
    """The paired differences A − B (per seed, then mean and 95 % t-interval) of `keys` for each pair of `pairs`
    whose methods both ran; `BEST` stands for `best`."""
    ran = {r["method"] for r in results}
    rows = []
    for a, b, meaning in pairs:
        a = best if a == BEST else a
        if a is None or a == b or a not in ran or b not in ran:
            continue
        row = {"a": a, "b": b, "isolates": meaning}
        for key in keys:
            row[key] = paired_difference(per_seed(results, a, key), per_seed(results, b, key))
        rows.append(row)
    return rows


def interval(d: dict) -> str:
    """A difference in points with its 95 % interval, e.g. `+3.0 [-1.2, +7.2]`."""
    if math.isnan(d["mean"]):
        return "–"
    text = f"{100 * d['mean']:+.1f}"
    return text if math.isnan(d["low"]) else text + f" [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def format_differences(rows: list[dict], k: int) -> str:
    lines = [f"| method A − method B | isolates | seeds | greedy pass@1, mean diff [95% CI] "
             f"| maj@{k}, mean diff [95% CI] |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['a']} − {row['b']} | {row['isolates']} | {len(row['greedy_pass1']['seeds'])} "
                     f"| {interval(row['greedy_pass1'])} | {interval(row['maj_at_k'])} |")
    return "\n".join(lines)


def goal_check(rows: list[dict]) -> dict[str, Any]:
    """The goal for the best method (by mean greedy pass@1): +10 points over the base, and half of the base's
    gap between greedy pass@1 and maj@k closed; and which method's high-confidence share rises fastest, by the
    threshold-free early mean and by the step it stays at the level from (median over seeds, never = last)."""
    base = rows[0]
    trained = [r for r in rows[1:] if not math.isnan(r["greedy_pass1"][0])]
    if not trained:
        return {}
    best = max(trained, key=lambda r: r["greedy_pass1"][0])
    gain = best["greedy_pass1"][0] - base["greedy_pass1"][0]
    gap = base["maj_at_k"][0] - base["greedy_pass1"][0]
    closed = gain / gap if gap > 0 else math.nan
    rises = {r["method"]: r["high_confidence_last"][0] - r["high_confidence_first"][0] for r in trained
             if not math.isnan(r["high_confidence_first"][0])}
    early = {r["method"]: r["high_confidence_early"][0] for r in trained
             if not math.isnan(r["high_confidence_early"][0])}
    median_step = {r["method"]: statistics.median(math.inf if s is None else s for s in r["confident_steps"])
                   for r in trained if r["confident_steps"]}
    median_step = {m: v for m, v in median_step.items() if math.isfinite(v)}  # most seeds never: not ranked
    return {
        "best_method": best["method"],
        "greedy_gain_points": 100 * gain,
        "base_gap_points": 100 * gap,
        "gap_closed": closed,
        "goal_met": gain >= 0.10 and (gap <= 0 or closed >= 0.5),
        "high_confidence_rise": rises,
        "fastest_high_confidence_rise": max(rises, key=rises.get) if rises else None,
        "high_confidence_early_mean": early,
        "highest_early_high_confidence": max(early, key=early.get) if early else None,
        "high_confidence_reached_at": {r["method"]: r["confident_steps"] for r in trained},
        "earliest_high_confidence": min(median_step, key=median_step.get) if median_step else None,
    }
