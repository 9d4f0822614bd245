"""The tiny Qwen3-VL (`tiny:qwen3-vl`, `data/tiny_qwen3vl.py`) trains with every method: the consistency rewards,
the format check, the `reference` judge, CSRS in both modes with the completion's `<think>` block intact, token
confidence, TTRL's larger vote, the consistency filter and the three advantage modes; images are resized in
Qwen3-VL's 32-pixel units; `<think>` survives CSRS decoding even where a tokenizer marks it special."""

import json

import pytest
import torch

from self_evolve_trl.csrs.prefix import decode_text, dropped_token_ids
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

JUDGE = dict(judge_backend="reference", judge_max_tokens=12, judge_repeats=1, judge_on_failure="zero",
             judge_max_parse_failure_rate=None)
# Each run is one optimizer step; reward methods and advantage modes share runs, so that 8 runs cover them all.
METHODS = {
    "majority_vote": dict(reward_funcs=["majority_vote"], advantage="grpo"),
    "soft_frequency_lse": dict(reward_funcs=["soft_frequency"], advantage="lse", lse_tau=1.0),
    "format_centered_filter": dict(reward_funcs=["majority_vote", "format"], advantage="centered",
                                   min_consistency=0.3),
    "judge_modulated": dict(reward_funcs=["judge_modulated"], **JUDGE),
    "retrace_new_turn": dict(reward_funcs=["retrace_frequency"], retrace_mode="new_turn"),
    "retrace_continuation": dict(reward_funcs=["retrace_frequency"], retrace_mode="continuation"),
    "certainty": dict(reward_funcs=["self_certainty", "token_entropy"]),
    "ttrl_vote": dict(reward_funcs=["ttrl_vote"], vote_samples=8),
}
THOUGHT = "<think>x</think>\\boxed{0"  # CSRS's prefix at anchor 0.7: 6 of the scoring model's 9 tokens


def make_trainer(model_dir, processor, dataset, cpu_config, **overrides):
    config = cpu_config(max_steps=1, per_device_train_batch_size=8, max_completion_length=16, **overrides)
    return SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor)


def test_tiny_qwen3vl_is_the_real_architecture_with_its_chat_template(qwen3vl_model_dir, qwen3vl_processor):
    from transformers import AutoConfig

    from self_evolve_trl.data.tiny import resolve_tiny_model

    config = AutoConfig.from_pretrained(qwen3vl_model_dir)
    assert (config.model_type, config.vision_config.patch_size, config.vision_config.deepstack_visual_indexes) == (
        "qwen3_vl", 16, [0])
    assert config.text_config.rope_parameters["mrope_interleaved"] is True
    assert type(qwen3vl_processor).__name__ == "Qwen3VLProcessor"
    tokenizer = qwen3vl_processor.tokenizer
    ids = tokenizer("<think>x</think>")["input_ids"]
    assert len(ids) == 3 and tokenizer.decode(ids, skip_special_tokens=True) == "<think>x</think>"  # not special
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Why?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "<think>a</think>b"}]},
                {"role": "user", "content": "And?"}]
    assert qwen3vl_processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Why?<|im_end|>\n"  # no default system prompt
        "<|im_start|>assistant\n<think>a</think>b<|im_end|>\n"
        "<|im_start|>user\nAnd?<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="tiny:qwen2-text, tiny:qwen3-vl"):
        resolve_tiny_model("tiny:qwen4", "/nonexistent")


def test_images_are_resized_in_32_pixel_units(qwen3vl_dataset, qwen3vl_processor, tiny_processor):
    from self_evolve_trl.data.images import processor_patch_size, processor_pixel_bounds

    assert (processor_patch_size(qwen3vl_processor), processor_patch_size(tiny_processor)) == (16, 14)
    assert processor_pixel_bounds(qwen3vl_processor) == (4 * 32 * 32, 64 * 32 * 32)
    image = qwen3vl_dataset(2)[0]["images"][0]
    assert image.width % 32 == 0 and image.height % 32 == 0 and 4096 <= image.width * image.height <= 65536
    grid = qwen3vl_processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert grid == [1, image.height // 16, image.width // 16]  # left unchanged by the processor


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_the_tiny_qwen3vl_one_step(method, qwen3vl_scoring_model_dir, qwen3vl_processor,
                                                      qwen3vl_dataset, cpu_config):
    trainer = make_trainer(qwen3vl_scoring_model_dir, qwen3vl_processor, qwen3vl_dataset(8), cpu_config,
                           **METHODS[method])
    prompts, tokenize = [], trainer._tokenize_prompts
    trainer._tokenize_prompts = lambda batch: (prompts.extend(batch), tokenize(batch))[1]
    retraced = []
    if method.startswith("retrace"):
        providers, provider = trainer.reward_input_providers, trainer.reward_input_providers["retrace_completions"]
        providers["retrace_completions"] = lambda *a: (retraced.extend(out := provider(*a)), out)[1]
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    (step,) = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert step["reward_std"] > 0 and step["advantages/std"] > 0
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    if method == "format_centered_filter":  # TRL's completion text keeps `<think>`: the thinking format matches
        assert (step["rewards/format/mean"], step["rewards/format/std"]) == (0.0, 0.0)  # no -penalty
        assert step["self_consistency/format_violation_rate"] == 0
    if method == "judge_modulated":
        assert step["judge/samples"] == 8 and step["judge/parse_failure_rate"] < 1
    if method.startswith("retrace"):  # every re-inferred text keeps the `<think>` block, prefix or new turn alike
        texts = [text for per_completion in retraced for text in per_completion]
        assert len(texts) == 8 * 3 and all(text.startswith(THOUGHT) and text.endswith("}") for text in texts)
    if method == "retrace_new_turn":  # the prefix, `<think>` included, is a finished assistant turn
        closed = [p[-1]["content"] for p in prompts if p[-1]["role"] == "assistant"]
        assert len(closed) == 8 and all(c in (THOUGHT, [{"type": "text", "text": THOUGHT}]) for c in closed)
        text = qwen3vl_processor.apply_chat_template(
            [p for p in prompts if p[-1]["role"] == "assistant"][0], add_generation_prompt=True, tokenize=False)
        assert text.endswith(f"<|im_start|>assistant\n{THOUGHT}<|im_end|>\n<|im_start|>assistant\n")
    if method == "ttrl_vote":
        assert step["ttrl/completion_length"] == 10  # the 8 extra votes per prompt, as the rollouts


def special_think_tokenizer(model_dir):
    """The tiny Qwen3-VL's tokenizer with `<think>`/`</think>` marked special: the worst case for decoding."""
    from tokenizers import AddedToken
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(tag, special=True, normalized=False) for tag in ("<think>", "</think>")]})
    return processor


def test_csrs_decoding_keeps_think_where_the_tokenizer_marks_it_special(qwen3vl_model_dir):
    tokenizer = special_think_tokenizer(qwen3vl_model_dir).tokenizer
    ids = tokenizer("<think>a</think>\\boxed{1}<|im_end|><|endoftext|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a\\boxed{1}"  # what plain decoding loses
    dropped = dropped_token_ids(tokenizer)
    assert decode_text(tokenizer, ids, dropped) == "<think>a</think>\\boxed{1}"
    vision = tokenizer("<|vision_start|><|image_pad|><|vision_end|>")["input_ids"]
    assert set(vision) <= dropped and decode_text(tokenizer, vision + ids[:2], dropped) == "<think>a"


def test_csrs_new_turn_prefix_keeps_think_where_the_tokenizer_marks_it_special(
        qwen3vl_scoring_model_dir, qwen3vl_model_dir, qwen3vl_dataset, cpu_config):
    processor = special_think_tokenizer(qwen3vl_model_dir)
    trainer = make_trainer(qwen3vl_scoring_model_dir, processor, qwen3vl_dataset(8), cpu_config,
                           reward_funcs=["retrace_frequency"], retrace_mode="new_turn")
    provider = trainer.reward_input_providers["retrace_completions"]
    prompt = qwen3vl_dataset(1)[0]["prompt"]
    prefix = processor.tokenizer(THOUGHT)["input_ids"]
    assert processor.tokenizer.decode(prefix, skip_special_tokens=True) == "x\\boxed{0"  # special here
    retrace_prompt = provider.retrace_prompt(prompt, prefix, 0, 0)
    assert retrace_prompt[:-1] == prompt and retrace_prompt[-1] == {"role": "assistant", "content": THOUGHT}


def test_tiny_qwen3vl_trains_through_the_training_command(run, python, tmp_path):
    """The CSRS recipe (`new_turn`, VSP) with `--model_name_or_path tiny:qwen3-vl`, as the README shows."""
    out = tmp_path / "run"
    result = run([python, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-csrs.yaml", "--model_name_or_path",
                  "tiny:qwen3-vl", "--max_steps", "2", "--save_strategy", "no", "--output_dir", str(out)],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run summary: 2 steps" in result.stdout and (out / "summary.json").exists()
    config = json.loads((tmp_path / "cache" / "tiny-qwen3-vl" / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
