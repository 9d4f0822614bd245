"""`cli check` / `--dry-run`: every problem of a recipe at once, each with its fix, nothing trained."""

import http.server
import json
import shutil
import socket
import threading
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from self_evolve_trl.check import batch_problems, check_recipe, endpoint_problems
from self_evolve_trl.check import main as check_main
from self_evolve_trl.errors import Problem
from self_evolve_trl.recipe import field_problems
from self_evolve_trl.rewards import available_rewards

BASE = {
    "dataset_name": "synthetic",
    "synthetic_size": 8,
    "instruction": "Answer in \\boxed{}.",
    "reward_funcs": ["soft_frequency", "format"],
    "num_generations": 4,
    "per_device_train_batch_size": 4,
    "max_completion_length": 8,
    "max_steps": 2,
    "save_steps": 1,
    "use_cpu": True,
    "bf16": False,
    "report_to": "none",
}


def write_recipe(tmp_path, tiny_model_dir, **fields) -> str:
    recipe = {**BASE, "model_name_or_path": tiny_model_dir, "output_dir": str(tmp_path / "out"), **fields}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def areas(report) -> list[str]:
    return [p.area for p in report.problems if not p.warning]


def test_a_clean_recipe_passes_and_writes_nothing(tmp_path, tiny_model_dir, capsys):
    recipe = write_recipe(tmp_path, tiny_model_dir)
    assert check_main([recipe]) == 0
    out = capsys.readouterr().out
    assert "No problems: the recipe is ready to train." in out
    assert not (tmp_path / "out").exists()


def test_every_problem_at_once_each_with_its_fix(tmp_path, tiny_model_dir):
    recipe = write_recipe(
        tmp_path, tiny_model_dir,
        reward_funcs=["soft_frequncy", "format", "no_such_module:fn"],
        reward_kwargs={"format": {"penalti": 0.5}, "majority_vote": {}},
        reward_weights=[1.0, 1.0],
        advantage="lsee",
        lse_tau=-1.0,
        num_generations=3,
        lerning_rate=1e-3,
        max_steps=[1],
        resume_from_checkpoint=str(tmp_path / "no-checkpoint"),
    )
    report = check_recipe(recipe)
    by_area = {p.area: p for p in report.problems}
    assert areas(report) == [
        "lerning_rate", "max_steps",
        "reward_kwargs", "reward 'soft_frequncy'", "reward_kwargs['format']", "reward 'no_such_module:fn'",
        "reward_weights", "advantage", "lse_tau", "batch", "resume_from_checkpoint",
    ]
    assert by_area["advantage"].fix == "use one of: grpo, centered, lse."
    assert by_area["lerning_rate"].fix == "did you mean `learning_rate`?"
    assert by_area["max_steps"].message == "expected an integer, got [1]."
    assert "majority_vote" in by_area["reward_kwargs"].message
    fix = by_area["reward 'soft_frequncy'"].fix  # the registry may hold more rewards than these
    assert fix == f"use one of: {', '.join(available_rewards())}, or an importable `module:function`."
    assert by_area["reward_kwargs['format']"].fix == "set only: pattern, penalty."
    assert by_area["reward_weights"].message == "has 2 entries for 3 reward functions."
    assert "4 completions per generation round, not a whole number of groups of num_generations (3)" in by_area["batch"].message
    assert by_area["batch"].fix.startswith("make per_device_train_batch_size a multiple of 3")
    text = report.format()
    assert text.endswith("11 problem(s).") and text.count("Fix: ") == 11
    assert not (tmp_path / "out").exists()


def test_bad_reward_kwarg_values(tmp_path, tiny_model_dir):
    recipe = write_recipe(tmp_path, tiny_model_dir, reward_funcs=["majority_vote", "format"],
                          reward_kwargs={"majority_vote": {"match": "fuzzy"}, "format": {"penalty": "x"}})
    report = check_recipe(recipe)
    assert areas(report) == ["reward_kwargs['majority_vote']", "reward_kwargs['format']"]
    assert report.problems[0].message == "Reward 'majority_vote': match='fuzzy' is not one of: exact, normalized, math."
    assert report.problems[1].message == "Reward 'format': penalty='x' is not a float."
    assert report.problems[1].fix == "give each argument a value of its type and choices."


def test_batch_geometry_for_the_process_count():
    args = SimpleNamespace(num_generations=8, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                           steps_per_generation=None, generation_batch_size=None, num_generations_eval=None,
                           do_eval=False, num_iterations=1, save_steps=500, save_strategy="steps")
    geometry, problems = batch_problems(args, num_processes=2)
    assert problems == [] and geometry.generation_batch_size == 8 and geometry.prompts_per_round == 1
    _, problems = batch_problems(args, num_processes=1)
    assert [p.area for p in problems] == ["batch"]
    assert "4 completions per generation round" in problems[0].message
    assert problems[0].fix.startswith("make per_device_train_batch_size a multiple of 8")
    _, problems = batch_problems(SimpleNamespace(**{**vars(args), "num_generations": 6}), num_processes=4)
    assert problems[0].fix.startswith("make per_device_train_batch_size a multiple of 3")  # 4 processes give 2 of 6
    _, problems = batch_problems(SimpleNamespace(**{**vars(args), "steps_per_generation": 2, "generation_batch_size": 16}), 2)
    assert problems[0].message == "and steps_per_generation are both set."
    _, problems = batch_problems(SimpleNamespace(**{**vars(args), "gradient_accumulation_steps": 2, "steps_per_generation": 4,
                                                    "save_steps": 1}), 2)
    assert [(p.area, p.warning) for p in problems] == [("save_steps", True)]  # checkpoints inside a generation round


def test_process_count_from_the_command_line(tmp_path, tiny_model_dir, capsys):
    recipe = write_recipe(tmp_path, tiny_model_dir, num_generations=8, per_device_train_batch_size=4, synthetic_size=16)
    assert check_main([recipe, "--num_processes", "2"]) == 0
    assert check_main([recipe, "--num-processes", "1"]) == 2
    assert "× 1 process(es) × steps_per_generation (1) = 4 completions" in capsys.readouterr().out


def test_field_types_and_names():
    problems = field_problems({
        "max_steps": "12",  # argparse converts a string default: fine
        "learning_rate": "1e-6",  # YAML 1.1 reads 1e-6 as a string; argparse makes it a float: fine
        "save_strategy": "steps",
        "report_to": "none",
        "lora_target_modules": "all-linear",
        "resume_from_checkpoint": True,
        "num_generations": 2.5,
        "bf16": "maybe",
        "save_strategy_": "epoch",
        "lr_scheduler_type": "cosine_wobble",
        "reward_weights": ["one"],
        "retrace_anchors_": 0.7,
        "env": {"HF_HOME": "/tmp"},
    })
    assert [(p.area, p.message) for p in problems] == [
        ("num_generations", "expected an integer (or null), got 2.5."),
        ("bf16", "expected true or false (or null), got 'maybe'."),
        ("save_strategy_", "unknown field."),
        ("lr_scheduler_type", problems[3].message),
        ("reward_weights", "expected a list of numbers (or null), got ['one']."),
        ("retrace_anchors_", "unknown field."),
    ]
    assert problems[2].fix == "did you mean `save_strategy`?"
    assert problems[3].message.startswith("expected one of 'linear', 'cosine'")
    assert problems[3].message.endswith(", got 'cosine_wobble'.") and "a string" not in problems[3].message


def test_what_trl_itself_rejects_is_reported(tmp_path, tiny_model_dir):
    recipe = write_recipe(tmp_path, tiny_model_dir, vllm_importance_sampling_clip_min=5.0,
                          vllm_importance_sampling_clip_max=3.0)
    report = check_recipe(recipe)
    assert areas(report) == ["config"]
    assert report.problems[0].message.startswith("vllm_importance_sampling_clip_min (5.0) must be less than")


def test_dataset_rows_and_images(tmp_path, tiny_model_dir):
    Image.new("RGB", (56, 56), "red").save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [{"problem": f"How many? {i}", "image": "broken.png" if i == 2 else "ok.png", "answer": "1"} for i in range(5)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = check_recipe(write_recipe(tmp_path, tiny_model_dir, dataset_name=str(data), synthetic_size=None,
                                       per_device_train_batch_size=24))
    assert areas(report) == ["dataset", "dataset row 2"]
    assert report.problems[0].message.startswith("has 5 rows; one generation round needs 6 prompts")
    assert report.problems[1].message == f"Cannot read image {tmp_path}/broken.png: cannot identify image file '{tmp_path}/broken.png'"

    report = check_recipe(write_recipe(tmp_path, tiny_model_dir, dataset_name=str(data), question_column="question"))
    assert areas(report) == ["dataset"] and "no question column 'question'" in report.problems[0].message


def test_model_config_processor_and_weights_without_loading_them(tmp_path, tiny_model_dir):
    incomplete = tmp_path / "model"
    shutil.copytree(tiny_model_dir, incomplete, ignore=shutil.ignore_patterns("*.safetensors"))
    report = check_recipe(write_recipe(tmp_path, str(incomplete)))
    assert areas(report) == ["model"] and report.problems[0].message.startswith(f"folder {incomplete} has no weight files")

    report = check_recipe(write_recipe(tmp_path, str(tmp_path / "missing")))
    assert areas(report) == ["model_name_or_path"]
    assert report.problems[0].message == f"Model path not found: {tmp_path / 'missing'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server():
    """A real HTTP server on localhost: 200 on /health and /v1/models, 404 elsewhere."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path in ("/health", "/v1/models") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_vllm_server_and_judge_endpoints(http_server):
    closed = f"http://127.0.0.1:{free_port()}"
    args = SimpleNamespace(use_vllm=True, vllm_mode="server", vllm_server_base_url=http_server, vllm_server_port=8000,
                           vllm_weight_sync="disk", use_cpu=True)
    assert endpoint_problems(args, timeout=2.0) == []
    args.vllm_weight_sync = "nccl"  # NCCL needs CUDA on the trainer
    (problem,) = endpoint_problems(args, timeout=2.0)
    assert problem.area == "vllm_weight_sync" and "needs CUDA" in problem.message
    assert problem.fix.startswith("set vllm_weight_sync: disk")
    args.vllm_weight_sync = "disk"
    args.vllm_server_base_url = closed
    (problem,) = endpoint_problems(args, timeout=2.0)
    assert problem.area == "vllm server" and problem.message == f"{closed}/health is not reachable (ConnectionError)."
    assert problem.fix.startswith("start it first (`trl vllm-serve --model MODEL --port 8000`")
    args.vllm_mode = "colocate"
    assert endpoint_problems(args, timeout=2.0) == []

    # the judge's fields are read only where they exist (another feature adds them)
    judge = SimpleNamespace(use_vllm=False, judge_backend="openai", judge_base_url=f"{http_server}/v1")
    assert endpoint_problems(judge, timeout=2.0) == []
    judge.judge_base_url = f"{closed}/v1"
    (problem,) = endpoint_problems(judge, timeout=2.0)
    assert problem.area == "judge (openai)" and "/v1/models is not reachable" in problem.message
    judge.judge_base_url = f"http://user:s3cret@{closed.split('//')[1]}/v1?api_key=s3cret"
    (problem,) = endpoint_problems(judge, timeout=2.0)  # a key in the URL is not shown
    assert problem.message == f"http://***@{closed.split('//')[1]}/v1/models is not reachable (ConnectionError)."
    judge.judge_backend = "reference"  # the frozen in-process judge has no endpoint to reach
    assert endpoint_problems(judge, timeout=2.0) == []


def test_cut_off_weight_file(tmp_path, tiny_model_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    report = check_recipe(write_recipe(tmp_path, str(model)))
    (problem,) = [p for p in report.problems if p.area == "model"]
    assert problem.message.startswith(f"weight file {weights} is unreadable (Error while deserializing header")
    assert problem.fix == "download or copy the model again."


def test_data_settings_are_validated(tmp_path, tiny_model_dir):
    report = check_recipe(write_recipe(tmp_path, tiny_model_dir, synthetic_size=0))
    (problem,) = [p for p in report.problems if p.area == "dataset"]
    assert problem.message == "synthetic_size must be at least 1, got 0."


def test_output_dir_that_is_a_file(tmp_path, tiny_model_dir):
    (tmp_path / "taken").write_text("not a folder")
    report = check_recipe(write_recipe(tmp_path, tiny_model_dir, output_dir=str(tmp_path / "taken")))
    (problem,) = [p for p in report.problems if p.area == "output_dir"]
    assert problem.message == f"{tmp_path / 'taken'} is a file, not a folder."


def test_dry_run_on_the_training_command(tmp_path, tiny_model_dir, run, python):
    recipe = write_recipe(tmp_path, tiny_model_dir, num_generations=3)
    result = run([python, "-m", "self_evolve_trl.cli", recipe, "--dry-run", "--max_steps", "5"], timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "problem: batch:" in result.stdout and result.stdout.strip().endswith("1 problem(s).")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()

    result = run([python, "-m", "self_evolve_trl.cli", "check", recipe, "--num_generations", "4", "--bogus_flag", "1"], timeout=300)
    assert result.returncode == 2
    assert "problem: --bogus_flag: unknown command-line flag." in result.stdout


def test_problem_text():
    assert str(Problem("lse_tau", "must be > 0", "use 1.0.")) == "lse_tau: must be > 0. Fix: use 1.0."


def test_a_bad_flag_is_reported_and_the_other_overrides_kept(tmp_path, tiny_model_dir):
    """One flag that argparse rejects leaves the others in force: here `--num_generations 4` fixes the recipe's batch
    (3 does not divide 4 completions) and `--lse_tau -1` is a problem of its own."""
    recipe = write_recipe(tmp_path, tiny_model_dir, num_generations=3)
    report = check_recipe(recipe, ["--learning_rate", "fast", "--num_generations", "4", "--lse_tau", "-1",
                                   "--max_steps=x", "--save_steps", "1"])
    assert [(p.area, p.message) for p in report.errors] == [
        ("command line", "argument --learning_rate/--learning-rate: invalid float value: 'fast'"),
        ("command line", "argument --max_steps/--max-steps: invalid int value: 'x'"),
        ("lse_tau", "must be > 0, got -1.0."),
    ]
    report = check_recipe(recipe, ["--lea", "1", "--num_generations", "4"])  # an ambiguous abbreviation
    assert [(p.area, p.message) for p in report.errors] == [
        ("command line", "ambiguous option: --lea could match --learning_rate, --learning-rate")]


def test_every_config_problem_at_once(tmp_path, tiny_model_dir):
    """The config's own checks report each problem, not only the first: a missing judge_base_url does not hide a
    missing judge prompt template; and TRL's own checks still run with a batch that cannot hold whole groups."""
    recipe = write_recipe(
        tmp_path, tiny_model_dir, reward_funcs=["judge_modulated"], judge_backend="openai",
        judge_prompt_template=str(tmp_path / "no-template.txt"), judge_max_failure_rate=1.5, retrace_anchors=[1.5],
        reward_kwargs={"judge_modulated": {"on_failure": "neutral"}}, num_generations=3,
        vllm_importance_sampling_clip_min=5.0, vllm_importance_sampling_clip_max=3.0,
    )
    report = check_recipe(recipe)
    assert [(p.area, p.message) for p in report.errors] == [
        ("retrace_anchors", "must be a non-empty list of fractions in [0, 1], got [1.5]."),
        ("judge_backend", "'openai' needs judge_base_url, e.g. http://127.0.0.1:8001/v1."),
        ("judge_max_failure_rate", "must be between 0 and 1, got 1.5."),
        ("config", f"Cannot read judge prompt template {tmp_path / 'no-template.txt'}: No such file or directory"),
        ("judge_on_failure",
         "Set the judge failure policy with judge_on_failure, not reward_kwargs['judge_modulated'].on_failure "
         "('neutral' there, 'zero' in judge_on_failure; valid choices: zero, neutral)."),
        ("batch", report.errors[5].message),
        ("config",
         "vllm_importance_sampling_clip_min (5.0) must be less than vllm_importance_sampling_clip_max (3.0)."),
    ]
    assert report.errors[5].message.endswith("not a whole number of groups of num_generations (3).")


def test_check_reads_a_reward_funcs_flag_as_training_does(tmp_path, tiny_model_dir):
    """`--reward_funcs` on the command line makes the recipe's other reward settings stale, in check as in training."""
    recipe = write_recipe(tmp_path, tiny_model_dir, reward_weights=[1.0, 1.0],
                          reward_kwargs={"soft_frequency": {"hard_threshold": 0.85}})
    report = check_recipe(str(recipe), ["--reward_funcs", "majority_vote"])
    assert not report.errors, report.format()
    (warning,) = [p for p in report.problems if p.area == "reward_funcs"]
    assert warning.warning
    assert warning.message == ("--reward_funcs majority_vote: dropped from the recipe: reward_kwargs of soft_frequency; "
                               "reward_weights [1.0, 1.0] (2 for 1 function(s)).")


def test_advantage_settings_that_do_not_combine_are_refused_as_the_config_refuses_them(tmp_path, tiny_model_dir):
    """`check` and the config report the same lines, from the one rule (`advantage_setting_problems`)."""
    from self_evolve_trl.advantages import advantage_setting_problems
    from self_evolve_trl.training.config import ConfigError, SelfEvolveConfig

    settings = dict(advantage="centered", multi_objective_aggregation="normalize_then_sum", scale_rewards="batch",
                    lse_tau=0.5, clip_advantage=0.1)
    expected = advantage_setting_problems("centered", "normalize_then_sum", "batch", 0.5, "log_group_size", 0.1)
    assert [line.split(" ", 1)[0] for line in expected] == ["multi_objective_aggregation", "scale_rewards", "lse_tau"]
    report = check_recipe(write_recipe(tmp_path, tiny_model_dir, **settings))
    assert [f"{p.area} {p.message}" for p in report.errors] == expected
    with pytest.raises(ConfigError) as error:
        SelfEvolveConfig(output_dir=str(tmp_path / "out"), use_cpu=True, **settings)
    assert str(error.value) == " | ".join(expected)
    # what combines passes both (`scale_rewards: true` is TRL's spelling of group)
    report = check_recipe(write_recipe(tmp_path, tiny_model_dir, advantage="grpo", clip_advantage=0.1,
                                       multi_objective_aggregation="normalize_then_sum", scale_rewards=True))
    assert not report.errors, report.format()


def test_rewards_that_vote_differently_are_a_warning(tmp_path, tiny_model_dir):
    """The diagnostics describe one vote: check says which, as training does, when two rewards vote differently."""
    recipe = write_recipe(tmp_path, tiny_model_dir, reward_funcs=["majority_vote", "soft_frequency"],
                          reward_kwargs={"soft_frequency": {"extractor": "last_number"}})
    report = check_recipe(recipe)
    assert not report.errors, report.format()
    (warning,) = [p for p in report.problems if p.warning]
    assert warning.message == (
        "the diagnostics (self_consistency/*, labels/*) vote with the answer settings of the 'majority_vote' reward; "
        "'soft_frequency' vote(s) with other settings, which they do not describe.")
