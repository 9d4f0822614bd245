"""A text-only causal LM (the tiny Qwen2 of `data/tiny_text.py`, a tokenizer as its processing class) trains with
every reward and advantage mode: plain-text prompts, the `reference` judge, CSRS re-inference in both modes; the
image-only parts (VSP, image rows) are refused with one clear line."""

import json

import pytest
import torch

from self_evolve_trl.errors import ConfigError, UsageError
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

NO_THINK = ".*\\\\boxed\\{.*\\}.*"
JUDGE = dict(judge_backend="reference", judge_max_tokens=8, judge_repeats=1, judge_on_failure="zero",
             judge_max_parse_failure_rate=None)
METHODS = {
    "majority_vote": dict(reward_funcs=["majority_vote"]),
    "soft_frequency": dict(reward_funcs=["soft_frequency"]),
    "format": dict(reward_funcs=["format"], reward_kwargs={"format": {"pattern": NO_THINK}}),
    "judge_modulated": dict(reward_funcs=["judge_modulated"], **JUDGE,
                            reward_kwargs={"judge_modulated": {"format_pattern": NO_THINK}}),
    "retrace_new_turn": dict(reward_funcs=["retrace_frequency"], retrace_mode="new_turn"),
    "retrace_continuation": dict(reward_funcs=["retrace_frequency"], retrace_mode="continuation"),
    "self_certainty": dict(reward_funcs=["self_certainty"]),
    "consistency_filter": dict(reward_funcs=["majority_vote"], min_consistency=0.3),
    "advantage_grpo": dict(reward_funcs=["majority_vote"], advantage="grpo"),
    "advantage_centered": dict(reward_funcs=["majority_vote"], advantage="centered"),
    "advantage_lse": dict(reward_funcs=["soft_frequency"], advantage="lse", lse_tau=1.0),
}


def trainer(model_dir, tokenizer, dataset, cpu_config, **overrides):
    config = cpu_config(max_steps=1, per_device_train_batch_size=8, **overrides)
    return SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=tokenizer)


def test_text_rows_are_plain_text_prompts(text_dataset, text_tokenizer, tmp_path):
    dataset = text_dataset(4)
    row = dataset[0]
    assert row["images"] == [] and row["prompt"] == [
        {"role": "user", "content": f"{row['prompt'][0]['content'].split('?')[0]}? Answer in \\boxed{{}}."}]
    assert row["prompt"][0]["content"].startswith("What is ") and row["label"] is not None
    text = text_tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    assert text.endswith(f"<|im_start|>user\n{row['prompt'][0]['content']}<|im_end|>\n<|im_start|>assistant\n")
    assert "vision" not in text and "image" not in text and "{'type'" not in text

    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.arguments import DataArguments

    path = tmp_path / "arithmetic.jsonl"  # a local jsonl of question/answer: the same plain-text prompts
    path.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(4)))
    local = load_training_dataset(DataArguments(dataset_name=str(path), question_column="question",
                                                answer_column="answer", image_column="none",
                                                instruction="Answer in \\boxed{}."))
    assert local[2]["prompt"] == [{"role": "user", "content": "What is 2 + 2? Answer in \\boxed{}."}]
    assert local[2]["images"] == [] and local[2]["label"] == "4"


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_a_text_model_one_step(method, text_scoring_model_dir, text_tokenizer, text_dataset,
                                                  cpu_config):
    trainer_ = trainer(text_scoring_model_dir, text_tokenizer, text_dataset(8), cpu_config, **METHODS[method])
    assert not trainer_._is_vlm  # a tokenizer, no processor
    prompts, tokenize = [], trainer_._tokenize_prompts
    trainer_._tokenize_prompts = lambda batch: (prompts.extend(batch), tokenize(batch))[1]
    before = {n: p.detach().clone() for n, p in trainer_.model.named_parameters()}
    trainer_.train()
    (step,) = [entry for entry in trainer_.state.log_history if "reward" in entry]
    assert step["reward_std"] > 0 and step["advantages/std"] > 0
    assert not [key for key in step if key.endswith(("/image", "/text"))]  # text questions only: no split by kind
    assert any(not torch.equal(p, before[n]) for n, p in trainer_.model.named_parameters())
    if method == "judge_modulated":
        assert step["judge/samples"] == 8 and step["judge/parse_failure_rate"] < 1
    if method.startswith("retrace"):
        assert step["retrace/tokens_per_completion"] > 0
    texts = [text_tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    assert texts and not any("{'type'" in text or "<|vision_start|>" in text for text in texts)  # plain text only
    if method == "retrace_new_turn":  # the prefix is a finished assistant turn of plain text, then a new one opens
        assert any(text.count("<|im_start|>assistant\n") == 2 for text in texts)


def test_visual_perturbation_is_refused_for_a_text_model(text_model_dir, text_tokenizer, text_dataset, cpu_config):
    with pytest.raises(ConfigError, match="retrace_visual_perturbation adds noise to the prompt images"):
        trainer(text_model_dir, text_tokenizer, text_dataset(4), cpu_config, reward_funcs=["retrace_frequency"],
                retrace_visual_perturbation=True)


def test_image_rows_are_refused_for_a_text_model(text_model_dir, text_tokenizer, synthetic_dataset, cpu_config):
    trainer_ = trainer(text_model_dir, text_tokenizer, synthetic_dataset(8), cpu_config, reward_funcs=["majority_vote"])
    with pytest.raises(UsageError, match="A dataset row has images, and this model has no image processor"):
        trainer_.train()


def test_tiny_text_recipe_trains_two_steps(run, python, tmp_path):
    out = tmp_path / "run"
    result = run([python, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-text.yaml", "--max_steps", "2",
                  "--output_dir", str(out)], env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run summary: 2 steps" in result.stdout and (out / "summary.json").exists()
    assert (tmp_path / "cache" / "tiny-qwen2-text" / "tokenizer_config.json").exists()
    assert not (tmp_path / "cache" / "tiny-qwen2-text" / "preprocessor_config.json").exists()  # no image processor


def test_math_ttrl_text_recipe_settings():
    from self_evolve_trl.cli import parse_recipe

    data_args, config, model_args = parse_recipe(["recipes/math-ttrl-text.yaml", "--bf16", "false", "--use_cpu",
                                                  "true"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-Math-7B"
    assert (data_args.dataset_name, data_args.question_column, data_args.answer_column, data_args.image_column) == (
        "HuggingFaceH4/MATH-500", "problem", "answer", "none")
    assert config.reward_funcs == ["majority_vote"] and config.advantage == "grpo"
    assert (config.num_generations, config.temperature, config.learning_rate, config.max_completion_length) == (
        32, 1.0, 5e-7, 3072)
    assert config.use_vllm and config.vllm_mode == "server" and not config.retrace_visual_perturbation


def test_check_accepts_the_text_recipe_and_warns_for_image_data(tmp_path, monkeypatch):
    from self_evolve_trl.check import check_recipe

    monkeypatch.setenv("SELF_EVOLVE_TRL_CACHE", str(tmp_path / "cache"))
    assert not check_recipe("recipes/tiny-cpu-text.yaml").problems  # text-only data: nothing to warn about
    (warning,) = check_recipe("recipes/tiny-cpu-text.yaml", ["--synthetic_task", "count"]).problems
    assert warning.warning and "has no vision config: a text-only model" in warning.message
