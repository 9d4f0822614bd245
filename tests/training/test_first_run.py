"""A newcomer's first run: the commands, the console, the held-out accuracy before -> after and the summary's first
lines, the taught tiny base."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from self_evolve_trl.cli import COMMANDS, main, parse_recipe
from self_evolve_trl.training.summary import format_summary, summarize_log_history

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------------
# One entry point


def test_top_level_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "check", "eval", "plot"):
        assert f"\n  {name:<6} " in out, name
        assert f"self-evolve-trl {name} " in out  # an example of each
    assert main([]) == 2  # no command: the same help, as an error
    assert "commands:" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "check", "eval", "plot"])
def test_each_command_says_what_it_does_and_shows_an_example(command, capsys):
    try:
        code = main([command, "--help"])
    except SystemExit as exit_:  # argparse's --help
        code = exit_.code
    assert code == 0
    what, example = COMMANDS[command]
    assert capsys.readouterr().out.startswith(f"self-evolve-trl {command}: {what}\nexample: {example}\n")


def test_the_console_script_and_the_module_run_the_same_commands():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"self-evolve-trl": "self_evolve_trl.cli:main"}
    result = subprocess.run([sys.executable, "-m", "self_evolve_trl.cli", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0 and "commands:" in result.stdout


def test_train_takes_the_recipe_as_the_module_did(tmp_path, capsys):
    """`self-evolve-trl train RECIPE` is `python -m self_evolve_trl.cli RECIPE`: the same errors, the same parse."""
    assert main(["train", str(tmp_path / "nope.yaml")]) == main([str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.count("error: Recipe file not found") == 2
    recipe = str(REPO / "recipes" / "tiny-cpu.yaml")
    (_, a, _), (_, b, _) = parse_recipe([recipe]), parse_recipe(["--config", recipe])
    assert a.max_steps == b.max_steps == 100


# ---------------------------------------------------------------------------------------------------------------
# The default recipe and the collapse recipe


def test_the_default_recipe_starts_from_the_taught_base_and_scores_before_and_after():
    data_args, args, model_args = parse_recipe([str(REPO / "recipes" / "tiny-cpu.yaml")])
    assert model_args.model_name_or_path == "tiny:qwen2.5-vl-taught"
    assert args.accuracy_before_after and data_args.eval_dataset_name == "synthetic"
    assert (data_args.synthetic_task, data_args.synthetic_grid) == ("count_color", 3)
    assert args.per_device_train_batch_size // args.num_generations == 4  # prompts a step
    assert args.logging_steps == 10 and args.reward_funcs == ["soft_frequency"]
    _, collapse, collapse_model = parse_recipe([str(REPO / "recipes" / "tiny-cpu-collapse.yaml")])
    assert collapse_model.model_name_or_path == "tiny:qwen2.5-vl" and collapse.logging_steps == 10


def test_accuracy_before_after_needs_an_eval_split(tmp_path, capsys):
    import yaml

    recipe = yaml.safe_load((REPO / "recipes" / "tiny-cpu-collapse.yaml").read_text())
    del recipe["eval_dataset_name"]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    code = main([str(tmp_path / "recipe.yaml"), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: accuracy_before_after is true but eval_dataset_name is not set")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# The summary's first lines


HISTORY = [
    {"step": 0, "heldout/greedy_pass1": 0.325, "heldout/sampled_pass1": 0.5, "heldout/maj_at_k": 0.68,
     "heldout/k": 8.0, "heldout/questions": 185.0, "heldout/left_out_seen_in_training": 15.0},
    {"step": 10, "reward": 0.4, "self_consistency/high_confidence_share": 0.2},
    {"step": 20, "reward": 0.6, "self_consistency/high_confidence_share": 0.4},
    {"step": 20, "heldout/greedy_pass1": 0.8, "heldout/sampled_pass1": 0.75, "heldout/maj_at_k": 0.81,
     "heldout/k": 8.0, "heldout/questions": 185.0, "heldout/left_out_seen_in_training": 15.0},
    {"step": 20, "train_runtime": 61.0, "train_loss": 0.0},
]


def test_summary_opens_with_the_held_out_accuracy_before_and_after_and_the_verdict():
    summary = summarize_log_history(HISTORY)
    assert summary["verdict"] == "improved"
    assert summary["heldout"]["before"]["greedy_pass1"] == 0.325 and summary["heldout"]["after"]["maj_at_k"] == 0.81
    lines = format_summary(summary).splitlines()
    assert lines[:5] == [
        "Held-out accuracy, before -> after training (185 questions never trained on; 15 left out, seen in training):",
        "  greedy pass@1    0.325 -> 0.800",
        "  maj@8            0.680 -> 0.810",
        "Verdict: improved (held-out greedy pass@1 +47.5 points)",
        "Run summary: 20 steps in 61s",
    ]


@pytest.mark.parametrize("after, word", [(0.3, "worse"), (0.335, "no clear change"), (0.35, "improved")])
def test_the_verdict_needs_two_points_of_held_out_greedy_accuracy(after, word):
    history = [dict(e) for e in HISTORY]
    history[3]["heldout/greedy_pass1"] = after
    assert summarize_log_history(history)["verdict"] == word


def test_without_held_out_scores_the_verdict_is_the_collapse_checks():
    history = [e for e in HISTORY if "heldout/greedy_pass1" not in e]
    summary = summarize_log_history(history)
    assert "heldout" not in summary and summary["verdict"] is None
    assert format_summary(summary).splitlines()[0] == "Run summary: 20 steps in 61s"


# ---------------------------------------------------------------------------------------------------------------
# Held-out rows never trained on


def test_unseen_rows_leave_out_the_eval_questions_that_the_training_split_holds(synthetic_dataset):
    from self_evolve_trl.training.before_after import unseen_rows

    import datasets

    train = synthetic_dataset(16, synthetic_seed=0)
    other = synthetic_dataset(6, synthetic_seed=5, synthetic_task="count_color", synthetic_grid=3)  # other questions
    assert unseen_rows(other, train) == list(range(6))
    # rows 3 and 7 of the training split, put among unseen ones: exactly those two are left out
    mixed = datasets.concatenate_datasets([other.select([0, 1]), train.select([3]), other.select([2]), train.select([7])])
    assert unseen_rows(mixed, train) == [0, 1, 3]
    assert unseen_rows(train.select([3, 7]), train) == []


# ---------------------------------------------------------------------------------------------------------------
# A short run: the console lines, the held-out scores in the log history, the summary


@pytest.fixture(scope="module")
def short_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("first-run") / "run"
    result = subprocess.run(
        [sys.executable, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-collapse.yaml",
         "--model_name_or_path", tiny_model_dir, "--output_dir", str(out), "--max_steps", "4",
         "--logging_steps", "2", "--num_generations", "4", "--per_device_train_batch_size", "8",
         "--max_completion_length", "8", "--synthetic_size", "16", "--eval_max_samples", "6",
         "--per_device_eval_batch_size", "4", "--save_strategy", "no"],
        cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=600,  # one stream, in the order a terminal shows it
    )
    assert result.returncode == 0, result.stdout[-3000:]
    return out, result


def test_the_console_prints_one_short_line_per_log_not_the_metric_dictionary(short_run):
    _, result = short_run
    printed = result.stdout
    lines = [line for line in printed.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in lines] == ["step 2/4", "step 4/4"]
    assert all(" | reward " in line and " | majority " in line and " | high-conf. " in line
               and " | pseudo-label acc. " in line for line in lines)
    assert "'loss'" not in printed and "'self_consistency/majority_ratio'" not in printed  # no dictionaries
    # the progress bar is closed before the summary prints (closed after it, it drew itself again below the summary)
    assert "| 4/4 [" in printed and printed.rindex("| 4/4 [") < printed.index("Held-out accuracy, before -> after")


def test_held_out_scores_before_and_after_reach_the_log_history_and_the_summary(short_run, synthetic_dataset):
    from self_evolve_trl.training.before_after import unseen_rows

    out, result = short_run
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    scored = [e for e in history if "heldout/greedy_pass1" in e]
    assert [e["step"] for e in scored] == [0, 4]
    train = synthetic_dataset(16, synthetic_seed=0)
    held_out = synthetic_dataset(6, synthetic_seed=1)
    assert all(e["heldout/questions"] == len(unseen_rows(held_out, train)) for e in scored)
    assert all(e["heldout/k"] == 4 for e in scored)  # num_generations_eval unset: num_generations
    assert all(0 <= e[f"heldout/{m}"] <= 1 for e in scored for m in ("greedy_pass1", "sampled_pass1", "maj_at_k"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout"]["before"]["step"] == 0 and summary["heldout"]["after"]["step"] == 4
    assert result.stdout.index("Held-out accuracy, before -> after training") < result.stdout.index("Run summary")
    assert "\nVerdict: " in result.stdout


def test_plot_draws_a_smoothed_curve_over_the_faint_logged_one(short_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from self_evolve_trl.plot import PANELS, _draw_panel, load_log_history, smooth

    out, _ = short_run
    history = load_log_history(str(out))
    panel = next(p for p in PANELS if p.name == "reward")
    fig, ax = plt.subplots()
    _draw_panel(ax, panel, [("reward", "total reward")], {"run": history}, 0.6)
    lines = ax.get_lines()
    plt.close(fig)
    rewards = [e["reward"] for e in history if "reward" in e]
    (raw,) = [line for line in lines if line.get_alpha() == 0.25]
    (ema,) = [line for line in lines if line.get_label() == "total reward (EMA 0.6)"]
    assert list(raw.get_ydata()) == rewards and list(ema.get_ydata()) == smooth(rewards, 0.6)


# ---------------------------------------------------------------------------------------------------------------
# The taught tiny base


def test_the_supervised_boards_avoid_the_boards_the_recipes_train_and_evaluate_on():
    from self_evolve_trl.data.synthetic import make_boards
    from self_evolve_trl.data.tiny_base import SEEN_NEVER_SEEDS, SEEN_NEVER_SIZE, TAUGHT_SPEC, supervised_boards

    spec = {**TAUGHT_SPEC, "examples": 500}
    boards = supervised_boards(spec)
    assert len(boards) == 500
    reserved = {b.key() for s in SEEN_NEVER_SEEDS for b in make_boards(SEEN_NEVER_SIZE, "count_color", 3, seed=s)}
    assert not reserved & {b.key() for b in boards}
    # the default recipe's held-out split (seed 1, 200 boards) and training split (seed 0, 512) are reserved
    assert {b.key() for b in make_boards(200, "count_color", 3, seed=1)} <= reserved
    assert {b.key() for b in make_boards(512, "count_color", 3, seed=0)} <= reserved


def test_the_taught_base_is_built_once_and_reused(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from self_evolve_trl.data.tiny_base import build_taught_tiny

    logged = []
    small = {"examples": 8, "steps": 2, "batch_size": 4}
    path = build_taught_tiny(tmp_path / "taught", log=logged.append, **small)
    assert logged[0].startswith("Teaching the tiny model its task first (once; cached in ")
    assert logged[-1].startswith("  supervised base ready in ")
    AutoModelForImageTextToText.from_pretrained(path)
    AutoProcessor.from_pretrained(path)
    weights = (tmp_path / "taught" / "model.safetensors").stat().st_mtime_ns
    logged.clear()
    assert build_taught_tiny(tmp_path / "taught", log=logged.append, **small) == path
    assert logged == [] and (tmp_path / "taught" / "model.safetensors").stat().st_mtime_ns == weights
    build_taught_tiny(tmp_path / "taught", log=logged.append, **{**small, "steps": 3})  # other settings: rebuilt
    assert logged and (tmp_path / "taught" / "model.safetensors").stat().st_mtime_ns != weights
