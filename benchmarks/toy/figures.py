"""The figures: training curves per method (mean over seeds, lowest-to-highest-seed band) and held-out bars."""

from __future__ import annotations

import math
import os
import statistics

from self_evolve_trl.plot import smooth

from .stats import CURVES, curve

SMOOTH = 0.9  # EMA weight of the figures' curves (TensorBoard's smoothing)
PANELS = [
    ("high_confidence", "groups with p_max ≥ 0.8 (collapse indicator)"),
    ("answer_entropy", "answer entropy per group (nats)"),
    ("token_entropy", "token entropy (TRL's)"),
    ("completion_length", "completion length (tokens)"),
    ("pseudo_label_accuracy", "pseudo-label accuracy (hidden labels)"),
    ("rollout_accuracy", "rollout pass@1 (hidden labels)"),
]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(j: int, colors) -> tuple:
    return colors[j % len(colors)], ["-", "--", ":", "-."][j // len(colors) % 4]


def _panel(ax, results: list[dict], names: list[str], short: str, smooth_weight: float, colors, handles) -> None:
    for j, name in enumerate(names):
        curves = [curve(r["history"], CURVES[short]) for r in results if r["method"] == name]
        curves = [c for c in curves if c[0]]
        if not curves:
            continue
        length = min(len(c[0]) for c in curves)
        steps = curves[0][0][:length]
        at_step = list(zip(*[smooth(c[1][:length], smooth_weight) for c in curves]))
        color, style = _style(j, colors)
        (line,) = ax.plot(steps, [statistics.fmean(v) for v in at_step], color=color, linestyle=style, lw=1.6)
        if len(curves) > 1:
            ax.fill_between(steps, [min(v) for v in at_step], [max(v) for v in at_step], color=color, alpha=0.12,
                            lw=0)
        handles.setdefault(name, line)


def plot_curves(results: list[dict], out_dir: str, smooth_weight: float = SMOOTH,
                prefix: str = "self_evolution_toy") -> list[str]:
    """Training curves per method: the mean over seeds of each seed's smoothed curve, with a light band from the
    lowest to the highest seed; high-confidence share, answer and token entropy, completion length, pseudo-label
    and rollout accuracy. One PNG, the legend under the panels."""
    plt = pyplot()
    os.makedirs(out_dir, exist_ok=True)
    fig, axes = plt.subplots(3, 2, figsize=(11, 11))
    names = list(dict.fromkeys(r["method"] for r in results))
    colors = plt.get_cmap("tab10").colors
    handles: dict = {}
    for ax, (short, title) in zip(axes.flat, PANELS):
        _panel(ax, results, names, short, smooth_weight, colors, handles)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(4, max(1, len(handles))), fontsize=10,
               frameon=False)
    seeds = len({r["seed"] for r in results})
    fig.suptitle(f"Label-free training from the supervised base: mean over {seeds} seed(s) of each seed's curve "
                 f"(EMA {smooth_weight}), band: lowest to highest seed", fontsize=11)
    rows_of_legend = math.ceil(len(handles) / 4)
    fig.tight_layout(rect=(0, 0.025 * rows_of_legend + 0.01, 1, 0.97))
    path = os.path.join(out_dir, f"{prefix}_curves.png")
    save(fig, path)
    return [path]


def plot_heldout(rows: list[dict], out_dir: str, k: int, prefix: str = "self_evolution_toy") -> list[str]:
    """Held-out greedy pass@1, sampled pass@1 and maj@k per method (mean ± sd over seeds), base first. One PNG."""
    plt = pyplot()
    metrics = [("greedy_pass1", "greedy pass@1"), ("sampled_pass1", "sampled pass@1"), ("maj_at_k", f"maj@{k}")]
    fig, ax = plt.subplots(figsize=(max(11, 0.8 * len(rows)), 3.8))
    width = 0.8 / len(metrics)
    for j, (key, label) in enumerate(metrics):
        means = [100 * r[key][0] for r in rows]
        sds = [100 * r[key][1] for r in rows]
        ax.bar([i + (j - 1) * width for i in range(len(rows))], means, width, yerr=sds, capsize=3, label=label)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["method"].replace("+", "\n+").replace(" (", "\n(") for r in rows], fontsize=7)
    ax.set_ylabel("% of held-out questions")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.set_title("Held-out accuracy after label-free training (mean ± sd over seeds)", fontsize=10)
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{prefix}_heldout.png")
    save(fig, path)
    return [path]


def save(fig, path: str) -> None:
    """Save a figure as a small PNG (64-colour palette: a quarter of the size, small enough to commit)."""
    from PIL import Image

    fig.savefig(path, dpi=80)
    pyplot().close(fig)
    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
