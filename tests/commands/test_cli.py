"""The command line: recipes, overrides, the embedded default, and one clear line for bad input."""

import json
from pathlib import Path

import pytest
import yaml

from self_evolve_trl.cli import main, parse_recipe
from self_evolve_trl.rewards import available_rewards


REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_recipe_values_and_command_line_overrides(tmp_path):
    data_args, args, model_args = parse_recipe(
        [str(REPO / "recipes" / "tiny-cpu-collapse.yaml"), "--learning_rate", "0.5", "--advantage", "centered"]
    )
    assert args.learning_rate == 0.5 and args.advantage == "centered"  # flags win
    assert args.reward_funcs == ["soft_frequency", "format"]  # YAML lists
    assert args.reward_kwargs["soft_frequency"] == {"hard_threshold": 0.85}  # YAML mappings
    assert args.num_generations == 8 and data_args.dataset_name == "synthetic"
    assert model_args.model_name_or_path == "tiny:qwen2.5-vl"
    _, args, _ = parse_recipe([str(REPO / "recipes" / "tiny-cpu-collapse.yaml"), "--reward_kwargs", '{"soft_frequency": {"power": 2}}'])
    assert args.reward_kwargs == {"soft_frequency": {"power": 2}}


@pytest.mark.parametrize(
    "flags, funcs, kwargs, weights, note",
    [
        (["--reward_funcs", "soft_frequency", "majority_vote"], ["soft_frequency", "majority_vote"],
         {"soft_frequency": {"hard_threshold": 0.85}}, [1.0, 1.0],
         "--reward_funcs soft_frequency majority_vote: dropped from the recipe: reward_kwargs of format."),
        (["--reward_funcs", "majority_vote", "--reward_weights", "2.0"], ["majority_vote"], {}, [2.0],
         "--reward_funcs majority_vote: dropped from the recipe: reward_kwargs of soft_frequency, format."),
        (["--reward-funcs=soft_frequency", "--reward_kwargs", '{"soft_frequency": {"power": 2}}'], ["soft_frequency"],
         {"soft_frequency": {"power": 2}}, None,
         "--reward_funcs soft_frequency: dropped from the recipe: reward_weights [1.0, 1.0] (2 for 1 function(s))."),
        (["--learning_rate", "0.1"], ["soft_frequency", "format"],
         {"soft_frequency": {"hard_threshold": 0.85}, "format": {"pattern": ".*\\\\boxed\\{.*\\}.*", "penalty": 0.5}},
         [1.0, 1.0], None),
    ],
)
def test_reward_funcs_flag_drops_the_recipes_stale_reward_settings(flags, funcs, kwargs, weights, note, capsys):
    """tiny-cpu-collapse.yaml has reward_kwargs for soft_frequency and format and two reward_weights: a `--reward_funcs` flag
    drops what no longer fits its list (unless also given as a flag) and says what in one line."""
    _, args, _ = parse_recipe([str(REPO / "recipes" / "tiny-cpu-collapse.yaml"), *flags])
    assert (args.reward_funcs, args.reward_kwargs, args.reward_weights) == (funcs, kwargs, weights)
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == ([note] if note else [])


def test_reward_funcs_swapped_on_the_command_line_trains(tmp_path, run, python):
    """A recipe with its rewards swapped by a flag: one step of training with majority_vote alone."""
    out = tmp_path / "swapped"
    result = _cli(run, python, [str(REPO / "recipes" / "tiny-cpu-collapse.yaml"), "--reward_funcs", "majority_vote",
                                "--max_steps", "1", "--logging_steps", "1", "--save_strategy", "no",
                                "--output_dir", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0] == (
        "--reward_funcs majority_vote: dropped from the recipe: reward_kwargs of soft_frequency, format; "
        "reward_weights [1.0, 1.0] (2 for 1 function(s))."
    )
    (step,) = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "reward" in e]
    assert "rewards/majority_vote/mean" in step and not any(k.startswith("rewards/soft_frequency") for k in step)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_parses(recipe):
    # GPU recipes ask for bf16; on this CPU machine parse them with the CPU switches.
    data_args, args, model_args = parse_recipe([str(recipe), "--use_cpu", "true", "--bf16", "false"])
    assert args.reward_funcs and model_args.model_name_or_path
    from self_evolve_trl.training.reward_setup import build_reward_functions

    assert len(build_reward_functions(args)) == len(args.reward_funcs)


@pytest.mark.parametrize("recipe", ["geoqa.yaml", "geo3k.yaml", "mmr1.yaml"])
def test_gpu_recipes_use_the_vllm_server_and_released_settings(recipe):
    _, args, model_args = parse_recipe([str(REPO / "recipes" / recipe), "--use_cpu", "true", "--bf16", "false"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert args.use_vllm and args.vllm_mode == "server"
    assert (args.num_generations, args.temperature, args.top_p, args.learning_rate) == (8, 1.0, 1.0, 1e-6)
    assert (args.beta, args.epsilon, args.max_completion_length, args.num_train_epochs) == (0.01, 0.2, 2048, 15)
    # 512 prompts x 8 per generation round with the 4 trainer processes of the README and of the launch configs
    for launch in ("zero3.yaml", "zero2.yaml"):
        processes = yaml.safe_load((REPO / "accelerate_configs" / launch).read_text())["num_processes"]
        assert args.per_device_train_batch_size * processes * args.steps_per_generation == 512 * 8, launch


def _cli(run, python, args, tmp_path):
    return run([python, "-m", "self_evolve_trl.cli", *args], env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})


def _bad(tmp_path, **fields):
    recipe = {"model_name_or_path": "/nonexistent/model", "dataset_name": "synthetic", "use_cpu": True, "bf16": False,
              "num_generations": 4, "per_device_train_batch_size": 4, "output_dir": str(tmp_path / "out"), **fields}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"reward_funcs": ["majority"]}, f"Unknown reward 'majority'. Valid rewards: {', '.join(available_rewards())};"),
        ({"advantage": "ppo"}, "advantage"),
        ({"reward_funcs": ["soft_frequency"], "reward_kwargs": {"soft_frequency": {"threshold": 0.9}}},
         "unknown keyword argument(s) threshold; it accepts:"),
        ({"reward_kwargs": {"majority_vote": {}}}, "reward_kwargs has an entry for 'majority_vote', which is not in reward_funcs"),
        ({"reward_funcs": ["majority_vote"], "reward_kwargs": {"majority_vote": {"match": "fuzzy"}}},
         "Reward 'majority_vote': match='fuzzy' is not one of: exact, normalized, math."),
        ({"reward_funcs": ["soft_frequency", "format"],
          "reward_kwargs": {"soft_frequency": {"hard_threshold": "high"}, "format": {"penalty": "x"}}},
         "Reward 'soft_frequency': hard_threshold='high' is not a float or None."),
        ({"reward_funcs": ["format"], "reward_kwargs": {"format": {"pattern": "["}}},
         "Reward 'format': pattern='[' is not a valid regular expression"),
        ({"per_device_train_batch_size": 3}, "is not a multiple of num_generations (4)"),
        ({"answer_match": "fuzzy"}, "answer_match"),
        ({"no_such_field": 1}, "Unknown recipe field(s): no_such_field"),
        ({"advantage": "lse", "multi_objective_aggregation": "normalize_then_sum"},
         "error: multi_objective_aggregation 'normalize_then_sum' works with advantage 'grpo' only; with advantage "
         "'lse' the valid choice is sum_then_normalize."),
        ({"advantage": "centered", "scale_rewards": "group"},
         "error: scale_rewards 'group' applies to advantage 'grpo' only; advantage 'centered' is not scaled"),
    ],
)
def test_bad_input_one_clear_line_before_loading_the_model(fields, message, tmp_path, capsys):
    assert main([_bad(tmp_path, **fields)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert "/nonexistent/model" not in last  # stopped before the (missing) model was looked at
    assert not (tmp_path / "out").exists()


def test_advantage_error_names_the_choices(tmp_path, capsys):
    assert main([_bad(tmp_path, advantage="ppo")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "grpo" in last and "centered" in last and "lse" in last


def test_every_config_problem_in_the_one_line(tmp_path, capsys):
    """The config's own checks all run: a missing judge_base_url does not hide a missing prompt template."""
    template = tmp_path / "no-template.txt"
    assert main([_bad(tmp_path, judge_backend="openai", judge_prompt_template=str(template), lse_tau=-1.0)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: lse_tau must be > 0, got -1.0. | judge_backend 'openai' needs judge_base_url, e.g. "
        f"http://127.0.0.1:8001/v1. | Cannot read judge prompt template {template}: No such file or directory"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("column, option", [("question_column", "question"), ("image_column", "image")])
def test_dataset_missing_a_column(column, option, tmp_path, capsys):
    rows = [{"problem": "What is 1+1?", "picture": "a.png", "answer": "2"}]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    fields = {"dataset_name": str(data), "image_column": "picture"}
    fields[column] = "missing_col"
    assert main([_bad(tmp_path, **fields)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"has no {option} column 'missing_col'" in last and "available columns: problem, picture, answer" in last


def test_missing_model_path(tmp_path, run, python):
    """A real process: exit status 2, one line, no traceback."""
    result = _cli(run, python, [_bad(tmp_path)], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: Model path not found: /nonexistent/model"


def test_missing_recipe_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "Recipe file not found" in capsys.readouterr().err


def test_unknown_tiny_model_names_the_valid_ones():
    from self_evolve_trl.data.tiny import resolve_tiny_model

    with pytest.raises(ValueError, match="valid tiny models: tiny:qwen2.5-vl, tiny:vllm"):
        resolve_tiny_model("tiny:huge", "/tmp")


def test_embedded_default_runs_and_writes_its_outputs(tmp_path, run, python):
    """The README's first command (shortened to 4 steps, logged each step, 8 held-out questions): the taught base
    built offline into the cache, checkpoints, logs, the summary opening with the held-out accuracy."""
    out = tmp_path / "tiny"
    result = _cli(run, python, [str(REPO / "recipes" / "tiny-cpu.yaml"), "--max_steps", "4", "--save_steps", "2",
                                "--logging_steps", "1", "--eval_max_samples", "8", "--output_dir", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "cache" / "tiny-qwen2.5-vl-taught" / "taught_model.json").exists()
    assert "Run summary: 4 steps" in result.stdout and "majority ratio" in result.stdout
    assert "Held-out accuracy, before -> after training (" in result.stdout and "\nVerdict: " in result.stdout
    assert (out / "checkpoint-4" / "trainer_state.json").exists() and (out / "model.safetensors").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert {"reward", "self_consistency/majority_ratio", "labels/rollout_accuracy"} <= set(summary["metrics"])
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "reward" in e] == [1, 2, 3, 4]


def test_training_images_are_resized_within_the_processors_bounds(tmp_path, tiny_model_dir, tiny_processor):
    """A recipe without min_pixels/max_pixels: the training rows' images are resized within the loaded processor's
    bounds (the tiny one's: 3,136 to 50,176 pixels), so that they give the image tokens the processor itself gives."""
    import datasets
    from PIL import Image

    from self_evolve_trl.cli import train

    large = Image.new("RGB", (2000, 1500), "blue")
    rows = [{"image": large, "problem": "How many squares?", "answer": "2"}] * 2
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(tmp_path / "large.parquet")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": tiny_model_dir, "dataset_name": str(tmp_path / "large.parquet"),
        "reward_funcs": ["majority_vote"], "num_generations": 2, "per_device_train_batch_size": 2,
        "max_completion_length": 4, "max_steps": 1, "save_strategy": "no", "use_cpu": True, "bf16": False,
        "report_to": "none", "output_dir": str(tmp_path / "out"),
    }))
    trainer = train(*parse_recipe([str(recipe)]))
    (image,) = trainer.train_dataset[0]["images"]
    assert 3136 <= image.width * image.height <= 50176 and image.width % 28 == 0 and image.height % 28 == 0
    grid = tiny_processor.image_processor(images=[image])["image_grid_thw"].tolist()
    assert grid == tiny_processor.image_processor(images=[large])["image_grid_thw"].tolist()


def _readme_commands(section: str) -> list[tuple[dict, list[str]]]:
    """(environment, argv) of every command in the bash blocks of a README section (line continuations joined)."""
    import re
    import shlex

    text = (REPO / "README.md").read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            env = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=\S*", w))
            if words:
                commands.append((env, words[len(env):]))
    return commands


def test_readme_direct_vllm_serve_command_is_the_trl_vllm_serve_one():
    """README "Training on GPUs": the direct `vllm serve` command is what TRL 1.16's `trl vllm-serve` runs for the
    README's step 1 (its `build_command`), less the flags at vLLM's defaults, on the same GPUs."""
    from trl.scripts.vllm_serve import build_command, make_parser

    commands = _readme_commands("Training on GPUs")
    (trl_env, trl_argv), = [(env, argv) for env, argv in commands if argv[:2] == ["trl", "vllm-serve"]]
    (direct_env, direct_argv), = [(env, argv) for env, argv in commands if argv[:2] == ["vllm", "serve"]]
    (script_args,) = make_parser().parse_args_and_config(trl_argv[2:])
    built = build_command(script_args)
    built = built[built.index("serve") + 1:]

    def flags(argv):  # {flag: value or None}
        out, i = {}, 0
        while i < len(argv):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            out[argv[i]] = argv[i + 1] if has_value else None
            i += 2 if has_value else 1
        return out

    vllm_defaults = {"--host": "0.0.0.0", "--data-parallel-size": "1", "--gpu-memory-utilization": "0.9",
                     "--dtype": "auto", "--kv-cache-dtype": "auto", "--model-impl": "vllm", "--uvicorn-log-level": "info"}
    expected = {k: v for k, v in flags(built[1:]).items() if vllm_defaults.get(k) != v}
    expected["--enable-scale-out"] = None  # added by TRL with vLLM >= 0.30 (not installed here)
    assert direct_argv[2] == built[0] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert flags(direct_argv[3:]) == expected
    assert direct_env == {**trl_env, "VLLM_SERVER_DEV_MODE": "1"}
    assert trl_env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and expected["--tensor-parallel-size"] == "4"


def test_the_command_ends_the_process_group_it_ran_in(tmp_path):
    """Under torchrun the command destroys the process group before the interpreter exits, also when it stops with an
    error: gloo's threads, left to the interpreter's finalization, can abort a process that finished its work."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main([str(tmp_path / "missing.yaml")]) == 2
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
