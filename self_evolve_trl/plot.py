"""Figures of a run: `python -m self_evolve_trl.plot RUN_DIR [RUN_DIR ...] [--out DIR] [--smooth W]`.

Each training curve is drawn twice: the logged values, faint, and over them their exponential moving average
(`--smooth`, default 0.6, named in the legend); held-out evaluations are drawn as points, unsmoothed.

Reads the log history of each run from its `trainer_state.json` (the run dir's own, written at the end of
`python -m self_evolve_trl.cli`, or the latest `checkpoint-*/trainer_state.json`, whichever has more steps) and
writes one PNG per panel plus `overview.png` with all panels:

    accuracy            rollout pass@1, pseudo-label accuracy, maj@G, pass@G (hidden labels), the held-out eval and
                        the held-out greedy pass@1 and maj@k before and after training (`accuracy_before_after`)
    self_consistency    majority ratio (mean p_max) and the share of groups with p_max >= 0.8 (and the held-out eval's)
    answers             answer entropy and distinct answers per group
    abstention_format   abstention and format-violation rates
    token_entropy       TRL's token entropy of the completions
    completion_length   mean completion length (tokens)
    reward              total reward and each reward function's mean
    judge               every `judge/*` metric (judge score, gate, parse failures) where the run logs them

Panels whose metrics a run does not log (no labels, no judge) are left out. Several runs are overlaid in one
figure per panel, one colour per run, labelled by the run dir's name. Default `--out`: `RUN_DIR/plots` for one run,
`plots-compare` for several.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any


SMOOTH = 0.6  # default EMA weight of the curves drawn over the logged values


class PlotError(ValueError):
    """A run directory without logs, or arguments that cannot work; printed as one line."""


@dataclass(frozen=True)
class Panel:
    """One figure: fixed metrics (log key, legend label) and metrics found by key prefix (and suffix)."""

    name: str
    title: str
    metrics: tuple[tuple[str, str], ...] = ()
    prefix: str | None = None
    suffix: str = ""
    unit_interval: bool = False
    ylabel: str = ""
    exclude: tuple[str, ...] = field(default=())

    def keys(self, available: set[str]) -> list[tuple[str, str]]:
        """The (key, label) pairs of this panel that the runs log, in order."""
        pairs = [(key, label) for key, label in self.metrics if key in available]
        if self.prefix:
            found = sorted(
                k for k in available
                if k.startswith(self.prefix) and k.endswith(self.suffix) and k not in self.exclude
            )
            pairs += [(k, k[len(self.prefix) :].removesuffix(self.suffix)) for k in found]
        return pairs


PANELS = (
    Panel(
        "accuracy",
        "Accuracy (hidden labels; eval = held-out)",
        (
            ("labels/rollout_accuracy", "rollout pass@1"),
            ("labels/pseudo_label_accuracy", "pseudo-label accuracy"),
            ("labels/maj_at_g", "maj@G"),
            ("labels/pass_at_g", "pass@G"),
            ("eval_labels/rollout_accuracy", "eval pass@1"),
            ("eval_labels/maj_at_g", "eval maj@k"),
            ("eval_labels/pass_at_g", "eval pass@k"),
            ("heldout/greedy_pass1", "held-out greedy pass@1 (before, after)"),
            ("heldout/maj_at_k", "held-out maj@k (before, after)"),
        ),
        unit_interval=True,
    ),
    Panel(
        "self_consistency",
        "Self-consistency (collapse: both rise to 1)",
        (
            ("self_consistency/majority_ratio", "majority ratio (mean p_max)"),
            ("self_consistency/high_confidence_share", "groups with p_max >= 0.8"),
            ("eval_self_consistency/majority_ratio", "eval majority ratio"),
            ("eval_self_consistency/high_confidence_share", "eval groups with p_max >= 0.8"),
        ),
        unit_interval=True,
    ),
    Panel(
        "answers",
        "Answer diversity per group",
        (
            ("self_consistency/answer_entropy", "answer entropy (nats)"),
            ("self_consistency/distinct_answers", "distinct answers"),
        ),
    ),
    Panel(
        "abstention_format",
        "Abstentions and format violations",
        (
            ("self_consistency/abstention_rate", "abstention rate"),
            ("self_consistency/format_violation_rate", "format violation rate"),
        ),
        unit_interval=True,
    ),
    Panel("token_entropy", "Token entropy", (("entropy", "token entropy"), ("eval_entropy", "eval token entropy")),
          ylabel="nats"),
    Panel(
        "completion_length",
        "Completion length",
        (("completions/mean_length", "mean length"), ("eval_completions/mean_length", "eval mean length")),
        ylabel="tokens",
    ),
    Panel("reward", "Reward", (("reward", "total reward"),), prefix="rewards/", suffix="/mean"),
    Panel("judge", "Judge", prefix="judge/"),
)


def _state_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    files = [os.path.join(path, "trainer_state.json")] + glob.glob(os.path.join(path, "checkpoint-*", "trainer_state.json"))
    return [f for f in files if os.path.isfile(f)]


def _read_state(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise PlotError(f"Cannot read {path}: {error}") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise PlotError(f"{path} is not a trainer_state.json (no log_history list).")
    return state


def load_log_history(run: str) -> list[dict[str, Any]]:
    """The log history of a run dir (or a checkpoint dir, or a trainer_state.json file): the state file with the
    most steps among the run dir's own and its checkpoints' (the run dir's own on a tie)."""
    if not os.path.exists(run):
        raise PlotError(f"Run directory not found: {run}")
    files = _state_files(run)
    if not files:
        raise PlotError(
            f"No trainer_state.json in {run} or its checkpoint-* folders: give a training output_dir (the trainer "
            "writes its logs at each checkpoint and, with `python -m self_evolve_trl.cli`, at the end)."
        )
    states = [(_read_state(f), i) for i, f in enumerate(files)]
    state, index = max(states, key=lambda s: (s[0].get("global_step", 0), -s[1]))
    history = state["log_history"]
    if not any(isinstance(e, dict) and "step" in e and len(e) > 1 for e in history):
        raise PlotError(f"{files[index]} has no logged steps (empty log_history): was logging_steps set and reached?")
    return history


def run_names(runs: list[str]) -> list[str]:
    """Legend names: each run dir's last path component, or as many trailing components as make them distinct."""
    parts = [os.path.normpath(os.path.abspath(r)).split(os.sep) for r in runs]
    parts = [p[:-1] if p[-1] == "trainer_state.json" else p for p in parts]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{name} ({i})" for i, name in enumerate(names, 1)]


def series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the entries that logged a finite value for `key`."""
    steps, values = [], []
    for entry in history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and "step" in entry:
            steps.append(entry["step"])
            values.append(float(value))
    return steps, values


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's exponential moving average (with its debiasing); `weight` 0 leaves the values as they are.

    Example:

    ```python
    >>> smooth([1.0, 0.0, 0.0], 0.5)
    [1.0, 0.3333333333333333, 0.14285714285714285]

    ```
    """
    if weight <= 0:
        return list(values)
    out, last, debias = [], 0.0, 0.0
    for value in values:
        last = last * weight + (1 - weight) * value
        debias = debias * weight + (1 - weight)
        out.append(last / debias)
    return out


def _draw_panel(ax, panel: Panel, pairs, runs: dict[str, list[dict[str, Any]]], weight: float) -> None:
    import matplotlib.pyplot as plt  # matplotlib is slow to import: only drawing needs it
    from matplotlib.ticker import MaxNLocator

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    several = len(runs) > 1
    for r, (run, history) in enumerate(runs.items()):
        for m, (key, label) in enumerate(pairs):
            steps, values = series(history, key)
            if not steps:
                continue
            is_eval = key.startswith(("eval_", "heldout/"))
            color = colors[(r if several else m) % len(colors)]
            style = styles[m % len(styles)] if several else "-"
            name = f"{run}: {label}" if several else label
            smoothed = not is_eval and weight > 0 and len(steps) > 1
            if smoothed:  # the logged values, faint, under their moving average
                ax.plot(steps, values, linestyle=style, color=color, alpha=0.25, lw=0.8)
                name += f" (EMA {weight:g})"
            ax.plot(
                steps,
                smooth(values, weight) if smoothed else values,
                linestyle=style,
                marker="o" if is_eval or len(steps) == 1 else None,
                markersize=4,
                color=color,
                label=name,
                lw=1.8 if smoothed else 1.2,
            )
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("step")
    if panel.ylabel:
        ax.set_ylabel(panel.ylabel)
    if panel.unit_interval:
        ax.set_ylim(-0.03, 1.03)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if several:  # one entry per run and metric: beside the plot, not over the curves
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=7, loc="best")


def plot_runs(runs: dict[str, list[dict[str, Any]]], out_dir: str, smooth_weight: float = 0.0) -> list[str]:
    """Write one PNG per panel that the runs have metrics for, plus `overview.png`; return the paths written."""
    import matplotlib  # slow to import: only drawing needs it; the Agg backend is set before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not 0 <= smooth_weight < 1:
        raise PlotError(f"--smooth must be in [0, 1), got {smooth_weight}.")
    available = {key for history in runs.values() for entry in history for key in entry}
    panels = [(panel, panel.keys(available)) for panel in PANELS]
    panels = [(panel, pairs) for panel, pairs in panels if any(series(h, k)[0] for h in runs.values() for k, _ in pairs)]
    if not panels:
        raise PlotError(f"The logs of {', '.join(runs)} have none of the plotted metrics (reward, self_consistency/*, ...).")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for panel, pairs in panels:
        fig, ax = plt.subplots(figsize=(10 if len(runs) > 1 else 7, 4.2))
        _draw_panel(ax, panel, pairs, runs, smooth_weight)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{panel.name}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    columns = 2
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(19 if len(runs) > 1 else 13, 3.8 * rows), squeeze=False)
    for ax, (panel, pairs) in zip(axes.flat, panels):
        _draw_panel(ax, panel, pairs, runs, smooth_weight)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(" vs ".join(runs))
    fig.tight_layout()
    path = os.path.join(out_dir, "overview.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m self_evolve_trl.plot",
        description="PNG figures of one run, or an overlay of several, from their trainer_state.json.",
        epilog="example: python -m self_evolve_trl.plot outputs/tiny-cpu   (writes outputs/tiny-cpu/plots/*.png)",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training output_dir(s), checkpoint dirs or trainer_state.json files")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/plots for one run, plots-compare for several)")
    parser.add_argument("--smooth", type=float, default=SMOOTH,
                        help=f"weight in [0, 1) of the exponential moving average drawn over each training curve (the "
                             f"logged values stay, faint, underneath; default {SMOOTH}; 0: the logged values only)")
    args = parser.parse_args(argv)
    try:
        histories = [load_log_history(run) for run in args.runs]
        runs = dict(zip(run_names(args.runs), histories))
        out = args.out or (os.path.join(args.runs[0], "plots") if len(args.runs) == 1 and os.path.isdir(args.runs[0]) else "plots-compare")
        written = plot_runs(runs, out, args.smooth)
    except PlotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
