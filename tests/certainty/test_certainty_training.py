"""The confidence rewards in training through the CLI: the tiny recipe with each reward, with LoRA, and under
DeepSpeed ZeRO-3 (one CPU process, parameters partitioned); and the 7B recipe's settings."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--max_steps", "1", "--num_generations", "4", "--per_device_train_batch_size", "4",
         "--max_completion_length", "8", "--save_strategy", "no"]


def check_run(result, out, reward):
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run summary: 1 steps" in result.stdout
    (step,) = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "reward" in e]
    assert step["certainty/seconds"] > 0
    value = step[f"rewards/{reward}/mean"]
    assert value > 0 if reward == "self_certainty" else value < 0  # KL(U ‖ p) > 0; −H < 0
    if reward == "token_entropy" and step["completions/min_length"] == step["completions/max_length"]:
        # equal lengths: the mean of the completions' mean entropies is the token mean that TRL's own loss pass logs
        assert -value == pytest.approx(step["entropy"], rel=1e-4)


@pytest.mark.parametrize("reward", ["self_certainty", "token_entropy"])
def test_tiny_recipe_trains_one_step_with_each_reward(run, python, tmp_path, reward):
    out = tmp_path / "run"
    result = run([python, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-certainty.yaml", *SMALL,
                  "--reward_funcs", reward, "--output_dir", str(out)],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    check_run(result, out, reward)


def test_tiny_recipe_trains_one_step_with_lora(run, python, tmp_path):
    out = tmp_path / "run"
    result = run([python, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-certainty.yaml", *SMALL,
                  "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj",
                  "v_proj", "--output_dir", str(out)],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    check_run(result, out, "self_certainty")


@pytest.mark.slow
def test_tiny_recipe_trains_one_step_under_deepspeed_zero3(run, python, tmp_path, tiny_model_dir):
    """The model is built before the launch (under ZeRO-3's partitioned init it could not be written)."""
    out = tmp_path / "run"
    config = REPO / "accelerate_configs" / "zero3_cpu.yaml"
    result = run([python, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m",
                  "self_evolve_trl.cli", "recipes/tiny-cpu-certainty.yaml", *SMALL,
                  "--model_name_or_path", tiny_model_dir, "--reward_funcs", "token_entropy", "--output_dir", str(out)])
    check_run(result, out, "token_entropy")


def test_mmr1_intuitor_recipe_settings():
    from self_evolve_trl.cli import parse_recipe

    data_args, config, model_args = parse_recipe(["recipes/mmr1-intuitor.yaml", "--bf16", "false", "--use_cpu", "true"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and data_args.dataset_name == "mmr1"
    assert config.reward_funcs == ["self_certainty"] and config.advantage == "grpo"
    assert config.use_vllm and config.vllm_mode == "server"
    assert (config.num_generations, config.temperature, config.learning_rate, config.beta) == (8, 1.0, 3e-6, 0.005)
    assert config.max_completion_length == 3072 and config.certainty_chunk_tokens == 1024
    # one update per round: 4 processes x 8 x 32 = 1024 completions = 128 prompts x G
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps * 4 == 128 * 8
