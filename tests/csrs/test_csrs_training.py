"""CSRS in training: the `retrace/*` metrics, the loss (which never sees a re-inference), and the recipes on one and
two processes."""

import time

import pandas as pd
import pytest

from tests.csrs.test_csrs_prefix import trainer_factory
from tests.conftest import launcher


@pytest.fixture
def csrs_trainer(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    return trainer_factory(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config)


# ----------------------------------------------------------------------------------------------------------------
# Training


def test_evaluation_reinference_time_is_not_counted_in_the_training_time_share(csrs_trainer, synthetic_dataset):
    trainer = csrs_trainer(max_completion_length=4, retrace_samples_per_anchor=1, eval_strategy="steps", eval_steps=1,
                           per_device_eval_batch_size=4, eval_dataset=synthetic_dataset(4))
    provider = trainer.reward_input_providers["retrace_completions"]
    generate = provider.generate

    def slow_in_evaluation(requests, max_rows=None):
        if not trainer.model.training:
            time.sleep(1.0)
        return generate(requests, max_rows)

    provider.generate = slow_in_evaluation
    trainer.train()
    steps = [e for e in trainer.state.log_history if "retrace/time_share" in e]
    evaluations = [e for e in trainer.state.log_history if "eval_retrace/seconds" in e]
    assert len(steps) == 2 and len(evaluations) == 2 and all(e["eval_retrace/seconds"] >= 1.0 for e in evaluations)
    for entry in steps:  # one generation batch per step: the share is that batch's re-inference time over the step's
        assert entry["retrace/time_share"] * entry["step_time"] == pytest.approx(entry["retrace/seconds"], rel=1e-6)
        assert 0 < entry["retrace/time_share"] < 1


def test_two_training_steps_log_retrace_metrics_and_rewards(csrs_trainer):
    trainer = csrs_trainer(retrace_visual_perturbation=True, max_completion_length=6)
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert 1 <= entry["retrace/noise_level"] <= 40  # mean VSP level k of the step's re-inference images
        for key in ["retrace/seconds", "retrace/tokens_per_completion", "retrace/completion_length",
                    "retrace/prefix_length", "retrace/time_share", "retrace/abstention_rate",
                    "rewards/retrace_frequency/mean"]:
            assert key in entry, key
        assert 0 < entry["retrace/time_share"] < 1
        assert 0 < entry["retrace/tokens_per_completion"] <= 3 * 6  # K re-inferences of at most 6 tokens
        assert 0 <= entry["rewards/retrace_frequency/mean"] <= 0.9 * 1.2 * 3 / 4 + 0.1


def test_reinferred_completions_never_enter_the_loss(csrs_trainer):
    """TRL's loss gets the rollout's own completions (ids and mask), not the re-inferred ones."""
    trainer = csrs_trainer(max_completion_length=6, max_steps=1)
    generated, losses = [], []
    generate, compute_loss = trainer._generate_single_turn, trainer._compute_loss

    def spy_generate(prompt_ids, images, fields, num_generations, **kwargs):
        ids, logprobs = generate(prompt_ids, images, fields, num_generations, **kwargs)
        generated.append(([list(p) for p in prompt_ids], [list(c) for c in ids]))
        return ids, logprobs

    def spy_loss(model, inputs):
        keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
        losses.append({k: inputs[k].clone() for k in keys})
        return compute_loss(model, inputs)

    trainer._generate_single_turn, trainer._compute_loss = spy_generate, spy_loss
    trainer.train()
    (rollout_prompts, rollout), (retrace_prompts, retraced) = generated  # one rollout call, one re-inference call
    assert len(rollout) == 4 and len(retraced) == 4 * 3
    (batch,) = losses

    def rows_of(ids, mask):
        return sorted(row[m.bool()].tolist() for row, m in zip(ids, mask))

    assert rows_of(batch["completion_ids"], batch["completion_mask"]) == sorted(rollout)  # rows are shuffled
    assert rows_of(batch["prompt_ids"], batch["prompt_mask"]) == sorted(rollout_prompts)
    assert not any(ids in rows_of(batch["completion_ids"], batch["completion_mask"]) for ids in retraced)
    assert not any(p in rollout_prompts for p in retrace_prompts)


# ----------------------------------------------------------------------------------------------------------------
# The recipe, one and two processes


def run_recipe(run, python, output_dir, nproc, extra=()):
    args = ["recipes/tiny-cpu-csrs.yaml", "--max_steps", "2", "--output_dir", str(output_dir), "--log_completions",
            "true", "--save_strategy", "no", "--reproducible_generation", "true", "--num_generations", "4",
            "--per_device_train_batch_size", str(4 // nproc), "--max_completion_length", "12", "--synthetic_size", "8",
            *extra]
    env = {"SELF_EVOLVE_TRL_CACHE": str(output_dir.parent / "cache")}
    result = run([*launcher(python, nproc), "-m", "self_evolve_trl.cli", *args], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return [pd.read_parquet(output_dir / "completions" / f"completions_{s:05d}.parquet") for s in (1, 2)]


@pytest.mark.slow
def test_recipe_two_processes_give_the_same_rewards_as_one(run, python, tmp_path):
    """Groups of 4 split over 2 processes (2 completions each): same completions, re-inferences and rewards."""
    one = run_recipe(run, python, tmp_path / "one", 1)
    two = run_recipe(run, python, tmp_path / "two", 2)
    retraced = 0
    for a, b in zip(one, two):
        assert len(a) == len(b) == 4
        assert list(a["completion"].astype(str)) == list(b["completion"].astype(str))
        assert list(a["retrace_answers"]) == list(b["retrace_answers"])
        assert list(a["answer"]) == list(b["answer"])
        assert a["retrace_frequency"].tolist() == b["retrace_frequency"].tolist()
        assert all(len(x.split(" | ")) == 3 for x in a["retrace_answers"])
        retraced += sum(bool(answer) for x in a["retrace_answers"] for answer in x.split(" | "))
    assert retraced > 0  # some re-inferences did produce answers, so the comparison means something


def test_tiny_csrs_recipe_trains_two_steps(run, python, tmp_path):
    out = tmp_path / "run"
    result = run([python, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-csrs.yaml", "--max_steps", "2",
                  "--output_dir", str(out), "--log_completions", "true"],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run summary: 2 steps" in result.stdout and (out / "summary.json").exists()
    for step in (1, 2):
        table = pd.read_parquet(out / "completions" / f"completions_{step:05d}.parquet")
        assert len(table) == 8
        assert all(len(x.split(" | ")) == 3 for x in table["retrace_answers"])  # K = 3 re-inferences each
        assert table["retrace_frequency"].between(0.0, 0.9 * 0.9 + 0.1 + 1e-6).all()


def test_geoqa_csrs_recipe_settings():
    from self_evolve_trl.cli import parse_recipe

    data_args, config, model_args = parse_recipe(["recipes/geoqa-csrs.yaml", "--bf16", "false", "--use_cpu", "true"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and data_args.dataset_name == "geoqa"
    assert config.reward_funcs == ["retrace_frequency"] and config.advantage == "grpo"
    assert (config.retrace_anchors, config.retrace_anchor_base, config.retrace_mode) == ([0.7], "actual_length", "new_turn")
    assert config.retrace_samples_per_anchor == 3 and config.retrace_visual_perturbation
    assert config.use_vllm and config.vllm_mode == "server"
    assert (config.num_generations, config.temperature, config.learning_rate, config.beta) == (8, 1.0, 1e-6, 0.01)
