"""Real multi-process and DeepSpeed runs through the CLI (slow: tens of seconds each)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from self_evolve_trl.rewards import get_reward_function


pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


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


def one_and_two_processes(tmp_path, recipe, run, python):
    """The completions tables of step 1 of the recipe run by 1 process (6 rows per generation batch) and by 2
    processes (3 rows each); 2 generation batches per step."""
    common = ["--steps_per_generation", "2", "--gradient_accumulation_steps", "2"]
    two = run([python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "self_evolve_trl.cli",
               str(recipe), "--per_device_train_batch_size", "3", *common, "--output_dir", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    one = run([python, "-m", "self_evolve_trl.cli", str(recipe),
               "--per_device_train_batch_size", "6", *common, "--output_dir", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    return [pd.read_parquet(tmp_path / run_dir / "completions" / "completions_00001.parquet")
            for run_dir in ("one", "two")]


def test_two_processes_give_the_rewards_of_one(tmp_path, tiny_model_dir, reward_model_dir, run, python):
    """Groups of 4 over 2 processes x 6 rows: the group of rows 4-7 is split between the processes. A reward model
    (TRL's: each process scores its own completions, then they are gathered) gives the same scores too."""
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_model_dir,
                          reward_funcs=["soft_frequency", "majority_vote", reward_model_dir])
    a, b = one_and_two_processes(tmp_path, recipe, run, python)
    assert len(a) == len(b) == 12
    # same data and seed: the same prompts and (layout-independent sampling) the same completions
    assert a["prompt"].astype(str).tolist() == b["prompt"].astype(str).tolist()
    assert a["completion"].astype(str).tolist() == b["completion"].astype(str).tolist()
    # the batch really split a group across the processes
    assert b["process"].tolist() == [0] * 6 + [1] * 6
    # ... and the per-completion rewards are the same
    assert a["soft_frequency"].tolist() == b["soft_frequency"].tolist()
    assert a["majority_vote"].tolist() == b["majority_vote"].tolist()
    reward_model = Path(reward_model_dir).name
    assert b[reward_model].tolist() == pytest.approx(a[reward_model].tolist(), abs=1e-5)
    assert len(set(b[reward_model].round(5))) > 1

    # they are the rewards of whole groups ...
    completions = [messages[0]["content"] for messages in a["completion"]]  # TRL's conversational form
    mv = get_reward_function("majority_vote", abstain_as_answer=True, extractor="last_number")
    assert mv(completions, group_size=4) == b["majority_vote"].tolist()
    # ... which per-process scoring (what stock TRL hands a reward function) gets wrong for the split group
    local = mv(completions[4:6], group_size=2) + mv(completions[6:8], group_size=2)
    assert local != b["majority_vote"].tolist()[4:8]


def test_two_processes_give_the_judge_scores_of_one(tmp_path, scoring_model_dir, run, python):
    """The reference judge with reproducible_generation: every judgement sampled on its own seed, so that 2 processes
    (3 rows each, 2 judgements per row, judged 4 at a time: 4 + 2) give the judge scores and rewards of 1 process
    (6 rows: 4 + 4 + 4, other batches). The scoring model writes `\\boxed{0.d}` with d drawn from the seed: the
    scores really vary."""
    recipe = write_recipe(tmp_path / "recipe.yaml", scoring_model_dir, reward_funcs=["judge_modulated"],
                          reward_kwargs={"judge_modulated": {"format_pattern": None}}, advantage="centered",
                          judge_backend="reference", beta=0.0, judge_repeats=2, judge_batch_size=4,
                          judge_max_tokens=8, max_completion_length=8)
    a, b = one_and_two_processes(tmp_path, recipe, run, python)
    assert len(a) == len(b) == 12 and b["process"].tolist() == [0] * 6 + [1] * 6
    assert a["completion"].astype(str).tolist() == b["completion"].astype(str).tolist()
    scores = b["judge_score"].tolist()
    assert a["judge_score"].tolist() == scores
    assert all(s is not None and 0.1 <= s <= 0.9 for s in scores) and len(set(scores)) > 2
    assert a["judge_gate"].tolist() == b["judge_gate"].tolist()
    assert a["judge_modulated"].tolist() == b["judge_modulated"].tolist()


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


def test_lora_recipe_adapts_the_language_model_only(tiny_model_dir):
    """recipes/lora-single-gpu.yaml's target modules, applied as the trainer applies them (TRL's `get_peft_config`,
    then peft), on the tiny Qwen2.5-VL: every language-model projection gets LoRA, the vision tower none (its blocks
    have `mlp.gate_proj/up_proj/down_proj` too)."""
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText
    from trl import get_peft_config

    from self_evolve_trl.cli import parse_recipe

    _, _, model_args = parse_recipe([str(REPO / "recipes" / "lora-single-gpu.yaml"), "--use_cpu", "true", "--bf16", "false"])
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir), get_peft_config(model_args))
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A" in name}
    assert not [name for name in adapted if ".visual." in name]
    layers = model.config.text_config.num_hidden_layers
    projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert sorted(adapted) == sorted(
        f"base_model.model.model.language_model.layers.{i}.{p}" for i in range(layers) for p in projections
    )


def test_lora_recipe_fits_a_48_gb_gpu():
    """The colocated vLLM of recipes/lora-single-gpu.yaml holds Qwen2.5-VL-7B's weights and a KV cache for at least
    one sequence of its context (else vLLM refuses to start), and the context holds the longest prompt (the image
    token budget of max_pixels) plus the completion."""
    from self_evolve_trl.cli import parse_recipe

    data_args, args, model_args = parse_recipe([str(REPO / "recipes" / "lora-single-gpu.yaml"), "--use_cpu", "true",
                                                "--bf16", "false"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and args.vllm_mode == "colocate"
    assert args.vllm_max_model_length >= data_args.max_pixels // 28**2 + 512 + args.max_completion_length
    gb, weights = 48e9, 8.29e9 * 2  # Qwen2.5-VL-7B in bf16
    kv_per_token = 28 * 2 * 4 * 128 * 2  # layers x (K, V) x KV heads x head dim x bf16 bytes
    overhead = 3e9  # vLLM's profiling run and CUDA graphs
    vllm_share = args.vllm_gpu_memory_utilization * gb
    assert vllm_share >= weights + overhead + 8 * args.vllm_max_model_length * kv_per_token  # 8 sequences at once
    assert gb - vllm_share >= weights + 3e9  # training: the frozen copy, the adapter and its AdamW states


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

    from self_evolve_trl.eval import EvalConfig, evaluate

    features = datasets.Features({"images": datasets.List(datasets.Image()), "problem": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    datasets.Dataset.from_dict({"images": [[Image.new("RGB", (56, 56), "red")]], "problem": ["<image>Angle?"],
                                "answer": ["140"]}, features=features).to_parquet(str(tmp_path / "geoqa.parquet"))
    results = evaluate(EvalConfig(model=str(out), benchmarks=["geoqa"], data={"geoqa": str(tmp_path / "geoqa.parquet")},
                                  output_dir=str(tmp_path / "eval"), max_new_tokens=3, progress=False))
    assert results["run"]["adapter"] == str(out) and results["run"]["base_model"] == config["base_model_name_or_path"]
    assert results["benchmarks"]["geoqa"]["n"] == 1
    shutil.rmtree(out)
