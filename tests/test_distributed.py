"""Real multi-process and DeepSpeed runs through the CLI (slow: tens of seconds each)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from self_evolve_trl.rewards import get_reward_function


pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def write_recipe(path: Path, model_dir: str, **overrides) -> Path:
    recipe = {
        "model_name_or_path": model_dir,
        "dataset_name": "synthetic",
        "synthetic_size": 16,
        "instruction": "Answer in \\boxed{}.",
        "reward_funcs": ["soft_frequency", "majority_vote"],
        # a missing answer is the class "None": then a split group's majority really depends on the whole group
        "reward_kwargs": {"majority_vote": {"abstain_as_answer": True}},
        "answer_extractor": "last_number",
        "advantage": "lse",
        "num_generations": 4,
        "max_completion_length": 24,
        "learning_rate": 0.05,
        "max_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "log_completions": True,
        "reproducible_generation": True,
        "seed": 0,
        **overrides,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_two_processes_give_the_rewards_of_one(tmp_path, tiny_model_dir, run, python):
    """Groups of 4 over 2 processes x 6 rows: the group of rows 4-7 is split between the processes."""
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_model_dir)
    common = ["--steps_per_generation", "2", "--gradient_accumulation_steps", "2"]
    two = run([python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "self_evolve_trl.cli", str(recipe),
               "--per_device_train_batch_size", "3", *common, "--output_dir", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    one = run([python, "-m", "self_evolve_trl.cli", str(recipe),
               "--per_device_train_batch_size", "6", *common, "--output_dir", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-3000:]

    a = pd.read_parquet(tmp_path / "one" / "completions" / "completions_00001.parquet")
    b = pd.read_parquet(tmp_path / "two" / "completions" / "completions_00001.parquet")
    assert len(a) == len(b) == 12
    # same data and seed: the same prompts and (layout-independent sampling) the same completions
    assert a["prompt"].astype(str).tolist() == b["prompt"].astype(str).tolist()
    assert a["completion"].astype(str).tolist() == b["completion"].astype(str).tolist()
    # the batch really split a group across the processes
    assert b["process"].tolist() == [0] * 6 + [1] * 6
    # ... and the per-completion rewards are the same
    assert a["soft_frequency"].tolist() == b["soft_frequency"].tolist()
    assert a["majority_vote"].tolist() == b["majority_vote"].tolist()

    # they are the rewards of whole groups ...
    completions = [messages[0]["content"] for messages in a["completion"]]  # TRL's conversational form
    mv = get_reward_function("majority_vote", abstain_as_answer=True, extractor="last_number")
    assert mv(completions, group_size=4) == b["majority_vote"].tolist()
    # ... which per-process scoring (what stock TRL hands a reward function) gets wrong for the split group
    local = mv(completions[4:6], group_size=2) + mv(completions[6:8], group_size=2)
    assert local != b["majority_vote"].tolist()[4:8]


def test_deepspeed_zero3_on_cpu(tmp_path, tiny_model_dir, run, python):
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_model_dir, max_steps=2, per_device_train_batch_size=4,
                          log_completions=False, reproducible_generation=False)
    out = tmp_path / "z3"
    result = run([python, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "accelerate_configs" / "zero3_cpu.yaml"),
                  "-m", "self_evolve_trl.cli", str(recipe), "--output_dir", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DeepSpeed" in result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2
    assert (out / "model.safetensors").exists()  # ZeRO-3 weights gathered into a plain checkpoint


def test_lora_from_yaml(tmp_path, tiny_model_dir, run, python):
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_model_dir, max_steps=2, per_device_train_batch_size=4,
                          use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"],
                          log_completions=False, reproducible_generation=False)
    out = tmp_path / "lora"
    result = run([python, "-m", "self_evolve_trl.cli", str(recipe), "--output_dir", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"] and config["r"] == 4
    assert (out / "adapter_model.safetensors").exists()
    from safetensors.torch import load_file

    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: non-zero means it trained
    assert not any("visual" in name for name in weights)  # the vision tower has no q_proj/v_proj

    # the evaluation command takes the trained adapter folder as it is (base model named in its config)
    import datasets
    from PIL import Image

    from self_evolve_trl.eval.runner import EvalConfig, evaluate

    features = datasets.Features({"images": datasets.List(datasets.Image()), "problem": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    datasets.Dataset.from_dict({"images": [[Image.new("RGB", (56, 56), "red")]], "problem": ["<image>Angle?"],
                                "answer": ["140"]}, features=features).to_parquet(str(tmp_path / "geoqa.parquet"))
    results = evaluate(EvalConfig(model=str(out), benchmarks=["geoqa"], data={"geoqa": str(tmp_path / "geoqa.parquet")},
                                  output_dir=str(tmp_path / "eval"), max_new_tokens=3, progress=False))
    assert results["run"]["adapter"] == str(out) and results["run"]["base_model"] == config["base_model_name_or_path"]
    assert results["benchmarks"]["geoqa"]["n"] == 1
    shutil.rmtree(out)
