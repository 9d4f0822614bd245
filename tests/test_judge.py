"""Actor–Judge: the gate, score parsing, the judge_modulated reward, the judge backends and the failure policy.

The `openai` backend is tested against real HTTP servers on loopback: `transformers serve` running the tiny
Qwen2.5-VL (a real OpenAI-compatible server; the tiny model's random text never holds a score), and `JudgeStub`, a
small `http.server` in this file that answers like a judge would (well-formed scores, garbage, slowly, errors, or
not at all), so that the success path and every failure path can be checked exactly.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from self_evolve_trl.answers import completion_text
from self_evolve_trl.config import ConfigError, SelfEvolveConfig
from self_evolve_trl.judge import JudgeUnavailableError
from self_evolve_trl.judge.prompt import JudgeTemplate, default_template_path, prompt_images, prompt_text
from self_evolve_trl.rewards import RewardError, get_reward_function
from self_evolve_trl.rewards.consistency import soft_frequency
from self_evolve_trl.rewards.judge import judge_gate, judge_modulated, parse_judge_score
from self_evolve_trl.seeds import judge_seed
from self_evolve_trl.trainer import SelfEvolveGRPOTrainer


def gate_formula(s, t_high=0.95, tau_high=0.02, lam_pos=0.2, t_low=0.40, tau_low=0.05, lam_neg=0.2):
    """SPEC §2's gate written out with `math`, independent of `judge_gate`."""
    sigma = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    return min(1.2, max(0.8, 1 + lam_pos * sigma((s - t_high) / tau_high) - lam_neg * sigma((t_low - s) / tau_low)))


# ------------------------------------------------------------------------------------------------------------------
# The gate


@pytest.mark.parametrize("score, gate", [(0.0, 0.800), (0.4, 0.900), (0.8, 1.000), (0.95, 1.100), (1.0, 1.185)])
def test_gate_equals_spec_check_values(score, gate):
    assert judge_gate(torch.tensor([score])).item() == pytest.approx(gate, abs=5e-4)


def test_gate_equals_released_table():
    # released-code notes §1.4: the gate at the released defaults
    table = {0.2: 0.804, 0.3: 0.824, 0.35: 0.854, 0.45: 0.946, 0.5: 0.976, 0.6: 0.996, 0.9: 1.015, 0.93: 1.054,
             0.97: 1.146}
    gates = judge_gate(torch.tensor(list(table))).tolist()
    assert gates == pytest.approx(list(table.values()), abs=5e-4)


def test_gate_parameters_change_it_and_the_clip_binds():
    s = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert judge_gate(s, lam_pos=0.5).tolist() == pytest.approx([gate_formula(0.0), gate_formula(0.5), 1.2])
    assert judge_gate(s, g_min=0.9)[0].item() == pytest.approx(0.9)
    assert judge_gate(s, t_low=0.6)[1].item() == pytest.approx(gate_formula(0.5, t_low=0.6))
    assert judge_gate(s, t_high=0.5, tau_high=0.1)[1].item() == pytest.approx(gate_formula(0.5, 0.5, 0.1))


def test_gate_keeps_shape_and_dtype():
    s = torch.rand(3, 4, dtype=torch.float64)
    g = judge_gate(s)
    assert g.shape == (3, 4) and g.dtype == torch.float64
    assert judge_gate([0, 1]).dtype == torch.float32


# ------------------------------------------------------------------------------------------------------------------
# Parsing the judge's output

FULL = (
    "[BEGIN THOUGHT]\nThe candidate reads the angle right.\n[END THOUGHT]\n[BEGIN SCORES]\n"
    '{"answer_correctness": 1.0, "reasoning_quality": 0.5, "visual_grounding": 0.5, "overall_score": 0.1}\n'
    "[END SCORES]\n\\boxed{0.9}"
)


@pytest.mark.parametrize(
    "text, score",
    [
        ("Looks right. \\boxed{0.85}", 0.85),
        ("\\boxed{ 0.7 }", 0.7),
        ("\\boxed{$0.4$}", 0.4),
        ("\\boxed{1}", 1.0),
        ("\\boxed{1.3}", 1.0),  # clamped
        ("\\boxed{-0.2}", 0.0),  # clamped
        ("first \\boxed{0.2} then \\boxed{0.6}", 0.6),  # the last box
        (FULL, 0.9),  # the box wins over the JSON
        # JSON only
        ('{"answer_correctness": 1, "reasoning_quality": 0.5, "visual_grounding": 0.5, "overall_score": 0.75}', 0.75),
        ('Scores: {"scores": {"a": 1}, "overall_score": 0.35} done', 0.35),
        # truncated before the final box: the JSON of the score block
        (FULL.replace("\\boxed{0.9}", "\\boxed{0."), 0.1),
        (FULL[: FULL.index("[END SCORES]")], 0.1),  # cut inside the score block, after its JSON
        ('[SCORES] {"overall_score": 0.45} [END SCORES]', 0.45),
        # the score block's JSON before a JSON elsewhere
        ('I would say {"overall_score": 0.2}. [BEGIN SCORES] {"overall_score": 0.8} [END SCORES]', 0.8),
        ('\\boxed{good} [BEGIN SCORES] {"overall_score": 0.6} [END SCORES]', 0.6),  # box without a number
    ],
)
def test_parse_judge_score(text, score):
    assert parse_judge_score(text) == pytest.approx(score)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "\x01\x02 boxel iTj++Qa<|vision_start|>",  # what the tiny random model writes
        "The candidate is correct.",
        '[BEGIN THOUGHT] fine [END THOUGHT] [BEGIN SCORES] {"answer_correctness": 1.0, "overall_sc',  # truncated
        "[BEGIN SCORES] {not json} [END SCORES] \\boxed{0.9",  # unclosed box, broken JSON
        "\\boxed{nan}",
        '{"overall_score": "high"}',
        '{"overall_score": true}',
        '{"answer_correctness": 1.0}',
    ],
)
def test_parse_failures_are_none(text):
    assert parse_judge_score(text) is None


# ------------------------------------------------------------------------------------------------------------------
# The reward on hand-made groups

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


# ------------------------------------------------------------------------------------------------------------------
# The prompt template


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


# ------------------------------------------------------------------------------------------------------------------
# Config


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
    from self_evolve_trl.reward_setup import build_reward_functions

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
    assert len(err) == 1 and err[0].startswith("error: Recipe ")
    assert err[0].endswith("judge_backend: 'gpt' is not a valid choice. Fix: use one of: reference, openai.")


@pytest.mark.parametrize("name", ["geoqa-judge.yaml", "tiny-cpu-judge.yaml"])
def test_judge_recipes_parse(name):
    from self_evolve_trl.cli import parse_recipe
    from self_evolve_trl.reward_setup import build_reward_functions

    recipe = Path(__file__).resolve().parent.parent / "recipes" / name
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


# ------------------------------------------------------------------------------------------------------------------
# Trainer helpers

JUDGE_KWARGS = {"judge_modulated": {"base_kwargs": {"hard_threshold": None}, "format_pattern": None}}
# The tiny model's random weights never write a score: runs that judge with it turn off the parse-failure stop.
NEVER_SCORES = {"judge_max_parse_failure_rate": None}


def judge_config(cpu_config, parse_limit=NEVER_SCORES, **overrides):
    """A CPU config with the judge_modulated reward (`parse_limit={}`: the default judge_max_parse_failure_rate)."""
    settings = dict(reward_funcs=["judge_modulated"], reward_kwargs=json.loads(json.dumps(JUDGE_KWARGS)),
                    judge_max_tokens=8, advantage="centered", **parse_limit)
    return cpu_config(**{**settings, **overrides})


def make_trainer(model_dir, processor, dataset, args, **kwargs):
    return SelfEvolveGRPOTrainer(model=model_dir, args=args, train_dataset=dataset, processing_class=processor,
                                 **kwargs)


def score_one_batch(trainer):
    """One generation round on prompt 0 (a group of 4) in training mode; returns the completions and the
    judge_modulated rewards."""
    trainer.model.train()
    trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)
    completions = [completion_text(c) for c in list(trainer._logs["completion"])[-4:]]
    return completions, trainer._last_rewards_per_func[:, 0].tolist()


def metric(trainer, name):
    return trainer._metrics["train"][name][-1]


# ------------------------------------------------------------------------------------------------------------------
# The reference backend (in process)


def test_reference_judge_frozen_copy_trains_and_stays_frozen(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                             cpu_config):
    from transformers import AutoModelForImageTextToText

    def varied(completion_ids, **kwargs):  # a reward that differs between completions, so the policy must move
        return [sum(ids) % 7 / 7 for ids in completion_ids]

    args = judge_config(cpu_config, beta=0.0, judge_repeats=2)
    judge_reward = get_reward_function("judge_modulated", **args.reward_kwargs["judge_modulated"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args,
                           reward_funcs=[judge_reward, varied])
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "frozen_copy" and trainer.ref_model is None
    initial = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).state_dict()
    trainer.train()

    judge_weights = backend.frozen_model.state_dict()
    assert all(torch.equal(judge_weights[k], initial[k]) for k in initial)
    policy = trainer.model.state_dict()
    assert any(not torch.equal(policy[k], initial[k]) for k in initial)  # the policy trained, the judge did not
    steps = [e for e in trainer.state.log_history if "judge/samples" in e]
    assert len(steps) == 2
    for entry in steps:
        assert entry["judge/samples"] == 8  # 4 completions x 2 repeats
        assert entry["judge/request_failures"] == 0
        assert entry["judge/parse_failure_rate"] == 1.0  # random weights never write a score
        assert entry["judge/gate_mean"] == pytest.approx(gate_formula(0.0), abs=1e-6)  # on_failure zero
        assert entry["judge/suppressed_share"] == 1.0 and entry["judge/latency_s"] > 0
    # the rewards of a fresh batch: b · g(0)
    completions, rewards = score_one_batch(trainer)
    expected = [b * gate_formula(0.0) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx(expected, abs=1e-6)


def test_reference_judge_is_trl_ref_model_when_beta_positive(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                             cpu_config):
    args = judge_config(cpu_config, beta=0.1, judge_on_failure="neutral")
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "ref_model" and backend.frozen_model is trainer.ref_model
    completions, rewards = score_one_batch(trainer)
    assert rewards == pytest.approx(soft_frequency(completions, 4, extractor="last_number"))  # neutral: gate 1
    assert metric(trainer, "judge/samples") == 4 and metric(trainer, "judge/gate_mean") == 1.0


def test_reference_judge_with_lora_is_the_base_model(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText

    args = judge_config(cpu_config, max_steps=2, learning_rate=0.5, beta=0.0)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args,
                           peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "peft_base"
    trainer.train()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        expected = base(input_ids=ids).logits
        trainer.model.eval()
        adapted = trainer.model(input_ids=ids).logits
        with backend.model() as judge_model:
            judged = judge_model(input_ids=ids).logits
    assert torch.allclose(judged, expected, atol=1e-5)
    assert not torch.allclose(adapted, expected, atol=1e-3)  # the adapter did train
    assert [e["judge/samples"] for e in trainer.state.log_history if "judge/samples" in e] == [4, 4]


def varied_reward(completion_ids, **kwargs):
    """A reward that differs between completions, so that the policy must move."""
    return [sum(ids) % 7 / 7 for ids in completion_ids]


def test_reference_judge_with_sync_ref_model_is_a_frozen_copy(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                              cpu_config, capsys):
    """With `sync_ref_model`, TRL blends the policy into its reference model; the judge must stay the initial
    policy (SPEC: never updated), so it is a frozen copy of its own."""
    from transformers import AutoModelForImageTextToText

    args = judge_config(cpu_config, beta=0.1, sync_ref_model=True, ref_model_sync_steps=1, ref_model_mixup_alpha=1.0)
    judge_reward = get_reward_function("judge_modulated", **args.reward_kwargs["judge_modulated"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args,
                           reward_funcs=[judge_reward, varied_reward])
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert backend.source == "frozen_copy" and trainer.ref_model is not None
    assert backend.frozen_model is not trainer.ref_model
    assert ("Judge: 'reference' (a frozen copy of the initial model, since sync_ref_model updates TRL's reference "
            "model)") in capsys.readouterr().out
    initial = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).state_dict()
    trainer.train()

    synced = trainer.ref_model.state_dict()
    assert any(not torch.equal(synced[k], initial[k]) for k in initial)  # TRL's reference model moved
    judge_weights = backend.frozen_model.state_dict()
    assert all(torch.equal(judge_weights[k], initial[k]) for k in initial)  # the judge did not
    assert [e["judge/samples"] for e in trainer.state.log_history if "judge/samples" in e] == [4, 4]


def test_reference_judge_batches_its_generate_calls_and_its_scores_reach_the_rewards(
        tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config, monkeypatch):
    """The frozen judge's `generate` answers `\\boxed{0.97}` (the real processor builds its inputs, the real
    tokenizer decodes its output): 4 completions x 3 repeats in ceil(12 / 5) = 3 batched calls, each prompt holding
    the image, the rubric, the question and the completion, and the parsed scores gate the rewards."""
    args = judge_config(cpu_config, beta=0.0, judge_repeats=3, judge_batch_size=5, parse_limit={})
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    provider = trainer.reward_input_providers["judge_scores"]
    backend = provider.backend
    tokenizer = tiny_processor.tokenizer
    answer = tokenizer("\\boxed{0.97}", add_special_tokens=False, return_tensors="pt").input_ids
    calls = []

    def generate(input_ids, generation_config, **kwargs):
        calls.append({"input_ids": input_ids, "generation_config": generation_config, **kwargs})
        return torch.cat([input_ids, answer.expand(input_ids.size(0), -1)], dim=1)

    monkeypatch.setattr(backend.frozen_model, "generate", generate)
    completions, rewards = score_one_batch(trainer)

    assert [len(c["input_ids"]) for c in calls] == [5, 5, 2]
    assert all(c["generation_config"].max_new_tokens == 8 for c in calls)
    row = trainer.train_dataset[0]
    question = row["prompt"][0]["content"][-1]["text"]
    prompts = [tokenizer.decode(ids) for c in calls for ids in c["input_ids"]]
    for i, prompt in enumerate(prompts):
        assert prompt.count("<|vision_start|>") == 1 and "<|image_pad|>" in prompt  # the image
        assert provider.template.system in prompt  # the rubric
        assert f"[PROBLEM]\n{question}\n[END PROBLEM]" in prompt
        assert f"[CANDIDATE_SOLUTION]\n{completions[i // 3]}\n[END CANDIDATE_SOLUTION]" in prompt  # 3 repeats each
    for call in calls:  # one image per prompt
        assert call["image_grid_thw"].shape[0] == len(call["input_ids"]) and call["pixel_values"].numel() > 0

    expected = [b * gate_formula(0.97) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx(expected, abs=1e-6)
    assert metric(trainer, "judge/samples") == 12 and metric(trainer, "judge/parse_failure_rate") == 0.0
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)
    assert metric(trainer, "judge/out_of_range_share") == 0.0


# ------------------------------------------------------------------------------------------------------------------
# The openai backend against `transformers serve` running the tiny model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def transformers_server(tiny_model_dir, tmp_path_factory):
    """`transformers serve` of the tiny Qwen2.5-VL on loopback (a real OpenAI-compatible chat-completions server)."""
    yield from transformers_serve(tiny_model_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def scoring_server(scoring_model_dir, tmp_path_factory):
    """`transformers serve` of the scoring model (it writes `\\boxed{0.d}`, d sampled)."""
    yield from transformers_serve(scoring_model_dir, tmp_path_factory)


def transformers_serve(model_dir, tmp_path_factory):
    """Start `transformers serve` of a model on loopback, yield its URL once it answers, then stop it."""
    pytest.importorskip("fastapi", reason="`transformers serve` needs transformers[serving] (the test extra)")
    import openai

    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir, "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)
    deadline = time.time() + 180
    while True:
        try:
            client.chat.completions.create(model=model_dir, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=2)
            break
        except openai.APIConnectionError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"transformers serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_openai_backend_trains_against_transformers_serve(transformers_server, tiny_model_dir, tiny_processor,
                                                          synthetic_dataset, cpu_config):
    args = judge_config(cpu_config, judge_backend="openai", judge_base_url=transformers_server,
                        judge_model=tiny_model_dir, judge_on_failure="neutral", judge_timeout=60, judge_concurrency=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args)
    trainer.train()
    steps = [e for e in trainer.state.log_history if "judge/samples" in e]
    assert len(steps) == 2
    for entry in steps:
        assert entry["judge/samples"] == 4 and entry["judge/request_failures"] == 0
        assert entry["judge/parse_failure_rate"] == 1.0  # the server answered; the tiny model's text has no score
        assert entry["judge/request_latency_s"] > 0
        assert entry["judge/gate_mean"] == 1.0 and entry["judge/missing_share"] == 1.0  # neutral


# ------------------------------------------------------------------------------------------------------------------
# The openai backend against a judge stub: success, garbage, slow, errors, down


def judge_answer(score) -> str:
    scores = {"answer_correctness": score, "reasoning_quality": score, "visual_grounding": score,
              "overall_score": score}
    return (f"[BEGIN THOUGHT]\nChecked.\n[END THOUGHT]\n[BEGIN SCORES]\n{json.dumps(scores)}\n[END SCORES]\n"
            f"\\boxed{{{score}}}")


def seeded_score(seed: int) -> float:
    """The `seeded` judge stub's score of a request with this `seed`: 0.1 to 0.9."""
    return (seed % 9 + 1) / 10


class JudgeStub:
    """An OpenAI-compatible judge on loopback whose behaviour the test sets: `mode` is `score` (a well-formed
    judgement with `score`, or with the n-th of a list of scores for the n-th request), `garbage` (a chat completion
    without a score), `not_json` (an HTML page), `bad_json` (broken JSON), `error` (HTTP 503), `unauthorized`
    (HTTP 401 whose body echoes the request's `Authorization` header, as some gateways do), `flaky` (HTTP 503 on a
    request's first attempt, a score on its retry), `drop` (closes the connection), `slow` (waits `delay` seconds,
    then scores) or `seeded` (the score `seeded_score(seed)` of the request's `seed`, as a sampling judge that
    honours the seed would). After `fail_after` chat requests it switches to `then` (default `drop`: the endpoint
    goes down).
    `peak_in_flight` is the most chat requests it was ever handling at once."""

    def __init__(self):
        self.mode, self.score, self.delay, self.fail_after, self.then = "score", 0.97, 0.0, None, "drop"
        self.requests: list[dict] = []
        self.in_flight = self.peak_in_flight = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self.reply(200, {"object": "list", "data": [{"id": "stub-judge", "object": "model"}]})
                else:
                    self.reply(404, {"error": "not found"})

            def do_POST(self):
                with stub.lock:
                    stub.in_flight += 1
                    stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                try:
                    self.answer()
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def answer(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with stub.lock:
                    stub.requests.append({"path": self.path, "body": body,
                                          "headers": {k.lower(): v for k, v in self.headers.items()}})
                    n = len(stub.requests)
                mode = stub.then if stub.fail_after is not None and n > stub.fail_after else stub.mode
                if mode == "flaky":  # the openai client numbers a request's attempts in this header
                    mode = "error" if self.headers.get("x-stainless-retry-count") == "0" else "score"
                if mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "slow":
                    time.sleep(stub.delay)
                if mode == "error":
                    return self.reply(503, {"error": {"message": "overloaded"}})
                if mode == "unauthorized":
                    return self.reply(401, {"error": {"message": f"invalid key in {self.headers['Authorization']}"}})
                if mode == "not_json":
                    return self.reply(200, b"<html>502 Bad Gateway</html>", "text/html")
                if mode == "bad_json":  # says JSON, is not: a body cut off by a proxy
                    return self.reply(200, b'{"id": "c", "choices": [{"mess')
                score = stub.score[(n - 1) % len(stub.score)] if isinstance(stub.score, list) else stub.score
                if mode == "seeded":
                    score = seeded_score(body["seed"])
                text = "I like this solution a lot." if mode == "garbage" else judge_answer(score)
                self.reply(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that timed out (the `slow` mode) leaves a broken pipe: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def chat_requests(self):
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def judge_stub():
    stub = JudgeStub()
    yield stub
    stub.close()


def stub_config(cpu_config, stub, **overrides):
    settings = dict(judge_backend="openai", judge_base_url=stub.url, judge_timeout=10, judge_max_retries=0)
    return judge_config(cpu_config, **{**settings, **overrides})


def test_openai_backend_success_path(judge_stub, monkeypatch, tmp_path, tiny_model_dir, tiny_processor,
                                     synthetic_dataset, cpu_config):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-secret-123")
    template = tmp_path / "judge.txt"
    template.write_text("=== system ===\nGrade it.\n=== user ===\nQ: {problem}\nA: {completion}\n")
    args = stub_config(cpu_config, judge_stub, judge_api_key_env="MY_JUDGE_KEY", judge_prompt_template=str(template),
                       judge_temperature=0.7, judge_top_p=0.8)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    assert trainer.reward_input_providers["judge_scores"].backend.model == "stub-judge"  # asked the endpoint
    completions, rewards = score_one_batch(trainer)

    expected = [b * gate_formula(0.97) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx([min(1.0, r) for r in expected], abs=1e-6)
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)
    assert metric(trainer, "judge/gate_mean") == pytest.approx(gate_formula(0.97), abs=1e-6)
    assert metric(trainer, "judge/amplified_share") == 1.0 and metric(trainer, "judge/parse_failure_rate") == 0.0
    assert metric(trainer, "judge/request_failures") == 0 and metric(trainer, "judge/out_of_range_share") == 0.0

    requests = judge_stub.chat_requests()
    assert len(requests) == 4
    row = trainer.train_dataset[0]
    question = row["prompt"][0]["content"][-1]["text"]
    for request, completion in zip(sorted(requests, key=lambda r: r["body"]["messages"][1]["content"][1]["text"]),
                                   sorted(completions)):
        body = request["body"]
        assert request["headers"]["authorization"] == "Bearer sk-test-secret-123"
        assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"]) == ("stub-judge", 0.7, 0.8, 8)
        system, user = body["messages"]
        assert system == {"role": "system", "content": "Grade it."}
        image_part, text_part = user["content"]
        assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(image_part["image_url"]["url"].split(",", 1)[1])))
        assert image.size == row["images"][0].size
        assert text_part["text"] == f"Q: {question}\nA: {completion}"


# ------------------------------------------------------------------------------------------------------------------
# Seeds: every judgement is sampled on its own (seed, step, generation batch, completion index, repeat)


def test_reference_judgement_does_not_depend_on_its_batch(scoring_model_dir, synthetic_dataset, cpu_config):
    """With reproducible_generation, the reference judge generates each judgement alone on its seed: a judgement
    comes out the same judged alone (after any use of torch's RNG), as the second of two, or in a batch of six."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(scoring_model_dir, padding_side="left")
    args = judge_config(cpu_config, beta=0.0, reproducible_generation=True, judge_batch_size=6, parse_limit={})
    trainer = make_trainer(scoring_model_dir, processor, synthetic_dataset(4), args)
    provider = trainer.reward_input_providers["judge_scores"]
    rows = [trainer.train_dataset[i] for i in range(3)]
    requests = provider.requests(rows, [row["prompt"] for row in rows], ["\\boxed{1}", "\\boxed{2}", "x"]) * 2
    seeds = [judge_seed(0, 0, i, 0) for i in range(6)]

    together = [output.text for output in provider.backend.judge(requests, seeds)]
    alone = []
    for n, (request, seed) in enumerate(zip(requests, seeds)):
        torch.manual_seed(100 + n)
        alone.append(provider.backend.judge([request], [seed])[0].text)
    assert together == alone
    pair = provider.backend.judge(requests[:2], seeds[:2])
    assert [output.text for output in pair] == together[:2]
    assert all(parse_judge_score(text) is not None for text in together)  # the scoring model writes \\boxed{0.d}
    assert len(set(together)) > 1  # ... with d drawn from each seed


def test_openai_requests_carry_the_seed_of_each_judgement(judge_stub, tiny_model_dir, tiny_processor,
                                                          synthetic_dataset, cpu_config):
    """Each request's `seed` is its judgement's: (seed, step, generation batch, completion, repeat). A judge that
    honours it (the stub scores by the seed) gives each completion the mean score of its own repeats' seeds; a second
    generation batch of the same step gets other seeds."""
    judge_stub.mode = "seeded"
    args = stub_config(cpu_config, judge_stub, judge_repeats=2, seed=7)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    sent_before = set()
    for batch in [(), (1, 1)]:  # `seeds.batch_entropy` of the step's first and second generation batch
        seen = len(judge_stub.chat_requests())
        completions, rewards = score_one_batch(trainer)
        seeds = [[judge_seed(7, 0, i, repeat, batch) for repeat in range(2)] for i in range(4)]
        sent = [request["body"]["seed"] for request in judge_stub.chat_requests()[seen:]]
        assert sorted(sent) == sorted(seed for pair in seeds for seed in pair)
        assert not sent_before & set(sent)
        sent_before |= set(sent)
        scores = [sum(seeded_score(seed) for seed in pair) / 2 for pair in seeds]
        b = soft_frequency(completions, 4, extractor="last_number")
        assert rewards == pytest.approx([min(1.0, x * gate_formula(s)) for x, s in zip(b, scores)], abs=1e-6)
        assert metric(trainer, "judge/score_mean") == pytest.approx(sum(scores) / 4)


def test_transformers_serve_samples_with_the_seed_of_each_request(scoring_server, scoring_model_dir):
    """A real server honours the `seed` each request carries: the same judgements with the same seeds give the same
    answers, in another order too, and other seeds other answers."""
    from self_evolve_trl.judge.backends import OpenAIJudge

    judge = OpenAIJudge(scoring_server, scoring_model_dir, max_tokens=8, timeout=60, max_retries=0, concurrency=1)
    template = JudgeTemplate.load()
    requests = [template.request("What is 2 + 2?", f"\\boxed{{{n}}}") for n in range(6)]
    seeds = [judge_seed(0, 0, i, 0) for i in range(6)]
    try:
        first = [output.text for output in judge.judge(requests, seeds)]
        again = [output.text for output in judge.judge(requests[::-1], seeds[::-1])][::-1]
        other = [output.text for output in judge.judge(requests, [judge_seed(1, 0, i, 0) for i in range(6)])]
    finally:
        judge.close()
    scores = [parse_judge_score(text) for text in first]
    assert all(score is not None for score in scores) and len(set(scores)) > 1
    assert again == first
    assert other != first


@pytest.mark.parametrize("on_failure", ["zero", "neutral"])
def test_garbage_answers_follow_the_failure_policy(on_failure, judge_stub, tiny_model_dir, tiny_processor,
                                                   synthetic_dataset, cpu_config, caplog):
    judge_stub.mode = "garbage"
    args = stub_config(cpu_config, judge_stub, judge_on_failure=on_failure, judge_repeats=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with caplog.at_level("WARNING", logger="self_evolve_trl.judge.provider"):
        completions, rewards = score_one_batch(trainer)
    assert [r.getMessage() for r in caplog.records if "no score that could be parsed" in r.getMessage()] == [
        f"8 of the judge's 8 answers at step 1 had no score that could be parsed (a \\boxed{{}} number or a JSON "
        f"overall_score); they count as judge_on_failure={on_failure}. Check the judge model and prompt template, or "
        "set judge_max_parse_failure_rate to stop such a run (see judge/parse_failure_rate)."
    ]
    gate = gate_formula(0.0) if on_failure == "zero" else 1.0
    expected = [b * gate for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx(expected, abs=1e-6)
    assert metric(trainer, "judge/samples") == 8 and metric(trainer, "judge/parse_failures") == 8
    assert metric(trainer, "judge/parse_failure_rate") == 1.0 and metric(trainer, "judge/request_failures") == 0
    # training went on: the step's judgements were answered, only unparseable
    args = stub_config(cpu_config, judge_stub, judge_on_failure=on_failure, judge_max_parse_failure_rate=0.5)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with pytest.raises(JudgeUnavailableError, match="answered 4 of 4 judgements without a score that could be parsed"):
        score_one_batch(trainer)


def test_mixed_answers_within_the_allowed_failure_rate(judge_stub, tiny_model_dir, tiny_processor,
                                                       synthetic_dataset, cpu_config):
    judge_stub.fail_after = 3  # the 4th judgement's connection is dropped: 1 of 4 failed = 0.25, not more
    args = stub_config(cpu_config, judge_stub, judge_max_failure_rate=0.25, judge_concurrency=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    completions, rewards = score_one_batch(trainer)  # no stop: 0.25 is not more than 0.25
    assert metric(trainer, "judge/request_failures") == 1 and metric(trainer, "judge/missing_share") == 0.25
    b = soft_frequency(completions, 4, extractor="last_number")
    # one request at a time, in row order: the last completion's judgement failed and counts as s = 0
    gates = [gate_formula(0.97)] * 3 + [gate_formula(0.0)]
    assert rewards == pytest.approx([min(1.0, x * g) for x, g in zip(b, gates)], abs=1e-6)


@pytest.mark.parametrize(
    "mode, error",
    [
        ("drop", "APIConnectionError: Connection error."),
        ("error", "InternalServerError: Error code: 503"),
        ("not_json", "MalformedResponse: not a chat completion: '<html>502 Bad Gateway</html>'"),
        ("bad_json", "MalformedResponse: JSONDecodeError: Unterminated string"),
        ("slow", "APITimeoutError: Request timed out."),
    ],
)
def test_failing_endpoint_stops_training(mode, error, judge_stub, tiny_model_dir, tiny_processor,
                                         synthetic_dataset, cpu_config):
    judge_stub.mode, judge_stub.delay = mode, 3.0
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_timeout=0.5, judge_max_retries=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with pytest.raises(JudgeUnavailableError) as raised:
        score_one_batch(trainer)
    message = str(raised.value)
    assert message.startswith(f"The judge at {judge_stub.url} (model stub-judge) failed 4 of 4 judgements after "
                              f"retries (judge_max_failure_rate 0.25); last error: {error}")
    assert message.endswith("while generating step 1; no training step had completed, so there was nothing to save.")
    assert "\n" not in message
    retried = {"drop": 2, "error": 2, "slow": 2, "not_json": 1, "bad_json": 1}[mode]  # a 200 that is not a completion: no retry
    assert len(judge_stub.chat_requests()) == 4 * retried


def test_slow_endpoint_within_the_timeout_works(judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset,
                                                cpu_config):
    judge_stub.mode, judge_stub.delay = "slow", 0.3
    args = stub_config(cpu_config, judge_stub, judge_timeout=5)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    score_one_batch(trainer)
    assert metric(trainer, "judge/request_failures") == 0
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)
    assert metric(trainer, "judge/request_latency_s") >= 0.3


def test_endpoint_down_at_start(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(JudgeUnavailableError, match=f"Cannot ask the judge at {url} which model it serves "
                                                    r"\(APIConnectionError: Connection error.\); start the judge"):
        make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4),
                     judge_config(cpu_config, judge_backend="openai", judge_base_url=url, judge_max_retries=0))


def test_out_of_range_scores_are_clamped_and_counted(judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset,
                                                     cpu_config):
    judge_stub.score = [1.5, 0.5, -0.2, 0.97]  # one request at a time, in row order
    args = stub_config(cpu_config, judge_stub, judge_concurrency=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    completions, rewards = score_one_batch(trainer)
    gates = [gate_formula(s) for s in (1.0, 0.5, 0.0, 0.97)]  # SPEC: clamped to [0, 1]
    b = soft_frequency(completions, 4, extractor="last_number")
    assert rewards == pytest.approx([min(1.0, x * g) for x, g in zip(b, gates)], abs=1e-6)
    assert metric(trainer, "judge/out_of_range_share") == 0.5
    assert metric(trainer, "judge/score_mean") == pytest.approx((1.0 + 0.5 + 0.0 + 0.97) / 4)


def test_requests_in_flight_stay_within_the_pool_which_closes_when_training_ends(
        judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    judge_stub.mode, judge_stub.delay = "slow", 0.2  # 8 requests per step, 2 at a time
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_concurrency=2, judge_repeats=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args)
    backend = trainer.reward_input_providers["judge_scores"].backend
    pool = backend.pool
    trainer.train()
    assert len(judge_stub.chat_requests()) == 16
    assert judge_stub.peak_in_flight == 2
    assert len(pool._threads) == 2 and not any(t.is_alive() for t in pool._threads)  # closed at the end
    assert [e["judge/score_mean"] for e in trainer.state.log_history if "judge/score_mean" in e] == [
        pytest.approx(0.97)] * 2
    score_one_batch(trainer)  # judging again afterwards (e.g. `trainer.evaluate()`) opens a new pool
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97) and len(judge_stub.chat_requests()) == 24


def test_flaky_endpoint_recovers_with_retries(judge_stub, tiny_model_dir, tiny_processor, synthetic_dataset,
                                              cpu_config):
    judge_stub.mode = "flaky"  # every request: 503 first, a score on its retry
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_max_retries=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    completions, rewards = score_one_batch(trainer)
    assert sorted(r["headers"]["x-stainless-retry-count"] for r in judge_stub.chat_requests()) == ["0"] * 4 + ["1"] * 4
    assert metric(trainer, "judge/request_failures") == 0
    expected = [b * gate_formula(0.97) for b in soft_frequency(completions, 4, extractor="last_number")]
    assert rewards == pytest.approx([min(1.0, r) for r in expected], abs=1e-6)
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)


def test_api_key_echoed_by_the_endpoint_never_reaches_errors_or_logs(judge_stub, monkeypatch, tiny_model_dir,
                                                                     tiny_processor, synthetic_dataset, cpu_config,
                                                                     caplog):
    secret = "sk-echoed-secret-77"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    judge_stub.mode = "unauthorized"
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", judge_api_key_env="MY_JUDGE_KEY",
                       judge_max_retries=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    with caplog.at_level("DEBUG"), pytest.raises(JudgeUnavailableError) as raised:
        score_one_batch(trainer)
    message = str(raised.value)
    assert {r["headers"]["authorization"] for r in judge_stub.chat_requests()} == {f"Bearer {secret}"}
    assert len(judge_stub.chat_requests()) == 4  # a 401 is not retried
    assert ("failed 4 of 4 judgements after retries (judge_max_failure_rate 0.25); last error: AuthenticationError: "
            "Error code: 401 - invalid key in Bearer ***, while generating step 1") in message
    assert secret not in message
    assert caplog.records and secret not in caplog.text


def test_unreachable_host_fails_within_the_connect_limit(monkeypatch):
    """A host that never completes the TCP handshake (here: a listening socket whose accept queue is full, so the
    kernel drops further SYNs) fails after the connect limit, not after the whole judge_timeout."""
    import openai

    from self_evolve_trl.judge import backends
    from self_evolve_trl.judge.prompt import JudgeRequest

    assert backends.OpenAIJudge("http://127.0.0.1:9/v1", model="m", timeout=120).client.timeout == openai.Timeout(
        120, connect=10.0)
    assert backends.OpenAIJudge("http://127.0.0.1:9/v1", model="m", timeout=3).client.timeout == openai.Timeout(3)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        fillers = []
        for _ in range(8):  # fill the accept queue until a connection attempt hangs
            filler = socket.socket()
            filler.settimeout(0.3)
            fillers.append(filler)
            try:
                filler.connect(server.getsockname())
            except TimeoutError:
                break
        else:
            pytest.fail("the accept queue never filled")
        monkeypatch.setattr(backends, "CONNECT_TIMEOUT", 1.0)
        host, port = server.getsockname()
        judge = backends.OpenAIJudge(f"http://{host}:{port}/v1", model="m", timeout=60, max_retries=0)
        start = time.perf_counter()
        (output,) = judge.judge([JudgeRequest(system="", text="hi")])
        elapsed = time.perf_counter() - start
        judge.close()
        for filler in fillers:
            filler.close()
    assert output.text is None and output.error == "APITimeoutError: Request timed out."
    assert 0.9 < elapsed < 10  # about the 1 s connect limit, far below the 60 s judge_timeout


def assert_saved(checkpoint: Path, step: int, files=()):
    """The judge's stop saved a complete checkpoint of `step`: weights, optimizer, trainer state (and `files`)."""
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json", *files):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == step


def test_garbage_answers_stop_the_run_under_the_default_limit(judge_stub, tiny_model_dir, tiny_processor,
                                                              synthetic_dataset, cpu_config):
    """An endpoint that answers 200 with text holding no score (the wrong model or template) stops the run under
    the default judge_max_parse_failure_rate, after saving the last completed step."""
    judge_stub.fail_after, judge_stub.then = 4, "garbage"  # step 1 is scored, then nothing parses
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", parse_limit={}, max_steps=3)
    assert args.judge_max_parse_failure_rate == 0.9
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), args)
    with pytest.raises(JudgeUnavailableError) as raised:
        trainer.train()
    checkpoint = Path(args.output_dir) / "checkpoint-1"
    assert str(raised.value) == (
        f"The judge at {judge_stub.url} (model stub-judge) answered 4 of 4 judgements without a score that could be "
        "parsed (judge_max_parse_failure_rate 0.9; check the judge model and prompt template), while generating "
        f"step 2; saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works."
    )
    assert_saved(checkpoint, step=1)


def test_judge_outage_during_evaluation_saves_a_checkpoint(judge_stub, tiny_model_dir, tiny_processor,
                                                           synthetic_dataset, cpu_config):
    """TRL's evaluation generates and scores too: the judge going down there saves the last completed step."""
    judge_stub.fail_after = 4  # step 1's four judgements, then the endpoint is gone (the evaluation after step 1)
    args = stub_config(cpu_config, judge_stub, judge_model="stub-judge", eval_strategy="steps", eval_steps=1,
                       per_device_eval_batch_size=4)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args,
                           eval_dataset=synthetic_dataset(1))
    with pytest.raises(JudgeUnavailableError) as raised:
        trainer.train()
    checkpoint = Path(args.output_dir) / "checkpoint-1"
    assert str(raised.value) == (
        f"The judge at {judge_stub.url} (model stub-judge) failed 4 of 4 judgements after retries "
        "(judge_max_failure_rate 0.25); last error: APIConnectionError: Connection error., while evaluating at "
        f"step 1; saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works."
    )
    assert trainer._metrics["eval"]["judge/request_failures"] == [4]
    assert_saved(checkpoint, step=1)


def tiny_recipe(tmp_path, model_dir, output_dir, **overrides) -> Path:
    """A recipe file for a short CPU run of judge_modulated on the tiny model."""
    recipe = tmp_path / "judge.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": model_dir, "dataset_name": "synthetic", "synthetic_size": 8,
        "instruction": "Answer in \\boxed{}.", "answer_extractor": "last_number",
        "reward_funcs": ["judge_modulated"], "reward_kwargs": JUDGE_KWARGS, "advantage": "centered",
        "judge_max_retries": 0, "judge_timeout": 10, "judge_max_tokens": 8, **NEVER_SCORES, "num_generations": 4,
        "per_device_train_batch_size": 4, "max_completion_length": 8, "learning_rate": 0.05, "max_steps": 3,
        "logging_steps": 1, "save_strategy": "no", "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "report_to": "none", "dataloader_num_workers": 0, "output_dir": str(output_dir), **overrides,
    }))
    return recipe


@pytest.mark.slow
def test_cli_endpoint_down_mid_run_saves_a_checkpoint_and_resumes(judge_stub, tmp_path, tiny_model_dir, run, python):
    """The judge goes down after step 1: the CLI saves checkpoint-1, prints one error line and exits 3; the API key
    appears nowhere; once the judge is back, training resumes from the checkpoint and finishes."""
    judge_stub.fail_after = 4  # step 1's four judgements, then the endpoint is gone
    output_dir = tmp_path / "out"
    recipe = tiny_recipe(tmp_path, tiny_model_dir, output_dir, judge_backend="openai", judge_base_url=judge_stub.url)
    secret = "sk-never-print-me-42"
    result = run([python, "-m", "self_evolve_trl.cli", str(recipe)], env={"JUDGE_API_KEY": secret})
    assert result.returncode == 3, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    checkpoint = output_dir / "checkpoint-1"
    assert errors == [
        f"error: The judge at {judge_stub.url} (model stub-judge) failed 4 of 4 judgements after retries "
        "(judge_max_failure_rate 0.25); last error: APIConnectionError: Connection error., while generating step 2; "
        f"saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works."
    ]
    assert secret not in result.stdout + result.stderr
    assert {r["headers"]["authorization"] for r in judge_stub.chat_requests()} == {f"Bearer {secret}"}
    assert_saved(checkpoint, step=1, files=("scheduler.pt", "rng_state.pth"))

    judge_stub.fail_after = None  # the judge is back
    result = run([python, "-m", "self_evolve_trl.cli", str(recipe), "--resume_from_checkpoint", str(checkpoint),
                  "--save_strategy", "steps", "--save_steps", "1"], env={"JUDGE_API_KEY": secret})
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    history = json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    judged = [(e["step"], e["judge/score_mean"]) for e in history if "judge/score_mean" in e]
    assert judged == [(1, pytest.approx(0.97)), (2, pytest.approx(0.97)), (3, pytest.approx(0.97))]


@pytest.mark.slow
def test_two_processes_stop_together_and_save_one_checkpoint(judge_stub, tmp_path, tiny_model_dir, run, python):
    """2 processes, one group of 4 split over them: the failure decision uses the totals of both, both stop with the
    same message, and the checkpoint is saved by both together (one RNG state per process)."""
    judge_stub.fail_after = 4
    output_dir = tmp_path / "out"
    recipe = tiny_recipe(tmp_path, tiny_model_dir, output_dir, judge_backend="openai", judge_base_url=judge_stub.url,
                         per_device_train_batch_size=2)
    result = run([python, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                  "-m", "self_evolve_trl.cli", str(recipe)])
    assert result.returncode != 0
    # each process prints the same line (torchrun may stop the second before it does; their output interleaves)
    errors = {"error: The judge" + line.split("error: The judge", 1)[1] for line in result.stderr.splitlines()
              if "error: The judge" in line}
    assert len(errors) == 1, result.stderr[-3000:]
    assert "failed 4 of 4 judgements after retries" in errors.pop()
    checkpoint = output_dir / "checkpoint-1"
    assert_saved(checkpoint, step=1, files=("rng_state_0.pth", "rng_state_1.pth"))


def flags_id(flags):
    return "peft_base" if "--use_peft" in flags else {"0.0": "frozen_copy", "0.1": "ref_model"}[flags[1]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [["--beta", "0.0"], ["--beta", "0.1"], ["--use_peft", "true", "--lora_target_modules", "q_proj", "v_proj"]],
    ids=["frozen_copy", "ref_model", "peft_base"],
)
def test_reference_judge_under_deepspeed_zero3(flags, tmp_path, tiny_model_dir, run, python):
    """Each source of the in-process judge under DeepSpeed ZeRO-3 (one CPU process; parameters partitioned)."""
    output_dir = tmp_path / "out"
    recipe = tiny_recipe(tmp_path, tiny_model_dir, output_dir, max_steps=2)
    config = Path(__file__).resolve().parent.parent / "accelerate_configs" / "zero3_cpu.yaml"
    result = run([python, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m",
                  "self_evolve_trl.cli", str(recipe), *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    source = {"frozen_copy": "a frozen copy of the initial model", "ref_model": "TRL's reference model",
              "peft_base": "the base model, adapter disabled"}[flags_id(flags)]
    assert f"Judge: 'reference' ({source})" in result.stdout
    summary = json.loads((output_dir / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["metrics"]["judge/parse_failure_rate"]["last"] == 1.0  # the tiny judge answered (no score)
    assert summary["metrics"]["judge/request_failure_rate"]["last"] == 0.0
