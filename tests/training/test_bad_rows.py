"""Unreadable dataset rows (`on_bad_row`) and text-only rows among image rows, through real training runs."""

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from self_evolve_trl.check import ALL_ROWS, check_recipe, first_row_problems
from self_evolve_trl.cli import main
from self_evolve_trl.data.arguments import DataArguments
from self_evolve_trl.data import SKIPPED_COLUMN, load_training_dataset
from self_evolve_trl.training.diagnostics import LABEL_FREE_METRICS, LABEL_METRICS


def write_dataset(folder: Path, n: int, broken: set[int] = frozenset(), text_only=lambda i: False) -> str:
    """n rows `What is i+1?`; rows in `broken` point at a file that is not an image, `text_only(i)` rows have none."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (56, 56), "blue").save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG but not really")
    rows = [{"problem": f"What is {i}+1?", "answer": str(i + 1),
             "image": "broken.png" if i in broken else None if text_only(i) else "ok.png"} for i in range(n)]
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def write_recipe(tmp_path: Path, model: str, dataset: str, **fields) -> str:
    recipe = {
        "model_name_or_path": model, "dataset_name": dataset, "instruction": "Answer.", "num_generations": 2,
        "per_device_train_batch_size": 4, "max_completion_length": 4, "max_steps": 8, "logging_steps": 1,
        "use_cpu": True, "bf16": False, "report_to": "none", "save_strategy": "no", "seed": 0,
        "output_dir": str(tmp_path / "out"), **fields,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def error_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def test_an_unreadable_row_reads_as_the_next_readable_one(tmp_path):
    data = write_dataset(tmp_path, 8, broken={3, 4}, text_only=lambda i: i == 6)
    dataset = load_training_dataset(DataArguments(dataset_name=data, instruction="Answer."))
    row = dataset[3]  # rows 3 and 4 cannot be read: row 5 stands in, and says for which rows
    assert row["uid"] == "5" and len(row["images"]) == 1
    assert [index for index, _ in row[SKIPPED_COLUMN]] == [3, 4]
    assert row[SKIPPED_COLUMN][0][1].startswith(f"Cannot read image {tmp_path / 'broken.png'}")
    assert dataset[5][SKIPPED_COLUMN] is None and dataset[5]["uid"] == "5"
    assert dataset[6]["images"] == [] and dataset[6]["prompt"][0]["content"] == [{"type": "text", "text": "What is 6+1? Answer."}]
    assert [(p.area, p.message.split(":")[0]) for p in first_row_problems(dataset, 8)] == [
        ("dataset row 3", "Cannot read image " + str(tmp_path / "broken.png")),
        ("dataset row 4", "Cannot read image " + str(tmp_path / "broken.png")),
    ]  # the text-only row 6 is no problem


@pytest.mark.parametrize("field, value, message", [
    ("on_bad_row", "ignore", "Unknown on_bad_row 'ignore'; valid choices: skip, stop."),
    ("max_bad_row_share", 1.5, "max_bad_row_share must be between 0 and 1, got 1.5."),
])
def test_bad_row_settings_that_cannot_work(tmp_path, field, value, message):
    from self_evolve_trl.training.config import ConfigError, SelfEvolveConfig

    with pytest.raises(ConfigError) as error:
        SelfEvolveConfig(output_dir=str(tmp_path), use_cpu=True, **{field: value})
    assert str(error.value) == message


def test_skip_a_row_that_fails_mid_run(tmp_path, tiny_model_dir, caplog):
    """Row 12 of 16 (after the rows checked before training) cannot be decoded; one epoch reads every row."""
    data = write_dataset(tmp_path / "data", 16, broken={12})
    recipe = write_recipe(tmp_path, tiny_model_dir, data, max_bad_row_share=0.1, seed=2,  # row 12 read in step 6
                          save_strategy="steps", save_steps=6)
    with caplog.at_level(logging.WARNING, logger="self_evolve_trl.training.badrows"):
        assert main([recipe]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "self_evolve_trl.training.badrows"]
    assert len(warnings) == 1 and warnings[0].startswith("Skipped dataset row 12: Cannot read image ")
    assert "(on_bad_row: skip; 1 row(s) skipped so far)" in warnings[0]
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and list(summary["skipped_rows"]) == ["12"]
    assert re.search(r"dataset rows skipped \(unreadable\) +1: rows 12\n", (out / "summary.txt").read_text())
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    counts = [entry["data/skipped_rows"] for entry in history if "data/skipped_rows" in entry]
    assert counts == [0.0] * 5 + [1.0] * 3
    # the skipped rows are saved with the checkpoint, so that a resumed run goes on counting them
    state = torch.load(out / "checkpoint-6" / "self_evolve_state_rank0.pt", weights_only=True)
    assert [index for index, _ in state["components"]["bad_rows"]["rows"]] == [12]


def test_stop_at_a_row_that_fails_mid_run_saves_the_last_step_and_resumes(tmp_path, tiny_model_dir, capsys):
    data = write_dataset(tmp_path / "data", 16, broken={12})
    recipe = write_recipe(tmp_path, tiny_model_dir, data, on_bad_row="stop", save_strategy="steps", save_steps=4, seed=2)
    assert main([recipe]) == 2
    line = error_line(capsys.readouterr().err)
    out = tmp_path / "out"
    match = re.fullmatch(
        r"error: dataset row 12: Cannot read image (.+) \(on_bad_row: stop\); stopped while generating step (\d+); "
        r"saved (.+); fix or remove the row, then resume with --resume_from_checkpoint (.+) \(or resume with "
        r"--on_bad_row skip to skip it\)\.", line)
    assert match, line
    step = int(match.group(2))
    checkpoint = out / f"checkpoint-{step - 1}"
    assert match.group(3) == match.group(4) == str(checkpoint)
    assert step == 6  # row 12 is the 12th row of this seed's order: step 6 reads it; step 4 was the last save
    assert (checkpoint / "self_evolve_complete.json").exists()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == step - 1

    Image.new("RGB", (56, 56), "red").save(tmp_path / "data" / "broken.png")  # the row fixed
    assert main([recipe, "--resume_from_checkpoint", str(checkpoint)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 8
    assert "skipped_rows" not in summary  # the stopped step's row was not skipped: it was read after the fix


def test_check_rows_all_lists_every_bad_row(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = []
    for i in range(200):
        name = f"{i}.png"
        if i == 57:
            name = "missing.png"
        elif i == 150:
            (folder / name).write_bytes(b"GIF89a cut off")
        else:
            Image.new("RGB", (28 + i % 5, 28), (i, 0, 0)).save(folder / name)
        rows.append({"problem": f"What is {i}?", "image": name, "answer": str(i)})
    (folder / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = write_recipe(tmp_path, tiny_model_dir, str(folder / "data.jsonl"))

    report = check_recipe(recipe, rows=ALL_ROWS)
    bad = [p for p in report.problems if p.area.startswith("dataset row")]
    assert [(p.area, p.warning) for p in bad] == [("dataset row 57", True), ("dataset row 150", True)]  # skipped
    assert bad[0].message == f"Image file not found: {folder / 'missing.png'}"
    assert bad[1].message.startswith(f"Cannot read image {folder / '150.png'}")
    assert "dataset (every row)" in report.format() and not report.errors

    assert main(["check", recipe, "--rows", "all", "--on_bad_row", "stop"]) == 2  # stop: training would stop there
    printed = capsys.readouterr().out
    assert "problem: dataset row 57: Image file not found" in printed and "problem: dataset row 150: " in printed
    assert printed.count("problem: dataset row") == 2


def assert_logged_by_kind(out: Path, step: int):
    """The step's diagnostics, logged by kind too, match its completions: group 0 an image question, group 1 text."""
    entry = next(e for e in json.loads((out / "trainer_state.json").read_text())["log_history"]
                 if e.get("step") == step and "reward" in e)
    assert {f"{name}/{kind}" for name in LABEL_FREE_METRICS + LABEL_METRICS for kind in ("image", "text")} <= set(entry)
    completions = pd.read_parquet(out / "completions" / f"completions_{step:05d}.parquet")
    answers = completions["answer"].tolist()  # "" for no answer
    p_max = [max(Counter(a for a in answers[g : g + 2] if a).values(), default=0) / 2 for g in (0, 2)]
    distinct = [len({a for a in answers[g : g + 2] if a}) for g in (0, 2)]
    assert entry["self_consistency/majority_ratio/image"] == p_max[0]
    assert entry["self_consistency/majority_ratio/text"] == p_max[1]
    assert entry["self_consistency/distinct_answers/image"] == distinct[0]
    assert entry["self_consistency/distinct_answers/text"] == distinct[1]
    assert entry["self_consistency/majority_ratio"] == sum(p_max) / 2
    return entry


def test_text_only_rows_among_image_rows(tmp_path, tiny_model_dir):
    """Rows 0, 2, ... have an image, rows 1, 3, ... none; unshuffled, every batch holds both kinds: the diagnostics
    are logged by kind too, and the summary shows the key lines by kind."""
    data = write_dataset(tmp_path / "data", 8, text_only=lambda i: i % 2 == 1)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, max_steps=2, shuffle_dataset=False, log_completions=True,
                          answer_extractor="last_number", answer_match="exact", max_completion_length=32,  # random: digits
                          eval_dataset_name=data, eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=4)
    assert main([recipe]) == 0
    completions = pd.read_parquet(tmp_path / "out" / "completions" / "completions_00001.parquet")
    kinds = [[part["type"] for part in prompt[0]["content"]] for prompt in completions["prompt"]]
    assert kinds == [["image", "text"]] * 2 + [["text"]] * 2
    assert_logged_by_kind(tmp_path / "out", 1)  # (step 2's completions file holds the evaluation's last rows)
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    (evaluation,) = [e for e in history if "eval_loss" in e]  # the held-out split (the same rows): split too
    for name in ("eval_self_consistency/majority_ratio", "eval_labels/maj_at_g"):
        assert f"{name}/image" in evaluation and f"{name}/text" in evaluation
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    for key in ("majority ratio (mean p_max)", "pseudo-label accuracy (hidden labels)"):
        start = next(i for i, line in enumerate(summary) if line.startswith(f"  {key}"))
        assert summary[start + 1].startswith("    image questions ") and summary[start + 2].startswith("    text questions ")


@pytest.mark.slow
def test_two_processes_one_with_image_rows_one_with_text_rows(tmp_path, tiny_model_dir, run, python):
    """Process 0 gets row 0 (an image), process 1 row 1 (none): the step must not hang (the timeout fails it)."""
    data = write_dataset(tmp_path / "data", 8, text_only=lambda i: i % 2 == 1)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, max_steps=2, per_device_train_batch_size=2,
                          shuffle_dataset=False, log_completions=True, gradient_checkpointing=False,
                          answer_extractor="last_number", answer_match="exact", max_completion_length=32)
    result = run([python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "self_evolve_trl.cli", recipe],
                 timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    completions = pd.read_parquet(tmp_path / "out" / "completions" / "completions_00002.parquet")
    kinds = [[part["type"] for part in prompt[0]["content"]] for prompt in completions["prompt"]]
    assert completions["process"].tolist() == [0, 0, 1, 1]
    assert kinds == [["image", "text"]] * 2 + [["text"]] * 2
    assert_logged_by_kind(tmp_path / "out", 2)  # gathered from both processes: each kind from its own process


@pytest.mark.slow
def test_text_only_rows_among_image_rows_under_zero3(tmp_path, tiny_model_dir, run, python):
    data = write_dataset(tmp_path / "data", 8, text_only=lambda i: i % 2 == 1)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, max_steps=2, shuffle_dataset=False, log_completions=True,
                          gradient_checkpointing=False)
    config = Path(__file__).resolve().parents[2] / "accelerate_configs" / "zero3_cpu.yaml"
    result = run([python, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m", "self_evolve_trl.cli",
                  recipe], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DeepSpeed" in result.stdout + result.stderr
    completions = pd.read_parquet(tmp_path / "out" / "completions" / "completions_00002.parquet")
    kinds = [[part["type"] for part in prompt[0]["content"]] for prompt in completions["prompt"]]
    assert kinds == [["image", "text"]] * 2 + [["text"]] * 2
