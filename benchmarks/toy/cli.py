"""The command: arguments, then base → label-free runs → report (or `--summarise` several runs' results)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from self_evolve_trl.data.synthetic import BOARD_TASKS, SOLUTION_ROUTES

from .base import prepare_base
from .data import JUDGE_TEMPLATE, MAX_COMPLETION_LENGTH, draw_splits, judge_max_tokens, load_judge_template
from .evaluation import evaluate, judge_accuracy
from .figures import SMOOTH, plot_curves, plot_heldout
from .judges import EXPERT_JUDGE_ENV
from .methods import DEFAULT_METHODS, EXPERT_METHOD, installed, methods
from .report import differences, format_differences, format_table, goal_check, pct, reached_summary, steps_per_seed
from .runs import quiet, run_all
from .stats import CONFIDENT, REACH_RUN, REACH_WINDOW, aggregate


def _task_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task")
    g.add_argument("--task", default="count_color", choices=BOARD_TASKS,
                   help="count_two_colors needs --max-completion-length 64 (its worked solutions are ~48 tokens)")
    g.add_argument("--grid", type=int, default=3, help="cells per side")
    g.add_argument("--routes", default="rows,cols,direct",
                   help=f"solution routes of the supervised data ({', '.join(SOLUTION_ROUTES)})")
    g.add_argument("--preset", default="tiny", help="tiny model preset (self_evolve_trl.data.tiny.PRESETS)")
    g.add_argument("--data-seed", type=int, default=0)


def _base_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("supervised base")
    g.add_argument("--sft-examples", type=int, default=3000)
    g.add_argument("--sft-batch-size", type=int, default=32)
    g.add_argument("--sft-lr", type=float, default=2e-3)
    g.add_argument("--sft-steps", type=int, default=600,
                   help="supervised steps (learning rate: warm-up, then linear decay to 10%%)")
    g.add_argument("--sft-eval-every", type=int, default=100, help="log validation greedy pass@1 every N steps")
    g.add_argument("--val-size", type=int, default=96, help="validation boards (supervised progress, judge target)")
    g.add_argument("--verify-share", type=float, default=0.25,
                   help="share of supervised examples that are verification (judge) examples")
    g.add_argument("--two-turn-share", type=float, default=0.0,
                   help="share of the other supervised examples that are two-turn continuations (a partial solution "
                        "as a finished assistant turn, then a new turn that finishes it: CSRS new_turn); 0.15 "
                        "with --sft-steps 800 gives a base as competent as the default's (BENCHMARKS.md: the fair "
                        "test of CSRS)")
    g.add_argument("--judge-target", type=float, default=0.0,
                   help="after the supervised steps, teach verification until the validation judge accuracy reaches "
                        "this, e.g. 0.8 (0: no verification phase; BENCHMARKS.md has what 600 such steps did)")
    g.add_argument("--verify-steps", type=int, default=600, help="most steps of the verification phase")
    g.add_argument("--verify-eval-every", type=int, default=50, help="check the judge accuracy every N steps")
    g.add_argument("--verify-lr", type=float, default=5e-4, help="constant learning rate of the verification phase")
    g.add_argument("--verify-mix", type=float, default=0.5,
                   help="share of each verification-phase batch that is verification; the rest: the supervised mix")


def _rl_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("label-free training (same for every method)")
    g.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    g.add_argument("--seeds", default="0,1,2,3",
                   help="4 seeds keep a data seed within 45 minutes on 2 cores with 2 workers; 5 took 48.5 minutes")
    g.add_argument("--rl-prompts", type=int, default=512, help="unlabelled training prompts")
    g.add_argument("--rl-steps", type=int, default=40)
    g.add_argument("--prompts-per-step", type=int, default=16)
    g.add_argument("--num-generations", type=int, default=8)
    g.add_argument("--rl-lr", type=float, default=1e-4)
    g.add_argument("--beta", type=float, default=0.05, help="KL coefficient to the base (TRL's beta)")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--max-completion-length", type=int, default=MAX_COMPLETION_LENGTH)
    g.add_argument("--hard-threshold", type=float, default=None,
                   help="soft_frequency's hard_threshold (also the judge's prior)")
    g.add_argument("--csrs-anchor", type=float, default=0.7,
                   help="CSRS anchor: the share of each completion kept before re-inference")
    g.add_argument("--expert-judge", default=None, metavar="DIR",
                   help=f"a better-taught model folder (e.g. OUTPUT_DIR/base of a run with --sft-steps 1500) as the "
                        f"judge of the method {EXPERT_METHOD!r}, which this adds")


def _output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("held-out evaluation and output")
    g.add_argument("--eval-size", type=int, default=200)
    g.add_argument("--eval-samples", type=int, default=8, help="k of maj@k / sampled pass@1")
    g.add_argument("--eval-batch-size", type=int, default=50)
    g.add_argument("--workers", type=int, default=2, help="label-free runs in parallel (processes, one thread each)")
    g.add_argument("--output-dir", default="outputs/self_evolution_toy")
    g.add_argument("--reuse-base", action="store_true", help="reuse OUTPUT_DIR/base if trained with the same settings")
    g.add_argument("--figures-dir", default=None, help="also write the figures here (e.g. benchmarks/figures)")
    g.add_argument("--figures-prefix", default="self_evolution_toy",
                   help="figure file names: PREFIX_curves.png and PREFIX_heldout.png (e.g. self_evolution_toy_seed1)")
    g.add_argument("--smooth", type=float, default=SMOOTH,
                   help="EMA weight of the figures' curves, in [0, 1) (0: raw); the table never smooths this way")
    g.add_argument("--summarise", nargs="+", metavar="RUN_DIR", default=None,
                   help="train nothing: read these runs' results.json (their --output-dir) and write the gain against "
                        "the base's competence (boundary.md, boundary.json, PREFIX_boundary.png) to OUTPUT_DIR")
    g = p.add_argument_group(
        "how fast the high-confidence share rises",
        "The table reports, per seed, the first step from which the trailing REACH_WINDOW-step mean of the share of "
        "groups with p_max >= 0.8 stays >= REACH_LEVEL for REACH_RUN consecutive steps ('never' if it does not), "
        "and, threshold-free, the mean share over the first half of the steps.",
    )
    g.add_argument("--reach-level", type=float, default=CONFIDENT, help="level of the high-confidence share")
    g.add_argument("--reach-window", type=int, default=REACH_WINDOW,
                   help="steps in the trailing mean (defined from this step on, so one early spike cannot count)")
    g.add_argument("--reach-run", type=int, default=REACH_RUN,
                   help="consecutive steps the trailing mean must stay at or above the level")


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0 <= args.smooth < 1:
        p.error(f"--smooth must be in [0, 1), got {args.smooth}")
    for name in ("reach_window", "reach_run"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive number of steps, got {getattr(args, name)}")
    for name in ("verify_share", "two_turn_share", "verify_mix"):
        if not 0 <= getattr(args, name) <= 1:
            p.error(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    for route in args.routes:
        if route not in SOLUTION_ROUTES:
            p.error(f"unknown route {route!r}; valid routes: {', '.join(SOLUTION_ROUTES)}")
    if args.expert_judge and not (Path(args.expert_judge) / "config.json").is_file():
        p.error(f"--expert-judge {args.expert_judge}: no model folder there (no config.json); give a base folder, "
                "e.g. OUTPUT_DIR/base of a run with --sft-steps 1500")
    if EXPERT_METHOD in args.methods and not args.expert_judge:
        p.error(f"method {EXPERT_METHOD!r} needs --expert-judge DIR (the judge's model folder)")
    known = methods(None, "")
    for name in args.methods:
        if name not in known:
            p.error(f"unknown method {name!r}; valid methods: {', '.join(known)}")


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for add in (_task_args, _base_args, _rl_args, _output_args):
        add(p)
    args = p.parse_args(argv)
    args.routes = [r for r in args.routes.split(",") if r]
    args.methods = [m for m in args.methods.split(",") if m]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.expert_judge and EXPERT_METHOD not in args.methods:
        args.methods.append(EXPERT_METHOD)
    _check(p, args)
    return args


def chosen_methods(args, template_path: str) -> tuple[list, list[str]]:
    """The methods to run (judge template written to `template_path`) and those skipped (reward not installed)."""
    Path(template_path).write_text(JUDGE_TEMPLATE)
    catalog = methods(args.hard_threshold, template_path, args.csrs_anchor, args.num_generations,
                      judge_max_tokens(args.max_completion_length))
    skipped = [m for m in args.methods if not installed(catalog[m])]
    for name in skipped:
        print(f"note: method {name} skipped: its reward {catalog[name].reward!r} is not installed in this checkout.")
    return [catalog[m] for m in args.methods if m not in skipped], skipped


def load_model(folder: str):
    """A saved base (or expert judge) and its processor, left-padded for generation."""
    import transformers

    model = transformers.AutoModelForImageTextToText.from_pretrained(folder)
    return model, transformers.AutoProcessor.from_pretrained(folder, padding_side="left")


def held_out_judge_accuracy(args, splits, template, model, processor) -> float:
    """Greedy verdicts on half-right, half-wrong candidates of the held-out boards, with the runs' judge budget."""
    return judge_accuracy(model, processor, splits.test, args.grid, template, args.routes,
                          max_tokens=judge_max_tokens(args.max_completion_length))


def measure_base(args, splits, base_dir: str, template) -> tuple[dict, float]:
    """The base's held-out metrics and its held-out judge accuracy (half-right, half-wrong candidates)."""
    model, processor = load_model(base_dir)
    base = evaluate(model, processor, splits.test, args.grid, args.eval_samples, args.max_completion_length,
                    args.temperature, args.eval_batch_size, seed=10_000)
    return base, held_out_judge_accuracy(args, splits, template, model, processor)


def measure_expert(args, splits, template) -> float | None:
    """The expert judge's held-out judge accuracy (None without `--expert-judge`); its folder set for the workers."""
    if not args.expert_judge:
        return None
    os.environ[EXPERT_JUDGE_ENV] = os.path.abspath(args.expert_judge)
    return held_out_judge_accuracy(args, splits, template, *load_model(args.expert_judge))


def write_outputs(args, report: dict, table: str, diffs: str) -> None:
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.output_dir, "differences.md"), "w") as f:
        f.write(diffs + "\n")


def print_goal(args, rows: list[dict], goal: dict) -> None:
    print(f"high-confidence share: first step its {args.reach_window}-step mean stays >= {args.reach_level} for "
          f"{args.reach_run} steps, per seed ({', '.join(map(str, args.seeds))}):")
    for row in rows[1:]:
        print(f"  {row['method']:<34} {steps_per_seed(row['confident_steps']):<24} "
              f"({reached_summary(row['confident_steps'])}); mean share over the first half "
              f"{pct(row['high_confidence_early'])} %")
    print(f"earliest (median over seeds): {goal['earliest_high_confidence']}; highest mean share over the first "
          f"half: {goal['highest_early_high_confidence']}")
    print(f"best method {goal['best_method']}: greedy pass@1 {goal['greedy_gain_points']:+.1f} points over the base "
          f"(base gap to maj@{args.eval_samples}: {goal['base_gap_points']:.1f} points, closed "
          f"{goal['gap_closed']:.0%}); goal {'met' if goal['goal_met'] else 'missed'}; fastest high-confidence "
          f"rise: {goal['fastest_high_confidence_rise']}")


def base_line(args, sft: dict, base: dict, judge: float) -> str:
    verification = sft.get("verification") or {}
    phase = ""
    if verification.get("history"):
        last = verification["history"][-1]
        phase = (f"; verification phase {verification['steps']} steps, validation judge accuracy "
                 f"{last['val_judge_accuracy']:.3f} (target {args.judge_target}: "
                 f"{'reached' if verification['reached'] else 'not reached'})")
    return (f"  base after {sft['steps']} steps ({sft['encode_s'] + sft['train_s']:.0f}s){phase}: held-out greedy "
            f"pass@1 {base['greedy_pass1']:.3f}, sampled pass@1 {base['sampled_pass1']:.3f}, maj@{args.eval_samples} "
            f"{base['maj_at_k']:.3f}, pass@{args.eval_samples} {base['pass_at_k']:.3f}, judge accuracy (held-out, "
            f"half right) {judge:.3f}")


def main(argv: list[str] | None = None, description: str | None = None) -> dict[str, Any]:
    args = parse_args(argv, description)
    quiet()
    if args.summarise:
        from .summarise import summarise

        return summarise(args.summarise, args.output_dir, args.figures_prefix, args.figures_dir)
    os.makedirs(args.output_dir, exist_ok=True)
    started = time.time()
    template_path = os.path.join(args.output_dir, "judge_template.txt")
    chosen, skipped = chosen_methods(args, template_path)
    template = load_judge_template(template_path)
    splits = draw_splits(args)
    print(f"data: {len(splits.sft)} supervised, {len(splits.val)} validation, {len(splits.rl)} label-free, "
          f"{len(splits.test)} held-out boards ({args.task}, grid {args.grid})")
    base_dir = os.path.join(args.output_dir, "base")
    print("1. supervised base")
    sft = prepare_base(args, splits, base_dir, template)
    base, base_judge = measure_base(args, splits, base_dir, template)
    print(base_line(args, sft, base, base_judge))
    expert_judge = measure_expert(args, splits, template)
    if expert_judge is not None:
        print(f"  expert judge {args.expert_judge}: judge accuracy (held-out, half right) {expert_judge:.3f}")
    print(f"2. label-free runs: {len(chosen)} methods x {len(args.seeds)} seeds, {args.rl_steps} steps of "
          f"{args.prompts_per_step} prompts each, {args.workers} worker(s)")
    jobs = [{"args": args, "method": m, "seed": s, "splits": splits, "base_dir": base_dir}
            for m in chosen for s in args.seeds]
    rl_start = time.time()
    results = run_all(jobs, args.workers)
    seconds = {"label_free": time.time() - rl_start}
    report = report_all(args, results, base, base_judge, sft, skipped)
    report["expert_judge_accuracy"] = expert_judge
    seconds["total"] = time.time() - started
    report["seconds"] = seconds
    write_outputs(args, report, report.pop("_table"), report.pop("_differences"))
    print(f"3. report ({seconds['total'] / 60:.1f} min in all; label-free runs {seconds['label_free'] / 60:.1f} min):"
          f" {args.output_dir}")
    if report["goal"]:
        print_goal(args, report["table"], report["goal"])
    if skipped:
        print(f"skipped (reward not installed): {', '.join(skipped)}")
    print(format_differences(report["differences"], args.eval_samples))
    print(format_table(report["table"], args.eval_samples, args.reach_level, args.reach_window, args.reach_run))
    return report


def report_all(args, results: list[dict], base: dict, base_judge: float, sft: dict, skipped: list[str]) -> dict:
    """Aggregate, compare, draw; the report that results.json holds (and, to write, the two tables)."""
    reach = (args.reach_level, args.reach_window, args.reach_run)
    rows = aggregate(base, results, *reach)
    goal = goal_check(rows)
    diffs = differences(results, goal.get("best_method"))
    figures = []
    for folder in [os.path.join(args.output_dir, "figures")] + ([args.figures_dir] if args.figures_dir else []):
        figures += plot_curves(results, folder, args.smooth, args.figures_prefix)
        figures += plot_heldout(rows, folder, args.eval_samples, args.figures_prefix)
    return {
        "args": dict(vars(args)), "skipped_methods": skipped, "sft": sft, "base": base,
        "base_judge_accuracy": base_judge,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in results],
        "table": rows, "differences": diffs, "goal": goal, "figures": figures,
        "_table": format_table(rows, args.eval_samples, *reach),
        "_differences": format_differences(diffs, args.eval_samples),
    }
