"""Several runs side by side (grid sizes, tasks, data seeds): each method's gain in held-out greedy pass@1 over its
base, with a 95 % interval over seeds, against how competent the base was (greedy pass@1, maj@k, the gap
maj@k − pass@1, pass@k). Where a method helps and where it stops helping is the boundary the figure shows; the
pre-flight's verdict on each base (`self_evolve_trl.eval.preflight`) is set against what training then did."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from self_evolve_trl.eval.preflight import HELP, HURT, preflight_verdict

from .figures import pyplot, save
from .report import BEST, KEY_PAIRS, interval
from .stats import paired_difference, per_seed

BASE_AXES = (("base_greedy", "base greedy pass@1 (%)"), ("base_maj", "base maj@k (%)"),
             ("base_gap", "base maj@k − greedy pass@1 (points)"), ("base_pass", "base pass@k (%)"))


def load_runs(run_dirs: list[str]) -> dict[str, dict]:
    """Each folder's `results.json`, by the folder's name."""
    reports = {}
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: pass folders that a full run wrote (its --output-dir)")
        reports[os.path.basename(os.path.normpath(run_dir))] = json.loads(path.read_text())
    return reports


def boundary_rows(reports: dict[str, dict]) -> list[dict]:
    """One row per (run folder, method): the run's task, grid and data seed, its base's competence, and the method's
    gain over the base in greedy pass@1 (per-seed gains: mean and 95 % t-interval; `stats.paired_difference`)."""
    rows = []
    for name, report in reports.items():
        args, base = report["args"], report["base"]
        for method in dict.fromkeys(r["method"] for r in report["runs"]):
            ours = per_seed(report["runs"], method)
            gain = paired_difference(ours, {s: base["greedy_pass1"] for s in ours})
            rows.append({
                "run": name, "task": args["task"], "grid": args["grid"],
                "data_seed": args["data_seed"], "k": args["eval_samples"], "method": method,
                "base_greedy": base["greedy_pass1"], "base_maj": base["maj_at_k"],
                "base_gap": base["maj_at_k"] - base["greedy_pass1"], "base_pass": base["pass_at_k"],
                "base_judge": report.get("base_judge_accuracy"), "gain": gain,
            })
    return rows


def format_boundary(rows: list[dict]) -> str:
    lines = ["| run | task | grid | data seed | base greedy pass@1 | base maj@k | gap | base pass@k | method | seeds "
             "| greedy pass@1 gain over the base [95% CI] |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['task']} | {r['grid']} | {r['data_seed']} | {100 * r['base_greedy']:.1f} "
                     f"| {100 * r['base_maj']:.1f} | {100 * r['base_gap']:.1f} | {100 * r['base_pass']:.1f} "
                     f"| {r['method']} | {len(r['gain']['seeds'])} | {interval(r['gain'])} |")
    return "\n".join(lines)


def pooled_differences(reports: dict[str, dict], pairs=KEY_PAIRS) -> list[dict]:
    """The key pairs of methods, paired over every (base, seed) the runs share, with one 95 % t-interval: runs on
    one base (the same task, grid, data seed and base scores) from several folders pair with each other, so a method
    run later on a base pairs with the earlier runs there, and several data seeds pool into one interval."""
    values: dict[str, dict[tuple, float]] = {}
    for report in reports.values():
        args, base = report["args"], report["base"]
        key = (args["task"], args["grid"], args["data_seed"], base["greedy_pass1"], base["maj_at_k"])
        for run in report["runs"]:
            values.setdefault(run["method"], {})[(*key, run["seed"])] = run["heldout"]["greedy_pass1"]
    rows = []
    for a, b, meaning in pairs:
        if a == BEST or a not in values or b not in values:
            continue
        d = paired_difference(values[a], values[b])
        if d["seeds"]:
            rows.append({"a": a, "b": b, "isolates": meaning, "pairs": len(d["seeds"]),
                         "bases": len({pair[:-1] for pair in d["seeds"]}), "greedy_pass1": d})
    return rows


def format_pooled(rows: list[dict]) -> str:
    lines = ["| method A − method B | isolates | bases | pairs (base, seed) "
             "| greedy pass@1, mean diff [95% CI] |", "|---|---|---|---|---|"]
    lines += [f"| {r['a']} − {r['b']} | {r['isolates']} | {r['bases']} | {r['pairs']} "
              f"| {interval(r['greedy_pass1'])} |" for r in rows]
    return "\n".join(lines)


def outcome(gains: list[dict]) -> str:
    """What label-free training did to a base: "helped" (some method's 95 % interval lies above 0), "hurt" (no
    method's mean gain is above 0), else "mixed".

    Example:

    ```python
    >>> outcome([{"mean": 0.3, "low": 0.1, "high": 0.5}, {"mean": -0.1, "low": -0.3, "high": 0.1}])
    'helped'
    >>> outcome([{"mean": -0.05, "low": -0.2, "high": 0.1}])
    'hurt'

    ```
    """
    if any(g["low"] > 0 for g in gains):
        return "helped"
    return "hurt" if all(g["mean"] <= 0 for g in gains) else "mixed"


def preflight_rows(rows: list[dict]) -> list[dict]:
    """One row per run: the pre-flight's verdict on its base (maj@k as the pseudo-label accuracy, which it bounds
    from below), what training did, and whether the verdict was right ("helped" for help, "hurt" for hurt)."""
    runs = []
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        base = mine[0]
        verdict = preflight_verdict(base["base_greedy"], base["base_maj"], base["base_maj"]).verdict
        did = outcome([r["gain"] for r in mine])
        best = max(mine, key=lambda r: r["gain"]["mean"])
        right = {HELP: did == "helped", HURT: did == "hurt"}.get(verdict)
        runs.append({"run": run, "base_greedy": base["base_greedy"], "base_maj": base["base_maj"],
                     "base_gap": base["base_gap"], "verdict": verdict, "outcome": did, "right": right,
                     "best_method": best["method"], "best_gain": best["gain"],
                     "better": sum(r["gain"]["mean"] > 0 for r in mine), "methods": len(mine)})
    return runs


def format_preflight(runs: list[dict]) -> str:
    lines = ["| run | base greedy pass@1 | base maj@k | gap | pre-flight verdict | best method, gain [95% CI] "
             "| methods above the base | what training did | verdict right? |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        right = "–" if r["right"] is None else ("yes" if r["right"] else "no")
        lines.append(f"| {r['run']} | {100 * r['base_greedy']:.1f} | {100 * r['base_maj']:.1f} "
                     f"| {100 * r['base_gap']:.1f} | {r['verdict']} | {r['best_method']}, {interval(r['best_gain'])} "
                     f"| {r['better']} of {r['methods']} | {r['outcome']} | {right} |")
    return "\n".join(lines)


def plot_boundary(rows: list[dict], path: str) -> str:
    """Gain over the base (points, 95 % interval) against each of the base's measures; one colour per method."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = plt.get_cmap("tab20").colors
    for ax, (key, label) in zip(axes.flat, BASE_AXES):
        for j, method in enumerate(methods):
            mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r[key])
            x = [100 * r[key] for r in mine]
            y = [100 * r["gain"]["mean"] for r in mine]
            err = [[0 if math.isnan(r["gain"]["low"]) else 100 * (r["gain"]["mean"] - r["gain"]["low"]) for r in mine],
                   [0 if math.isnan(r["gain"]["high"]) else 100 * (r["gain"]["high"] - r["gain"]["mean"])
                    for r in mine]]
            ax.errorbar(x, y, yerr=err, color=colors[j % len(colors)], marker="o", ms=4, lw=1, capsize=2,
                        label=method)
        ax.axhline(0, color="black", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("greedy pass@1 gain over the base (points)")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=8, frameon=False)
    fig.suptitle(f"Label-free gain against the base's competence ({len({r['run'] for r in rows})} runs; "
                 "bars: 95 % t-interval over seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0.03 * math.ceil(len(labels) / 4) + 0.01, 1, 0.97))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    save(fig, path)
    return path


def summarise(run_dirs: list[str], out_dir: str, prefix: str, figures_dir: str | None = None) -> dict:
    """Write `boundary.md`, `boundary.json` and PREFIX_boundary.png to `out_dir` (the figure to `figures_dir` too);
    print the table last."""
    reports = load_runs(run_dirs)
    rows = boundary_rows(reports)
    runs = preflight_rows(rows)
    pooled = pooled_differences(reports)
    os.makedirs(out_dir, exist_ok=True)
    table = "\n\n".join([format_preflight(runs), format_pooled(pooled), format_boundary(rows)])
    Path(out_dir, "boundary.md").write_text(table + "\n")
    Path(out_dir, "boundary.json").write_text(json.dumps({"runs": runs, "pooled": pooled, "rows": rows}, indent=1))
    figures = [plot_boundary(rows, os.path.join(d, f"{prefix}_boundary.png"))
               for d in [out_dir] + ([figures_dir] if figures_dir else [])]
    print(table)
    return {"rows": rows, "runs": runs, "pooled": pooled, "table": table, "figures": figures}
