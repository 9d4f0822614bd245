"""Diagnostics of real tiny CPU runs: every metric in the log history, held-out evaluation during training, the
end-of-run summary, and the plot command on one run and on an overlay of two."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from self_evolve_trl.training.diagnostics import (
    LABEL_FREE_METRICS,
    LABEL_METRICS,
    finite_mean,
    format_pattern_of,
    group_diagnostics,
)
from self_evolve_trl.training.heldout import eval_command_label_metrics
from self_evolve_trl.voting import vote_groups


TRL_METRICS = ["reward", "entropy", "completions/mean_length", "rewards/soft_frequency/mean"]
EVAL_LABEL_METRICS = ["eval_" + name for name in LABEL_METRICS]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]
# upper bounds of the logged values for groups of 4 (the lower bound is 0)
UPPER = {"self_consistency/distinct_answers": 4, "self_consistency/answer_entropy": math.log(4) + 1e-9}

CPU = dict(
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    report_to="none",
    num_generations=4,
    per_device_train_batch_size=8,
    max_completion_length=12,
    learning_rate=0.05,
    logging_steps=1,
    save_strategy="no",
    seed=0,
    dataloader_num_workers=0,
    answer_extractor="last_number",
)


def train_steps(history):
    return [entry for entry in history if "reward" in entry]


def eval_entries(history):
    return [entry for entry in history if "eval_loss" in entry]


@pytest.fixture(scope="module")
def labelled_run(tiny_model_dir, tmp_path_factory):
    """The CLI on the tiny-cpu-collapse recipe: labelled synthetic data, a held-out synthetic split evaluated every 2 steps,
    checkpoints every 2 steps. Returns (output_dir, CompletedProcess)."""
    out = tmp_path_factory.mktemp("labelled") / "run-labelled"
    result = subprocess.run(
        [
            sys.executable, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-collapse.yaml",
            "--model_name_or_path", tiny_model_dir, "--output_dir", str(out), "--logging_steps", "1",
            "--max_steps", "4", "--num_generations", "4", "--per_device_train_batch_size", "8",
            "--max_completion_length", "12", "--synthetic_size", "16", "--save_steps", "2",
            "--eval_dataset_name", "synthetic", "--eval_max_samples", "3",
            "--eval_strategy", "steps", "--eval_steps", "2", "--per_device_eval_batch_size", "8",
        ],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="module")
def unlabelled_run(tiny_model_dir, tiny_processor, tmp_path_factory):
    """An in-process run on data without labels, with a reward that logs `judge/*` metrics the way a judge reward
    does (through TRL's `log_metric`), so the judge panel has something to show. Returns the trainer."""
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    def judge_like(completions, log_metric):
        scores = [min(1.0, len(c) / 40) for c in completions]
        log_metric("judge/score_mean", sum(scores) / len(scores))
        log_metric("judge/parse_failure_rate", 0.0)
        return scores

    dataset = load_training_dataset(DataArguments(synthetic_size=8, instruction="Answer in \\boxed{}.")).remove_columns("label")
    out = tmp_path_factory.mktemp("unlabelled") / "run-unlabelled"
    config = SelfEvolveConfig(output_dir=str(out), max_steps=3, **CPU)
    trainer = SelfEvolveGRPOTrainer(
        model=tiny_model_dir, reward_funcs=["soft_frequency", judge_like], args=config,
        train_dataset=dataset, processing_class=tiny_processor,
    )
    trainer.train()
    trainer.save_state()
    return trainer


def test_a_labelled_run_logs_every_metric(labelled_run):
    out, _ = labelled_run
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = train_steps(history)
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    for key in [*LABEL_FREE_METRICS, *LABEL_METRICS, *TRL_METRICS]:
        assert all(key in entry for entry in steps), key
    assert not [key for entry in history for key in entry if key.endswith(("/image", "/text"))]  # one kind: no split
    for key in [*LABEL_FREE_METRICS, "labels/maj_at_g", "labels/pass_at_g", "labels/rollout_accuracy"]:
        assert all(0 <= entry[key] <= UPPER.get(key, 1) for entry in steps), key
    # held-out evaluation every 2 steps, scored against the eval split's labels
    evals = eval_entries(history)
    assert [e["step"] for e in evals] == [2, 4]
    for key in [*EVAL_LABEL_METRICS, "eval_self_consistency/majority_ratio", "eval_entropy"]:
        assert all(key in entry for entry in evals), key


def test_the_run_ends_with_a_summary(labelled_run):
    out, result = labelled_run
    text = (out / "summary.txt").read_text()
    assert text.strip() in result.stdout
    assert "Run summary: 4 steps" in text
    assert "pseudo-label accuracy (hidden labels)" in text and "token entropy" in text
    assert "Held-out evaluation (2 evaluations):" in text and "eval maj@k" in text
    assert result.stdout.count("Run summary:") == 1  # printed once, by the trainer's summary callback
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval"]["eval_labels/maj_at_g"]["evaluations"] == 2
    assert summary["metrics"]["reward"]["trend"] in ("rising", "falling", "flat")


def test_a_python_api_run_writes_the_summary_too(unlabelled_run, tmp_path):
    """Not only the CLI: `SelfEvolveGRPOTrainer.train()` writes summary.txt / summary.json at the end of training,
    from the complete log history (the run's totals included) and the non-finite counts."""
    from self_evolve_trl.training.summary import write_summary

    out = Path(unlabelled_run.args.output_dir)
    text = (out / "summary.txt").read_text()
    assert text.startswith("Run summary: 3 steps in ") and "non-finite rewards / advantages" in text
    trainer = unlabelled_run
    after = write_summary(str(tmp_path), trainer.state.log_history, trainer.nonfinite_counter.state_dict())
    assert text == after + "\n"
    assert json.loads((out / "summary.json").read_text()) == json.loads((tmp_path / "summary.json").read_text())


def test_a_run_without_labels_logs_no_label_metrics(unlabelled_run):
    steps = train_steps(unlabelled_run.state.log_history)
    assert len(steps) == 3
    for entry in steps:
        assert all(entry.get(key) is not None for key in LABEL_FREE_METRICS)
        assert not any(key.startswith("labels/") or key.endswith(("/image", "/text")) for key in entry)
        assert "judge/score_mean" in entry
    from self_evolve_trl.training.summary import format_summary, summarize_log_history

    text = format_summary(summarize_log_history(unlabelled_run.state.log_history))
    assert "majority ratio" in text and "hidden labels" not in text and "Held-out" not in text
    assert "judge score (mean, parsed judgements)" in text  # judge rows appear only when a judge logged them


def test_eval_metrics_are_exact_over_the_whole_split(tiny_model_dir, tiny_processor, synthetic_dataset, tmp_path):
    """5 eval prompts in batches of 2, 2 and 1 groups: the logged eval metrics equal the diagnostics of all the eval
    completions together (TRL averages one value per group), not the mean of the batch means."""
    from self_evolve_trl.training.config import SelfEvolveConfig
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    eval_dataset = synthetic_dataset(5, synthetic_seed=1)
    label_of = {uid: label for uid, label in zip(eval_dataset["uid"], eval_dataset["label"])}
    seen = []
    holder = {}

    def recorder(completions, group_size, uid):
        if not holder["trainer"].model.training:
            seen.append((list(completions), group_size, list(uid)))
        return [0.0] * len(completions)

    config = SelfEvolveConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, eval_strategy="steps", eval_steps=1,
        per_device_eval_batch_size=8, **{**CPU, "max_completion_length": 24},
    )
    trainer = SelfEvolveGRPOTrainer(
        model=tiny_model_dir, reward_funcs=[recorder, "format"], args=config, train_dataset=synthetic_dataset(4),
        eval_dataset=eval_dataset, processing_class=tiny_processor,
    )
    holder["trainer"] = trainer
    metrics = trainer.evaluate()
    assert [(len(c), g) for c, g, _ in seen] == [(8, 4), (8, 4), (4, 4)]

    def diagnose(batches):
        completions = [c for batch, _, _ in batches for c in batch]
        labels = [label_of[u] for _, _, uids in batches for u in uids[::4]]
        votes = vote_groups(completions, 4, extractor="last_number")
        metrics = group_diagnostics(votes, completions, labels, format_pattern=format_pattern_of(trainer.reward_funcs))
        # pass@1, maj@k and pass@k are the evaluation command's scores (its rules, not the recipe's extractor)
        by_eval_command = eval_command_label_metrics(completions, labels, 4)
        metrics.update({name: finite_mean(values) for name, values in by_eval_command.items()})
        return metrics

    expected = diagnose(seen)
    for name, value in expected.items():
        logged = metrics["eval_" + name]
        assert (logged is None) if math.isnan(value) else logged == pytest.approx(value), name
    # the check can tell: averaging the batch means would give other values
    per_batch = [diagnose([batch]) for batch in seen]
    assert any(
        not math.isnan(value) and value != pytest.approx(sum(b[name] for b in per_batch) / len(per_batch))
        for name, value in expected.items()
    )

    # In eval mode, pass@1 / maj@k / pass@k read answers by the evaluation command's rules, whatever the recipe's
    # extractor (last_number here, which reads all four answers below; the rules read three, one of them wrong).
    group = ["The answer is 5.", "\\boxed{5}", "<answer>7</answer>", "5"]
    rows = [{"completion": c, "label": "5", "prompt": None, "completion_ids": None, "columns": {"uid": "q"},
             "extras": {}, "kind": "image"} for c in group]
    trainer.model.eval()
    scored = trainer._score_groups(rows, ["uid"], [])["metrics"]
    assert scored["labels/rollout_accuracy"] == [0.5] and scored["labels/maj_at_g"] == [1.0]
    assert scored["labels/pseudo_label_accuracy"] == [1.0] and scored["labels/reward_accuracy"] == [1.0]
    trainer.model.train()
    assert trainer._score_groups(rows, ["uid"], [])["metrics"]["labels/rollout_accuracy"] == [0.75]


def _pngs(folder: Path) -> dict[str, int]:
    files = {p.name: p.stat().st_size for p in folder.glob("*.png")}
    for name in files:
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC, name
    return files


def test_plot_one_run(labelled_run, run):
    out, _ = labelled_run
    result = run([sys.executable, "-m", "self_evolve_trl.plot", str(out)])
    assert result.returncode == 0, result.stderr
    files = _pngs(out / "plots")
    expected = {"accuracy", "self_consistency", "answers", "abstention_format", "token_entropy", "completion_length",
                "reward", "overview"}
    assert set(files) == {f"{name}.png" for name in expected}  # no judge panel: this run logs no judge/* metrics
    assert all(size > 5000 for size in files.values())
    assert sorted(result.stdout.split()) == sorted(str(out / "plots" / name) for name in files)


def test_plot_overlay_of_two_runs(labelled_run, unlabelled_run, run, tmp_path):
    out, _ = labelled_run
    result = run([sys.executable, "-m", "self_evolve_trl.plot", str(out), unlabelled_run.args.output_dir,
                  "--out", str(tmp_path / "cmp"), "--smooth", "0.5"])
    assert result.returncode == 0, result.stderr
    files = _pngs(tmp_path / "cmp")
    assert {"accuracy.png", "self_consistency.png", "token_entropy.png", "judge.png", "overview.png"} <= set(files)
    assert all(size > 5000 for size in files.values())


def test_plot_draws_the_held_out_self_consistency_next_to_the_training_one(labelled_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from self_evolve_trl.plot import PANELS, _draw_panel, load_log_history

    out, _ = labelled_run
    history = load_log_history(str(out))
    panel = next(p for p in PANELS if p.name == "self_consistency")
    fig, ax = plt.subplots()
    _draw_panel(ax, panel, panel.keys({k for e in history for k in e}), {"run": history}, 0.0)
    drawn = {line.get_label(): len(line.get_xdata()) for line in ax.get_lines()}
    plt.close(fig)
    assert drawn == {"majority ratio (mean p_max)": 4, "groups with p_max >= 0.8": 4,
                     "eval majority ratio": 2, "eval groups with p_max >= 0.8": 2}  # 4 steps, evaluated at 2 and 4


def test_plot_reads_the_latest_checkpoint(labelled_run, tmp_path):
    from self_evolve_trl.plot import load_log_history

    out, _ = labelled_run
    run_dir = tmp_path / "interrupted"
    for checkpoint in ("checkpoint-2", "checkpoint-4"):
        (run_dir / checkpoint).mkdir(parents=True)
        shutil.copy(out / checkpoint / "trainer_state.json", run_dir / checkpoint / "trainer_state.json")
    history = load_log_history(str(run_dir))
    assert max(e["step"] for e in train_steps(history)) == 4
    assert max(e["step"] for e in train_steps(load_log_history(str(out / "checkpoint-2")))) == 2


def test_plot_errors(tmp_path, capsys):
    from self_evolve_trl.plot import main

    assert main([str(tmp_path / "missing")]) == 2
    assert "Run directory not found" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "No trainer_state.json in" in capsys.readouterr().err
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 0, "log_history": []}))
    assert main([str(tmp_path)]) == 2
    assert "no logged steps" in capsys.readouterr().err
    (tmp_path / "trainer_state.json").write_text("{not json")
    assert main([str(tmp_path)]) == 2
    assert "Cannot read" in capsys.readouterr().err


def test_trainer_logs_one_value_per_group_with_the_recipes_format_pattern(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    dataset = synthetic_dataset(2)
    metrics = {}
    for pattern in (None, ".*"):
        kwargs = {"format": {"pattern": pattern}} if pattern else {}
        config = cpu_config(reward_funcs=["soft_frequency", "format"], reward_kwargs=kwargs)
        trainer = SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=dataset, processing_class=tiny_processor)
        trainer.model.train()
        trainer._generate_and_score_completions([dataset[0]] * 4 + [dataset[1]] * 4)
        metrics[pattern] = trainer._metrics["train"]
    # the tiny model never writes <think>...</think>: every completion breaks the default format, none breaks ".*"
    assert metrics[None]["self_consistency/format_violation_rate"] == [1.0, 1.0]
    assert metrics[".*"]["self_consistency/format_violation_rate"] == [0.0, 0.0]
    assert len(metrics[".*"]["labels/rollout_accuracy"]) == 2 and len(metrics[".*"]["rewards/nonfinite_count"]) == 1


class RecordingProvider:
    """A reward-input provider that records the rows it is handed."""

    rows: ClassVar[list] = []

    def __init__(self, trainer):
        pass

    def __call__(self, inputs, prompts, completions, completion_ids_list):
        RecordingProvider.rows.extend(inputs)
        return [0.0] * len(completions)


def test_reward_input_providers_never_see_the_labels(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config,
                                                      monkeypatch):
    from self_evolve_trl.training.trainer import REWARD_INPUT_PROVIDERS, SelfEvolveGRPOTrainer

    def uses_recorded(completions, recorded):
        return list(recorded)

    uses_recorded.reward_inputs = ("recorded",)
    monkeypatch.setitem(REWARD_INPUT_PROVIDERS, "recorded", f"{__name__}:RecordingProvider")
    monkeypatch.setattr(RecordingProvider, "rows", [])
    dataset = synthetic_dataset(2)
    trainer = SelfEvolveGRPOTrainer(model=tiny_model_dir, reward_funcs=[uses_recorded], args=cpu_config(),
                                    train_dataset=dataset, processing_class=tiny_processor)
    trainer.model.train()
    inputs = [dataset[0]] * 4 + [dataset[1]] * 4
    assert all(row["label"] for row in inputs)
    trainer._generate_and_score_completions(inputs)
    assert len(RecordingProvider.rows) == 8
    uids = (dataset[0]["uid"], dataset[1]["uid"])
    assert all("label" not in row and row["uid"] in uids for row in RecordingProvider.rows)
    assert "prompt" in RecordingProvider.rows[0]
    assert all("label" in row for row in inputs)  # the trainer's own rows keep it, for the diagnostics
    assert len(trainer._metrics["train"]["labels/rollout_accuracy"]) == 2
