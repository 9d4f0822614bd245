"""Test-time RL end to end: the tiny recipe trains through the CLI on a local copy of MathVision (the labels reach
the diagnostics, never a reward), the evaluation command scores the saved model on the same copy, and `check`
accepts the recipe; the 7B recipe's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from self_evolve_trl.check import check_recipe
from tests.eval.eval_fixtures import load_results, read_jsonl, write_benchmark_fixtures

REPO = Path(__file__).resolve().parents[2]
RECIPE = "recipes/tiny-cpu-testtime.yaml"
REFERENCES = {"1": "A", "2": "\\frac{1}{2}", "3": "B", "4": "140", "5": "E"}  # the fixture's MathVision answers


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("benchmarks"))
    write_benchmark_fixtures(root)
    return root


def test_tiny_recipe_trains_on_the_questions_then_the_eval_command_scores_it(run, python, tmp_path, benchmark_dir):
    out, record = tmp_path / "run", tmp_path / "record.jsonl"
    result = run([python, "-m", "self_evolve_trl.cli", RECIPE, "--max_steps", "2", "--output_dir", str(out),
                  "--benchmark_data_dir", benchmark_dir, "--reward_funcs", "majority_vote",
                  "tests.testtime.recording_reward:record", "--max_completion_length", "8"],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache"), "TESTTIME_RECORD": str(record)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run summary: 2 steps" in result.stdout

    # what reached a reward: the benchmark's questions (by uid), never a label, a reference or a benchmark column
    calls = read_jsonl(record)
    assert len(calls) == 2
    for call in calls:
        assert "label" not in call["keys"] and "images" not in call["keys"]
        assert not {"answer", "solution", "options", "__reference", "_row"} & set(call["keys"])
        uids = call["lists"]["uid"]
        assert len(uids) == 8 and set(uids) <= set(REFERENCES)  # 2 questions x 4 samples
        for key, values in call["lists"].items():
            assert values != [REFERENCES[u] for u in uids], key  # no list of the group's references
        assert any("Choices:" in p or "AB?" in p or "Angle" in p or "Sum?" in p for p in call["lists"]["prompts"])

    # the labels reached the diagnostics
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [entry for entry in history if "labels/rollout_accuracy" in entry]
    assert len(steps) == 2 and all(0.0 <= entry["labels/rollout_accuracy"] <= 1.0 for entry in steps)

    # the evaluation command on the saved model, same questions, same instruction
    from self_evolve_trl.eval.__main__ import main

    scored = tmp_path / "eval"
    assert main(["--model", str(out), "--benchmarks", "mathvision", "--data-dir", benchmark_dir,
                 "--instruction", "Answer in \\boxed{}.", "--max-new-tokens", "4", "--output-dir", str(scored),
                 "--device", "cpu", "--no-progress"]) == 0
    predictions = read_jsonl(scored / "mathvision.predictions.jsonl")
    assert {p["id"] for p in predictions} == set(REFERENCES)
    accuracy = load_results(scored)["benchmarks"]["mathvision"]["modes"]["greedy"]["accuracy"]
    assert accuracy == pytest.approx(100 * sum(p["greedy"]["correct"] for p in predictions) / 5)


def test_check_accepts_the_recipe(benchmark_dir, tiny_model_dir):
    report = check_recipe(RECIPE, ["--benchmark_data_dir", benchmark_dir, "--model_name_or_path", tiny_model_dir])
    assert report.errors == [], report.format()
    missing = check_recipe(RECIPE, ["--benchmark_data_dir", str(REPO / "no-such-dir"),
                                    "--model_name_or_path", tiny_model_dir])
    assert [p.area for p in missing.errors] == ["dataset"]
    assert "--data-dir" in missing.errors[0].message and "is not a folder" in missing.errors[0].message
    assert "benchmark_data_dir" in missing.errors[0].fix


def test_mathvision_recipe_settings():
    from self_evolve_trl.cli import parse_recipe

    data_args, config, model_args = parse_recipe(["recipes/mathvision-testtime.yaml", "--bf16", "false",
                                                  "--use_cpu", "true"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert data_args.dataset_name == "eval:mathvision" and data_args.benchmark_data_dir is None
    assert config.reward_funcs == ["majority_vote"] and config.advantage == "grpo"
    assert config.use_vllm and config.vllm_mode == "server"
    assert (config.num_generations, config.temperature, config.learning_rate, config.beta) == (32, 0.6, 5e-7, 0.001)
    assert config.max_completion_length == 3072 and config.warmup_steps == 0.03 and config.lr_scheduler_type == "cosine"
    # 32 questions x 32 samples per generation round on 4 processes
    assert config.per_device_train_batch_size * 4 * config.steps_per_generation == 32 * 32
