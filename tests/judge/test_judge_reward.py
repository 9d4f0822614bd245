"""Actor–Judge: the judge_modulated reward on hand-made groups, the prompt template, and the judge settings of the
config (the failure policy handed to the reward)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from self_evolve_trl.training.config import ConfigError, SelfEvolveConfig
from self_evolve_trl.data.messages import prompt_images, prompt_text
from self_evolve_trl.judge.prompt import JudgeTemplate, default_template_path
from self_evolve_trl.rewards import RewardError, get_reward_function
from self_evolve_trl.rewards.judge import judge_modulated
from tests.judge.judge_helpers import NEVER_SCORES, gate_formula, make_trainer

GROUP = ["<think>a</think> \\boxed{2}"] * 3 + ["\\boxed{3}"]  # the last one breaks the default format


@pytest.mark.parametrize("on_failure, failed_reward", [("zero", 0.75 * gate_formula(0.0)), ("neutral", 0.75)])
def test_judge_modulated_on_a_hand_made_group(on_failure, failed_reward):
    scores = [1.0, 0.5, None, 0.97]
    rewards = judge_modulated(GROUP, 4, judge_scores=scores, on_failure=on_failure)
    # b = soft frequency (p_max 0.75 <= 0.85: no hard branch) = [.75, .75, .75, .25]; f = [0, 0, 0, -0.5]
    expected = [min(1.0, 0.75 * gate_formula(1.0)), 0.75 * gate_formula(0.5), failed_reward,
                max(0.0, 0.25 * gate_formula(0.97) - 0.5)]
    assert rewards == pytest.approx(expected)
    assert rewards[0] == pytest.approx(0.8886, abs=1e-4) and rewards[3] == 0.0


def test_judge_modulated_hard_majority_can_only_be_suppressed():
    group = ["<think>x</think> \\boxed{5}"] * 7 + ["<think>x</think> \\boxed{6}"]  # p_max = 7/8 > 0.85
    assert judge_modulated(group, 8, judge_scores=[1.0] * 8) == pytest.approx([1.0] * 7 + [0.0])
    assert judge_modulated(group, 8, judge_scores=[0.0] * 8) == pytest.approx([gate_formula(0.0)] * 7 + [0.0])
    # without the hard threshold: plain frequencies, amplified
    soft = judge_modulated(group, 8, judge_scores=[0.93] * 8, base_kwargs={"hard_threshold": None})
    assert soft == pytest.approx([7 / 8 * gate_formula(0.93)] * 7 + [1 / 8 * gate_formula(0.93)])  # 0.875·1.054


def test_judge_modulated_options_two_groups():
    completions = ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}", "none", "\\boxed{4}", "\\boxed{4}", "\\boxed{4}", "x"]
    scores = [0.95, float("nan"), 0.4, 1.0, 0.0, 0.8, 0.95, 0.97]
    rewards = judge_modulated(completions, 4, scores, base_reward="majority_vote", base_kwargs={}, format_pattern=None,
                              on_failure="neutral", lam_neg=0.4)
    # majority: [1, 1, 0, 0 | 1, 1, 1, 0]; NaN is a failure (gate 1 under neutral); no format term
    expected = [min(1.0, gate_formula(0.95, lam_neg=0.4)), 1.0, 0.0, 0.0, gate_formula(0.0, lam_neg=0.4),
                gate_formula(0.8, lam_neg=0.4), min(1.0, gate_formula(0.95, lam_neg=0.4)), 0.0]
    assert rewards == pytest.approx(expected)
    # the format penalty and conversational completions
    conversational = [[{"role": "assistant", "content": c}] for c in completions]
    penalised = judge_modulated(conversational, 4, [1.0] * 8, base_kwargs={}, format_pattern=r".*\\boxed\{1\}",
                                format_penalty=0.25)
    g = gate_formula(1.0)
    assert penalised == pytest.approx([0.5 * g, 0.5 * g, 0.25 * g - 0.25, 0.0] + [0.75 * g - 0.25] * 3 + [0.0])


def test_judge_modulated_logs_its_metrics():
    metrics, extra = {}, {}
    judge_modulated(GROUP, 4, [1.0, 0.5, None, 0.0], log_metric=lambda k, v: metrics.setdefault(k, v),
                    log_extra=lambda k, v: extra.setdefault(k, v))
    assert metrics["judge/score_mean"] == pytest.approx(0.5)  # over the three scores only
    assert metrics["judge/gate_mean"] == pytest.approx(
        (gate_formula(1.0) + gate_formula(0.5) + 2 * gate_formula(0.0)) / 4, abs=1e-6)
    assert metrics["judge/amplified_share"] == 0.25
    assert metrics["judge/suppressed_share"] == 0.75  # g(0.5) = 0.976 and the two zeros
    assert metrics["judge/missing_share"] == 0.25
    assert extra["judge_score"] == [1.0, 0.5, None, 0.0]
    assert extra["judge_gate"][2] == pytest.approx(gate_formula(0.0), abs=1e-6)


def test_judge_modulated_bad_input():
    with pytest.raises(ValueError, match="valid choices: zero, neutral"):
        judge_modulated(GROUP, 4, [1.0] * 4, on_failure="skip")
    with pytest.raises(ValueError, match="3 values for 4 completions"):
        judge_modulated(GROUP, 4, [1.0] * 3)
    with pytest.raises(RewardError, match="Unknown reward 'nope'"):
        judge_modulated(GROUP, 4, [1.0] * 4, base_reward="nope")


def test_judge_modulated_is_registered_and_declares_its_input():
    fn = get_reward_function("judge_modulated", base_kwargs={}, format_pattern=None)
    assert fn.required_inputs == ("judge_scores",)
    assert fn(["\\boxed{1}", "\\boxed{1}"], group_size=2, judge_scores=[1.0, 0.0]) == pytest.approx(
        [1.0, gate_formula(0.0)])  # b = 1: amplification is clipped at 1
    with pytest.raises(RewardError, match="accepts: .*on_failure"):
        get_reward_function("judge_modulated", threshold=0.5)


def test_default_template_states_the_rubric():
    template = JudgeTemplate.load()
    assert template.path == default_template_path() and Path(template.path).is_file()
    for phrase in ("answer_correctness", "reasoning_quality", "visual_grounding",
                   "overall_score = 0.5 * answer_correctness + 0.3 * reasoning_quality + 0.2 * visual_grounding",
                   "<think>", "\\boxed{<overall_score>}", "[BEGIN SCORES]"):
        assert phrase in template.system, phrase
    image = Image.new("RGB", (56, 56))
    prompt = [{"role": "system", "content": "sys"},
              {"role": "user", "content": [{"type": "image", "image": image},
                                           {"type": "text", "text": "How many? Answer in \\boxed{}."}]}]
    request = template.request(prompt_text(prompt), [{"role": "assistant", "content": "it is {problem} 3"}],
                               prompt_images(prompt))
    assert request.images == [image] and request.system == template.system
    assert "[PROBLEM]\nHow many? Answer in \\boxed{}.\n[END PROBLEM]" in request.text
    assert "[CANDIDATE_SOLUTION]\nit is {problem} 3\n[END CANDIDATE_SOLUTION]" in request.text  # left as written


def test_template_errors(tmp_path):
    path = tmp_path / "judge.txt"
    path.write_text("=== system ===\nBe fair.\n=== user ===\nQ: {problem}\n")
    with pytest.raises(ValueError, match="lacks \\{completion\\}"):
        JudgeTemplate.load(str(path))
    path.write_text("no markers {problem} {completion}")
    with pytest.raises(ValueError, match="needs one '=== user ===' line"):
        JudgeTemplate.load(str(path))
    with pytest.raises(ValueError, match="Cannot read judge prompt template"):
        JudgeTemplate.load(str(tmp_path / "missing.txt"))
    path.write_text("=== user ===\n{problem} -> {completion}\n")  # the system part is optional
    assert JudgeTemplate.load(str(path)).request("2+2", "4").text == "2+2 -> 4"


def config(tmp_path, **kwargs):
    return SelfEvolveConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                            num_generations=4, per_device_train_batch_size=4, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"judge_backend": "vllm"}, "Unknown judge_backend 'vllm'; valid choices: reference, openai."),
        ({"judge_on_failure": "skip"}, "Unknown judge_on_failure 'skip'; valid choices: zero, neutral."),
        ({"judge_backend": "openai"}, "judge_backend 'openai' needs judge_base_url"),
        ({"judge_max_failure_rate": 1.5}, "judge_max_failure_rate must be between 0 and 1, got 1.5."),
        ({"judge_repeats": 0}, "judge_repeats must be >= 1, got 0."),
        ({"judge_prompt_template": "/nonexistent/judge.txt"}, "Cannot read judge prompt template /nonexistent"),
        ({"reward_funcs": ["judge_modulated"], "reward_kwargs": {"judge_modulated": {"on_failure": "neutral"}}},
         "Set the judge failure policy with judge_on_failure"),
    ],
)
def test_config_rejects_bad_judge_settings(tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as error:
        config(tmp_path, **kwargs)
    assert message in str(error.value)


def test_config_hands_the_failure_policy_to_the_reward(tmp_path):
    args = config(tmp_path, reward_funcs=["judge_modulated"], judge_on_failure="neutral",
                  reward_kwargs={"judge_modulated": {"format_penalty": 0.3}})
    assert args.reward_kwargs["judge_modulated"] == {"format_penalty": 0.3, "on_failure": "neutral"}


def test_the_python_api_binds_the_failure_policy_as_the_cli_does(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                                  cpu_config):
    """`SelfEvolveGRPOTrainer(..., reward_funcs=["judge_modulated"])` (the default config lists other rewards) binds
    `judge_on_failure` as the CLI's `build_reward_functions` does, whatever form the reward is given in: the reward
    and the provider (which averages repeats with it) then follow the same policy."""
    from self_evolve_trl.rewards import RewardFunction
    from self_evolve_trl.training.reward_setup import build_reward_functions

    cli_args = cpu_config(reward_funcs=["judge_modulated"], judge_on_failure="neutral", **NEVER_SCORES)
    (cli_reward,) = build_reward_functions(cli_args)  # what `cli.main` hands the trainer
    args = cpu_config(judge_on_failure="neutral", advantage="centered", **NEVER_SCORES)
    given = ["judge_modulated", judge_modulated, RewardFunction("judge_modulated", judge_modulated, {})]
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args, reward_funcs=given)
    assert cli_reward.kwargs == {"on_failure": "neutral"}
    assert [f.kwargs for f in trainer.reward_funcs] == [cli_reward.kwargs] * 3
    assert trainer.reward_input_providers["judge_scores"].args.judge_on_failure == "neutral"
    scores = [1.0, 0.5, None, 0.97]
    expected = cli_reward(GROUP, 4, judge_scores=scores)
    assert expected[2] == 0.75  # neutral: a failed judgement leaves the base reward
    assert all(f(GROUP, 4, judge_scores=scores) == expected for f in trainer.reward_funcs)
    # a reward bound with another policy than the provider's is refused, not silently kept
    with pytest.raises(RewardError, match="Set the judge failure policy with judge_on_failure, not the "
                                          "'judge_modulated' reward's on_failure \\('zero' there, 'neutral' in"):
        build_reward_functions(args, [get_reward_function("judge_modulated", on_failure="zero")])


def test_cli_names_a_bad_judge_backend(tmp_path, capsys):
    from self_evolve_trl.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "tiny:qwen2.5-vl", "use_cpu": True,
                                      "reward_funcs": ["judge_modulated"], "judge_backend": "gpt"}))
    assert main([str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Unknown judge_backend 'gpt'; valid choices: reference, openai."]


@pytest.mark.parametrize("name", ["geoqa-judge.yaml", "tiny-cpu-judge.yaml"])
def test_judge_recipes_parse(name):
    from self_evolve_trl.cli import parse_recipe
    from self_evolve_trl.training.reward_setup import build_reward_functions

    recipe = Path(__file__).resolve().parents[2] / "recipes" / name
    _, args, _ = parse_recipe([str(recipe), "--use_cpu", "true", "--bf16", "false"])
    (reward,) = build_reward_functions(args)
    assert reward.name == "judge_modulated" and reward.kwargs["on_failure"] == "zero"
    assert reward.kwargs["base_kwargs"] == {"hard_threshold": 0.85}
    if name == "geoqa-judge.yaml":
        assert (args.judge_backend, args.judge_base_url, args.judge_model) == ("openai", "http://127.0.0.1:8001/v1",
                                                                               "judge")
        assert (args.judge_temperature, args.judge_top_p, args.judge_max_tokens) == (1.0, 0.9, 1024)
        assert (args.num_generations, args.temperature, args.top_p, args.learning_rate, args.beta, args.epsilon,
                args.max_completion_length, args.num_train_epochs, args.advantage) == (
            8, 1.0, 1.0, 1e-6, 0.01, 0.2, 2048, 15, "lse")
        assert args.use_vllm and args.vllm_mode == "server"
        assert args.judge_max_parse_failure_rate == 0.5
    else:
        assert args.judge_backend == "reference" and args.beta == 0.0
        assert args.judge_max_parse_failure_rate is None  # random weights: never stop on unparsed answers
