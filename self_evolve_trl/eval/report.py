"""The results table (Markdown and JSON), like the papers' Table 1, with the protocol behind every number; and the
per-benchmark difference between two result files (`--compare A.json B.json`)."""

from __future__ import annotations

import json
import os

from .benchmarks import EvalError
from .preflight import preflight_lines

METRIC_LABELS = {
    "accuracy": "accuracy",
    "score_strict": "score, strict",
    "score_loose": "score, loose",
    "worst_case": "worst case",
    "average_case": "average case",
}
MODES = ("greedy", "sampled", "majority")


def mode_label(mode: str, run: dict) -> str:
    if mode == "greedy":
        return "greedy pass@1"
    k = run.get("samples")
    if mode == "sampled":
        return f"sampled pass@1 (k={k}, T={run.get('temperature')}, top-p={run.get('top_p')})"
    return f"maj@{k}"


def column_label(name: str, entry: dict, run: dict) -> str:
    label = entry["title"]
    notes = []
    if name == "mathverse" and run.get("mathverse_version") not in (None, "all"):
        notes.append(str(run["mathverse_version"]).lower())
    if entry["metric"] != "accuracy" or name in ("wemath", "dynamath"):
        notes.append(METRIC_LABELS.get(entry["metric"], entry["metric"]))
    return f"{label} ({', '.join(notes)})" if notes else label


def build_table(results: dict) -> dict:
    """Rows (one per generation mode) of the primary metric per benchmark and their average."""
    run, benchmarks = results["run"], results["benchmarks"]
    columns = [{"benchmark": name, "label": column_label(name, entry, run), "metric": entry["metric"]}
               for name, entry in benchmarks.items()]
    rows = []
    for mode in MODES:
        if not all(mode in entry["modes"] for entry in benchmarks.values()):
            continue
        values = {name: entry["modes"][mode].get(entry["metric"]) for name, entry in benchmarks.items()}
        present = [v for v in values.values() if v is not None]
        rows.append({
            "mode": mode, "label": mode_label(mode, run), "values": values,
            "average": sum(present) / len(present) if present else None, "average_of": len(present),
        })
    return {"columns": columns, "rows": rows}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def table_lines(results: dict) -> list[str]:
    """The title and the table of the primary metrics, one row per generation mode, with its note."""
    run, table = results["run"], results["table"]
    model = run["model"]
    lines = [f"# Evaluation of `{model}`", ""]
    header = ["Model", "Mode"] + [c["label"] for c in table["columns"]] + ["Average"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|")
    name = os.path.basename(os.path.normpath(model))
    for row in table["rows"]:
        cells = [name, row["label"]] + [_fmt(row["values"][c["benchmark"]]) for c in table["columns"]]
        cells.append(_fmt(row["average"]))
        lines.append("| " + " | ".join(cells) + " |")
    n_columns = len(table["columns"])
    note = (f"Accuracy in percent. Average: mean of the {n_columns} benchmark columns (a column without a value is "
            "left out and the count says so in results.json).")
    lines += ["", note, ""]
    return lines


def decoding_text(run: dict) -> str:
    """How the answers were generated: greedy, and the samples where there are some."""
    decoding = (f"greedy (temperature 0), repetition penalty {run.get('repetition_penalty', 1.0)}, at most "
                f"{run['max_new_tokens']} new tokens")
    if run.get("samples"):
        top_k = f"top-k {run['top_k']}" if run.get("top_k") else "no top-k"
        decoding += (f"; plus {run['samples']} samples per question at temperature {run['temperature']}, "
                     f"top-p {run['top_p']}, {top_k}, seed {run['seed']} per question (sampled pass@1 = the metric "
                     f"averaged over the samples; maj@{run['samples']} = the majority answer, math-aware classes)")
    return decoding + "; the same on both backends, none of the checkpoint's generation_config defaults applied"


def protocol_lines(run: dict) -> list[str]:
    """The protocol section: model, decoding, prompt, images, extraction, scoring and any limit."""
    adapter = ""
    if run.get("adapter"):
        served = f", {run['adapter_served']}" if run.get("adapter_served") else ""
        adapter = f" (LoRA adapter on `{run['base_model']}`{served})"
    hints = [f"choice questions also get: \"{run['choice_hint']}\"" if run.get("choice_hint") else "",
             f"letter-set questions: \"{run['choices_hint']}\"" if run.get("choices_hint") else ""]
    hint = "".join(f"; {h}" for h in hints if h)
    dtype = f", {run['dtype']}" if run.get("dtype") else ""
    lines = [
        "## Protocol",
        "",
        f"- Model: `{run['model']}`{adapter}; backend: {run['backend']}{dtype}; decoding: {decoding_text(run)}.",
        ("- Prompt: the training prompt: one user turn with the image(s) and the question, the instruction appended: "
         f"\"{run['instruction']}\"{hint}."),
        (f"- Images: resized the Qwen way (sides multiple of {run.get('image_unit', 28)}), "
         f"min_pixels={run['min_pixels']}, "
         f"max_pixels={run['max_pixels']} (the model's processor's unless given)."),
        f"- Answer extraction: {run['extraction']}.",
        "- Scoring: rule based (below); abstentions (no answer read) count as wrong.",
    ]
    if run.get("limit"):
        lines.append(f"- Limit: first {run['limit']} questions per benchmark (DynaMath: seed questions; WeMath: "
                     "composite problems) -- not comparable with full-benchmark numbers.")
    return lines


def benchmark_lines(benchmarks: dict) -> list[str]:
    """Per benchmark: its data, items, metric, scoring rule and which extraction read the answers."""
    lines = ["", "| Benchmark | Data | Items | Metric | Scoring | Answers read by |", "|---|---|---:|---|---|---|"]
    for entry in benchmarks.values():
        read = ", ".join(f"{rule} {count}" for rule, count in sorted(entry["extraction"].items()))
        data = entry["source"]
        if os.path.isabs(data) and entry.get("splits"):  # a local copy: the splits read (a hub source names them)
            data += f" (split {','.join(entry['splits'])})"
        left_out = entry.get("left_out") or []
        n = f"{entry['n']}" + (f" ({len(left_out)} without a reference left out)" if left_out else "")
        lines.append(f"| {entry['title']} | {data} | {n} | {entry['metric']} | {entry['scoring']} "
                     f"| {read} |")
    return lines


def all_metric_lines(benchmarks: dict, run: dict) -> list[str]:
    """Every metric of every benchmark and mode."""
    lines = ["", "## All metrics", "", "| Benchmark | Mode | Metrics |", "|---|---|---|"]
    for entry in benchmarks.values():
        for mode, metrics in entry["modes"].items():
            shown = ", ".join(f"{k} {_fmt(v) if isinstance(v, float) else v}" for k, v in metrics.items())
            lines.append(f"| {entry['title']} | {mode_label(mode, run)} | {shown} |")
    return lines


def render_markdown(results: dict) -> str:
    """results.md: the table, the protocol behind it, the benchmarks' data and scoring, and all metrics."""
    run, benchmarks = results["run"], results["benchmarks"]
    lines = table_lines(results) + preflight_lines(benchmarks) + protocol_lines(run) + benchmark_lines(benchmarks)
    lines += all_metric_lines(benchmarks, run)
    return "\n".join(lines) + "\n"


def write_results(results: dict, output_dir: str) -> dict:
    results["table"] = build_table(results)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    markdown = render_markdown(results)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(markdown)
    results["markdown"] = markdown
    return results


PROTOCOL_KEYS = ("backend", "dtype", "adapter_mode", "instruction", "choice_hint", "choices_hint", "min_pixels",
                 "max_pixels", "max_new_tokens", "repetition_penalty", "samples", "temperature", "top_p", "top_k",
                 "extraction", "limit", "mathverse_version")


def _data(entry: dict) -> str:
    splits = f", splits {','.join(entry['splits'])}" if entry.get("splits") else ""
    return f"{entry['source']} ({entry['n']} items{splits})"


def compare(path_a: str, path_b: str) -> str:
    """A Markdown table of B - A per benchmark and mode (primary metrics), and the protocol settings that differ."""
    loaded = []
    for path in (path_a, path_b):
        try:
            with open(path) as f:
                loaded.append(json.load(f))
        except FileNotFoundError:
            raise EvalError(f"Result file not found: {path}") from None
        except json.JSONDecodeError as error:
            raise EvalError(f"{path} is not a results.json file: {error}") from None
        if "benchmarks" not in loaded[-1] or "run" not in loaded[-1]:
            raise EvalError(f"{path} is not a results.json file of `python -m self_evolve_trl.eval`.")
    a, b = loaded
    lines = [f"A: {path_a} (`{a['run']['model']}`)", f"B: {path_b} (`{b['run']['model']}`)", "",
             "| Benchmark | Metric | Mode | A | B | B - A |", "|---|---|---|---:|---:|---:|"]
    diffs: dict[str, list[float]] = {}
    for name, entry_a in a["benchmarks"].items():
        entry_b = b["benchmarks"].get(name)
        if entry_b is None:
            continue
        metric = entry_a["metric"]
        note = "" if entry_b["metric"] == metric else f" (B: {entry_b['metric']})"
        for mode in MODES:
            if mode not in entry_a["modes"] or mode not in entry_b["modes"]:
                continue
            value_a = entry_a["modes"][mode].get(metric)
            value_b = entry_b["modes"][mode].get(entry_b["metric"])
            delta = value_b - value_a if value_a is not None and value_b is not None else None
            if delta is not None:
                diffs.setdefault(mode, []).append(delta)
            sign = "n/a" if delta is None else f"{delta:+.1f}"
            lines.append(
                f"| {entry_a['title']} | {metric}{note} | {mode} | {_fmt(value_a)} | {_fmt(value_b)} | {sign} |"
            )
    for mode, values in diffs.items():
        lines.append(f"| Average | | {mode} | | | {sum(values) / len(values):+.1f} |")
    only = sorted(set(a["benchmarks"]) ^ set(b["benchmarks"]))
    if only:
        lines += ["", f"In one file only: {', '.join(only)}."]
    differ = [k for k in PROTOCOL_KEYS if a["run"].get(k) != b["run"].get(k)]
    data_of = lambda result, n: tuple(result["benchmarks"][n].get(k) for k in ("source", "n", "splits"))
    sources = [n for n in a["benchmarks"] if n in b["benchmarks"] and data_of(a, n) != data_of(b, n)]
    if differ or sources:
        lines += ["", "Protocols differ (the numbers are not directly comparable):"]
        lines += [f"- {k}: A = {a['run'].get(k)!r}, B = {b['run'].get(k)!r}" for k in differ]
        lines += [f"- {n} data: A = {_data(a['benchmarks'][n])}, B = {_data(b['benchmarks'][n])}" for n in sources]
    else:
        lines += ["", "Same protocol."]
    return "\n".join(lines) + "\n"
