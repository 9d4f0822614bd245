"""CSRS (SPEC §2 `retrace_frequency`, §4): prefixes, re-inference prompts, VSP, the reward, training runs.

Run as a script (`torchrun ... tests/test_retrace.py RECIPE FLAGS...`), it trains through TRL's own vLLM generation
with a stand-in for TRL's vLLM client (see `FakeVLLMClient`).
"""

import json
import os
import re
import socket
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset
from PIL import Image
from trl.data_utils import prepare_multimodal_messages

from self_evolve_trl.config import ConfigError, SelfEvolveConfig
from self_evolve_trl.retrace import (
    NEW_TURN_NEEDS_CONVERSATIONS,
    add_noise,
    map_images,
    noise_generator,
    noise_level,
    perturb_image,
    perturb_images,
    prefix_length,
)
from self_evolve_trl.rewards import get_reward_function
from self_evolve_trl.rewards.retrace import retrace_frequency
from self_evolve_trl.seeds import batch_entropy, generation_batch, rollout_seed
from self_evolve_trl.trainer import SelfEvolveGRPOTrainer


def boxed(*answers):
    return [f"<think>...</think> \\boxed{{{a}}}" if a is not None else "<think>...</think> no answer" for a in answers]


# ----------------------------------------------------------------------------------------------------------------
# The reward on hand-made groups


def spec_reward(c, G, K, fmt, beta=1.2, w=0.9):
    """SPEC §2: r = w·min(1, β·c/(G·(K+1))) + (1 − w)·fmt."""
    return w * min(1.0, beta * c / (G * (K + 1))) + (1 - w) * fmt


def test_retrace_frequency_counts_the_whole_groups_reinferences():
    # G = 4, K = 3. Original answers 1/2, 0.5, 3, none; re-inferences of every completion are pooled.
    completions = boxed("1/2", "0.5", "3", None)
    retraced = [
        boxed("\\frac{1}{2}", "0.5", "7"),   # two in the 1/2 class
        boxed("3", None, "1/2"),             # one 3, one 1/2, one failed extraction
        boxed("3", "3", "3"),
        boxed(None, None, "2"),
    ]
    rewards = retrace_frequency(completions, 4, retraced)
    # 1/2 class: \frac{1}{2}, 0.5, 1/2 -> c = 3 for the first two; 3 class: 3+1 = 4; the abstention: 0
    expected = [spec_reward(3, 4, 3, 1), spec_reward(3, 4, 3, 1), spec_reward(4, 4, 3, 1), spec_reward(0, 4, 3, 0)]
    assert rewards == pytest.approx(expected)
    assert rewards == pytest.approx([0.9 * 1.2 * 3 / 16 + 0.1, 0.9 * 1.2 * 3 / 16 + 0.1, 0.9 * 1.2 * 4 / 16 + 0.1, 0.0])


def test_several_anchors_count_every_reinference_in_k():
    # G = 2, 2 anchors × 2 samples: K = 4 texts per completion, anchor by anchor, and the denominator G·(K+1) = 10
    completions = boxed("1", "2")
    retraced = [boxed("1", "1", "2", None), boxed("1", "1", "1", "2")]  # class 1: c = 5; class 2: c = 2
    rewards = retrace_frequency(completions, 2, retraced)
    assert rewards == pytest.approx([0.9 * min(1, 1.2 * 5 / 10) + 0.1, 0.9 * 1.2 * 2 / 10 + 0.1])
    assert rewards == pytest.approx([0.64, 0.316])  # with K = samples per anchor (2), the first would be 1.0


def test_originals_are_not_counted_and_groups_are_separate():
    # every original says 5, but no re-inference does: no reward beyond the format term
    group_a = boxed("5", "5")
    group_b = boxed("5", "6")
    retraced = [boxed("6"), boxed("6"), boxed("5"), boxed("5")]
    rewards = retrace_frequency(group_a + group_b, 2, retraced, format_pattern=".*")
    assert rewards == pytest.approx([0.1, 0.1, spec_reward(2, 2, 1, 1), 0.1])


def test_failed_extractions_never_match_even_a_missing_answer():
    completions = ["no box", "no box either"]
    retraced = [["still none"], ["none"]]
    assert retrace_frequency(completions, 2, retraced, format_pattern=".*") == pytest.approx([0.1, 0.1])


def test_beta_clip_weight_and_matching_mode():
    completions = boxed("2", "2.0")
    retraced = [boxed("2", "2"), boxed("2.0", "2")]
    # math: all four agree; c = 4, β·c/(G·(K+1)) = 3·4/6 = 2 -> clipped to 1
    assert retrace_frequency(completions, 2, retraced, beta=3.0, weight=0.5) == pytest.approx([1.0, 1.0])
    # exact matching splits 2 and 2.0: c = 3 and 1
    exact = retrace_frequency(completions, 2, retraced, match="exact", weight=1.0)
    assert exact == pytest.approx([1.2 * 3 / 6, 1.2 * 1 / 6])


def test_format_term_uses_the_pattern():
    completions = ["<think>a</think> \\boxed{1}", "\\boxed{1}"]
    retraced = [boxed("9"), boxed("9")]
    assert retrace_frequency(completions, 2, retraced) == pytest.approx([0.1, 0.0])
    assert retrace_frequency(completions, 2, retraced, format_pattern=r".*\\boxed\{.*\}.*") == pytest.approx([0.1, 0.1])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same number of re-inferences"):
        retrace_frequency(boxed("1", "1"), 2, [boxed("1"), boxed("1", "1")])
    with pytest.raises(ValueError, match="retrace_completions has 1 entries for 2"):
        retrace_frequency(boxed("1", "1"), 2, [boxed("1")])
    with pytest.raises(ValueError, match="whole groups"):
        retrace_frequency(boxed("1", "1", "1"), 2, [boxed("1")] * 3)


def test_registry_logging_and_declared_input():
    fn = get_reward_function("retrace_frequency", beta=1.2)
    assert fn.required_inputs == ("retrace_completions",)
    logged, extra = {}, {}
    rewards = fn(
        boxed("1", "2"), 2, retrace_completions=[boxed("1", "2"), boxed(None, "2")],
        log_metric=logged.__setitem__, log_extra=extra.__setitem__,
    )
    assert rewards == pytest.approx([spec_reward(1, 2, 2, 1), spec_reward(2, 2, 2, 1)])
    assert logged["retrace/agreement"] == pytest.approx((0.5 + 0.5) / 2)
    assert logged["retrace/abstention_rate"] == pytest.approx(0.25)
    assert extra["retrace_answers"] == ["1 | 2", " | 2"]


# ----------------------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(retrace_mode="prefix"), "Unknown retrace_mode 'prefix'; valid choices: new_turn, continuation."),
        (dict(retrace_anchor_base="tokens"), "valid choices: actual_length, max_length"),
        (dict(retrace_anchors=[0.5, 1.5]), "retrace_anchors must be a non-empty list of fractions in [0, 1]"),
        (dict(retrace_anchors=[]), "retrace_anchors must be a non-empty list"),
        (dict(retrace_samples_per_anchor=0), "retrace_samples_per_anchor must be >= 1"),
        (dict(retrace_noise_max_level=0), "retrace_noise_max_level must be in 1..100"),
        (dict(retrace_generation_batch_size=0), "retrace_generation_batch_size must be >= 1 or null"),
    ],
)
def test_config_errors_name_the_valid_values(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SelfEvolveConfig(output_dir=str(tmp_path), use_cpu=True, **overrides)


# ----------------------------------------------------------------------------------------------------------------
# Prefixes and prompts


def test_prefix_length_both_bases():
    assert [prefix_length(n, 0.7) for n in (0, 1, 10, 20, 100)] == [0, 0, 7, 14, 70]
    assert prefix_length(100, 0.29) == 29  # not 28 from 0.29·100 = 28.999999999999996
    assert [prefix_length(n, 0.7, "max_length", 100) for n in (10, 69, 70, 71, 100)] == [10, 69, 70, 70, 70]
    assert prefix_length(10, 1.0) == 10 and prefix_length(10, 0.0) == 0
    with pytest.raises(ValueError, match="valid bases: actual_length, max_length"):
        prefix_length(10, 0.5, "tokens")


def make_trainer(model_dir, processor, dataset, config, **kwargs):
    return SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor, **kwargs)


@pytest.fixture
def csrs_trainer(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    def make(eval_dataset=None, **overrides):
        config = cpu_config(reward_funcs=["retrace_frequency"], **overrides)
        return make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config, eval_dataset=eval_dataset)

    return make


def rows(trainer, n=1):
    """Conversational prompts with their images embedded, as TRL hands them to `_calculate_rewards`."""
    out = []
    for i in range(n):
        row = trainer.train_dataset[i]
        out.append(prepare_multimodal_messages(row["prompt"], images=row["images"]))
    return out


def test_provider_prefix_lengths_for_both_anchor_bases(csrs_trainer):
    eos = csrs_trainer().eos_token_ids[0]
    completions = [list(range(70, 80)) + [eos], list(range(70, 88))]  # 10 tokens + EOS; 18 tokens, truncated
    for base, expected in [("actual_length", [5, 7, 9, 12]), ("max_length", [10, 10, 10, 14])]:
        trainer = csrs_trainer(retrace_anchors=[0.5, 0.7], retrace_anchor_base=base, max_completion_length=20)
        requests = trainer.reward_input_providers["retrace_completions"].requests(rows(trainer, 2), completions)
        assert [(r.index, r.anchor) for r in requests] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert [len(r.prefix_ids) for r in requests] == expected, base
        assert all(r.prefix_ids == completions[r.index][: len(r.prefix_ids)] for r in requests)


SYSTEM_AND_USER = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|image_pad|><|vision_end|>"
    "How many squares in the image are filled with colour? Answer in \\boxed{}.<|im_end|>\n"
)


def test_new_turn_prompt_structure(csrs_trainer, tiny_processor):
    trainer = csrs_trainer(retrace_mode="new_turn", retrace_anchors=[0.5])
    tokenizer = tiny_processor.tokenizer
    completion = tokenizer.encode("<think>two and two</think> \\boxed{4}") + [trainer.eos_token_ids[0]]
    (request,) = trainer.reward_input_providers["retrace_completions"].requests(rows(trainer), [completion])
    prefix_text = tokenizer.decode(completion[: (len(completion) - 1) // 2])
    assert prefix_text and prefix_text == tokenizer.decode(request.prefix_ids)
    assert tokenizer.decode(request.prompt_ids) == (
        SYSTEM_AND_USER + f"<|im_start|>assistant\n{prefix_text}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert len(request.fields["mm_token_type_ids"][0]) == len(request.prompt_ids)
    assert request.fields["image_grid_thw"].tolist() == [[1, 4, 4]] and len(request.images) == 1


def test_continuation_prompt_structure(csrs_trainer, tiny_processor):
    trainer = csrs_trainer(retrace_mode="continuation", retrace_anchors=[0.5])
    tokenizer = tiny_processor.tokenizer
    completion = tokenizer.encode("<think>two and two</think> \\boxed{4}") + [trainer.eos_token_ids[0]]
    (request,) = trainer.reward_input_providers["retrace_completions"].requests(rows(trainer), [completion])
    prompt_ids, _, fields = trainer._tokenize_prompts(rows(trainer))
    prefix = completion[: (len(completion) - 1) // 2]
    assert request.prompt_ids == prompt_ids[0] + prefix  # the very tokens, no re-tokenisation
    assert tokenizer.decode(request.prompt_ids) == SYSTEM_AND_USER + "<|im_start|>assistant\n" + tokenizer.decode(prefix)
    assert request.fields["mm_token_type_ids"] == [fields["mm_token_type_ids"][0] + [0] * len(prefix)]


def test_reinference_samples_and_texts_per_mode(csrs_trainer, tiny_processor):
    """K samples per anchor per completion; continuation texts start with the prefix."""
    tokenizer = tiny_processor.tokenizer
    completion = tokenizer.encode("<think>two and two make four</think> \\boxed{4}") + [288]
    for mode in ("new_turn", "continuation"):
        trainer = csrs_trainer(retrace_mode=mode, retrace_anchors=[0.3, 0.8], retrace_samples_per_anchor=2,
                               max_completion_length=6)
        provider = trainer.reward_input_providers["retrace_completions"]
        requests = provider.requests(rows(trainer), [completion])
        samples = provider.generate(requests)
        assert [len(s) for s in samples] == [2, 2]
        assert all(1 <= len(ids) <= 6 for s in samples for ids in s)  # at most max_completion_length new tokens
        (texts,) = provider(None, rows(trainer), [None], [completion])
        assert len(texts) == 4
        prefixes = [tokenizer.decode(r.prefix_ids) for r in requests]
        if mode == "continuation":
            assert all(t.startswith(prefixes[i // 2]) for i, t in enumerate(texts))
        else:
            assert not any(t.startswith(prefixes[1]) for t in texts)


def test_generation_calls_are_chunked_in_whole_k_blocks_and_mapped_back(csrs_trainer):
    trainer = csrs_trainer(retrace_samples_per_anchor=2, retrace_generation_batch_size=5)
    provider = trainer.reward_input_providers["retrace_completions"]
    completions = [list(range(70, 70 + n)) for n in (4, 6, 8)]  # three different prefixes: 2, 4, 5 tokens
    requests = provider.requests(rows(trainer, 3), completions)
    calls = []

    def fake_generate(prompt_ids, images, fields, num_generations):
        calls.append((len(prompt_ids), num_generations, len(images), fields["image_grid_thw"].size(0)))
        return [[len(ids), n % num_generations] for n, ids in enumerate(prompt_ids)], None

    trainer._generate_single_turn = fake_generate
    outputs = provider.generate(requests, max_rows=provider.max_rows)
    assert calls == [(4, 2, 4, 4), (2, 2, 2, 2)]  # 5 rows allow 2 whole K-blocks per call
    assert outputs == [[[len(r.prompt_ids), 0], [len(r.prompt_ids), 1]] for r in requests]


# ----------------------------------------------------------------------------------------------------------------
# VSP


def gray(size=28, value=128):
    return Image.new("RGB", (size, size), (value, value, value))


def test_vsp_changes_the_pixels_of_every_image_in_a_list():
    images = [gray(), gray(value=30)]
    noisy = perturb_images(images, np.random.default_rng(0))
    assert len(noisy) == 2
    for clean, dirty in zip(images, noisy):
        assert dirty is not clean and dirty.size == clean.size and dirty.mode == clean.mode
        assert not np.array_equal(np.asarray(clean), np.asarray(dirty))
    assert np.asarray(images[0]).max() == 128 and np.asarray(images[0]).min() == 128  # inputs untouched


def test_vsp_noise_levels_cover_one_to_max_uniformly():
    rng = np.random.default_rng(0)
    counts = Counter(noise_level(rng) for _ in range(40_000))  # default max_level 40: 1000 draws expected per level
    assert sorted(counts) == list(range(1, 41))
    assert all(850 < n < 1150 for n in counts.values()), counts  # ±15%, about 5 standard deviations
    assert set(noise_level(rng, max_level=3) for _ in range(300)) == {1, 2, 3}
    assert {noise_level(rng, max_level=1) for _ in range(50)} == {1}


@pytest.mark.parametrize("level", [1, 4, 10])
def test_vsp_sigma_is_level_times_255_over_100(level):
    # mid grey and σ ≤ 25.5: pixels stay within 128 ± 5σ of [0, 255], so clipping is negligible
    diff = np.asarray(add_noise(gray(300), np.random.default_rng(level), level), dtype=float) - 128
    assert diff.std() == pytest.approx(level * 2.55, rel=0.02)
    assert abs(diff.mean()) < 0.02 * level * 2.55
    # perturb_image draws k first, then noise of σ = k·2.55 from the same generator
    k = noise_level(np.random.default_rng(100 + level), max_level=10)
    noisy = perturb_image(gray(300), np.random.default_rng(100 + level), max_level=10)
    assert (np.asarray(noisy, dtype=float) - 128).std() == pytest.approx(k * 2.55, rel=0.02)


def test_vsp_clipping():
    black = np.asarray(perturb_image(gray(value=0), np.random.default_rng(2)))
    assert black.min() == 0 and black.max() > 0  # clipped at 0, not wrapped around


def test_vsp_is_seeded_and_reproducible():
    a = perturb_image(gray(), noise_generator(0, 3, 5, 0))
    b = perturb_image(gray(), noise_generator(0, 3, 5, 0))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    for other in [noise_generator(1, 3, 5, 0), noise_generator(0, 4, 5, 0), noise_generator(0, 3, 6, 0),
                  noise_generator(0, 3, 5, 1), noise_generator(0, 3, 5, 0, (1, 1)),
                  noise_generator(0, 3, 5, 0, (0, 2))]:
        assert not np.array_equal(np.asarray(a), np.asarray(perturb_image(gray(), other)))
    # the first training batch of a step keeps the seeds of (seed, step, index, anchor) alone, as recorded runs had
    expected = np.random.default_rng([0, 3, 5, 0, 0]).random(4)
    assert np.array_equal(noise_generator(0, 3, 5, 0).random(4), expected)
    assert np.array_equal(noise_generator(0, 3, 5, 0, batch_entropy("train", 0)).random(4), expected)


def test_generation_batches_are_numbered_within_a_step_and_mode():
    trainer = SimpleNamespace(model=SimpleNamespace(training=True), state=SimpleNamespace(global_step=0))
    seen = []
    for step, training in [(0, True), (0, True), (1, True), (1, False), (1, False), (1, True), (1, True)]:
        trainer.state.global_step, trainer.model.training = step, training
        seen.append(generation_batch(trainer, "retrace"))
    assert seen == [(), (1, 1), (), (0, 2), (1, 2), (), (1, 1)]
    assert generation_batch(trainer, "rollout") == ()  # every consumer counts its own batches
    # rollout seeds: the first training batch keeps the formula of recorded runs, (seed·P + step)·P + index
    assert rollout_seed(7, 3, 5) == rollout_seed(7, 3, 5, ()) == (7 * 1_000_003 + 3) * 1_000_003 + 5
    others = {rollout_seed(7, 3, 5, batch) for batch in [(1, 1), (2, 1), (0, 2), (1, 2)]}
    assert len(others) == 4 and rollout_seed(7, 3, 5) not in others
    with pytest.raises(ValueError, match="valid modes: train, eval"):
        batch_entropy("predict", 0)


def test_map_images_copies_the_prompt():
    image = gray()
    prompt = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "q"}]}]
    mapped = map_images(prompt, lambda im: "replaced")
    assert mapped[0]["content"][0]["image"] == "replaced" and prompt[0]["content"][0]["image"] is image
    assert mapped[0]["content"][1] == {"type": "text", "text": "q"}


def test_vsp_only_on_reinference_prompts(csrs_trainer, tiny_processor):
    """The rollouts and the trained batch see the clean images; only the re-inference prompts get noise."""
    trainer = csrs_trainer(retrace_visual_perturbation=True, max_steps=1)
    calls = []
    original = trainer._generate_single_turn

    def spy(prompt_ids, images, fields, num_generations, **kwargs):
        calls.append(([list(x) for x in images], fields["pixel_values"].clone()))
        return original(prompt_ids, images, fields, num_generations, **kwargs)

    trainer._generate_single_turn = spy
    trainer.model.train()
    row = trainer.train_dataset[0]
    output = trainer._generate_and_score_completions([row] * 4)

    clean = np.asarray(row["images"][0])
    clean_pixels = tiny_processor.image_processor(images=[row["images"][0]])["pixel_values"]
    (rollout_images, rollout_pixels), (retrace_images, retrace_pixels) = calls  # one rollout call, one re-inference call
    assert all(np.array_equal(np.asarray(imgs[0]), clean) for imgs in rollout_images)
    assert torch.allclose(output["pixel_values"], clean_pixels.repeat(4, 1))  # the trained batch: clean
    assert len(retrace_images) == 4 * 3  # 4 completions × 1 anchor × K = 3
    noisy = [np.asarray(imgs[0]) for imgs in retrace_images]
    assert not any(np.array_equal(image, clean) for image in noisy)
    # the K samples of a prefix share one noisy image; different completions get different noise
    assert all(np.array_equal(noisy[3 * n], noisy[3 * n + s]) for n in range(4) for s in range(3))
    assert not np.array_equal(noisy[0], noisy[3])
    assert not torch.allclose(retrace_pixels, clean_pixels.repeat(12, 1))

    # reproducible: the same step and completion give the same noise
    provider = trainer.reward_input_providers["retrace_completions"]
    again = provider.requests([prepare_multimodal_messages(row["prompt"], images=row["images"])], [[70, 71]])
    assert np.array_equal(np.asarray(again[0].images[0]), noisy[0])


def test_no_vsp_keeps_the_clean_images(csrs_trainer):
    trainer = csrs_trainer(retrace_visual_perturbation=False)
    row = trainer.train_dataset[0]
    (request,) = trainer.reward_input_providers["retrace_completions"].requests(rows(trainer), [[70, 71]])
    assert np.array_equal(np.asarray(request.images[0]), np.asarray(row["images"][0]))


def test_provider_honours_the_noise_max_level(csrs_trainer):
    completions = [list(range(70, 70 + n)) for n in range(4, 12)]  # 8 completions × 2 anchors: 16 noisy images
    levels = {}
    for max_level in (3, 40):
        trainer = csrs_trainer(retrace_visual_perturbation=True, retrace_noise_max_level=max_level,
                               retrace_anchors=[0.3, 0.7])
        provider = trainer.reward_input_providers["retrace_completions"]
        provider.requests(rows(trainer, 1) * 8, completions)
        levels[max_level] = provider.noise_levels
    assert len(levels[3]) == 16 and set(levels[3]) <= {1, 2, 3} and len(set(levels[3])) > 1
    assert max(levels[40]) > 3


def test_new_turn_needs_conversational_prompts_when_the_trainer_is_built(tiny_model_dir, tiny_processor, cpu_config):
    plain = Dataset.from_dict({"prompt": ["How many squares? Answer in \\boxed{}."] * 4})
    config = cpu_config(reward_funcs=["retrace_frequency"], retrace_mode="new_turn")
    with pytest.raises(ValueError, match=re.escape(NEW_TURN_NEEDS_CONVERSATIONS)):
        make_trainer(tiny_model_dir, tiny_processor, plain, config)
    assert "use retrace_mode 'continuation'" in NEW_TURN_NEEDS_CONVERSATIONS
    config = cpu_config(reward_funcs=["retrace_frequency"], retrace_mode="continuation")
    make_trainer(tiny_model_dir, tiny_processor, plain, config)  # continuation works on plain text


# ----------------------------------------------------------------------------------------------------------------
# Seeds of the generation batches: several per optimizer step, and evaluation's


def record_retrace_batches(trainer):
    """Per re-inference batch: step, mode, batch entropy, VSP levels and the noise added to the first image."""
    provider = trainer.reward_input_providers["retrace_completions"]
    requests, seen = provider.requests, []

    def spy(prompts, completion_ids_list):
        out = requests(prompts, completion_ids_list)
        clean = np.asarray(prompts[0][0]["content"][0]["image"], dtype=int)
        noise = np.asarray(out[0].images[0], dtype=int) - clean
        seen.append(dict(step=trainer.state.global_step, training=trainer.model.training, batch=provider.batch,
                         levels=list(provider.noise_levels), noise=noise))
        return out

    provider.requests = spy
    return seen


def test_generation_batches_of_one_step_get_different_noise(csrs_trainer):
    """gradient_accumulation_steps = 2, steps_per_generation = 1: TRL generates twice per optimizer step."""
    trainer = csrs_trainer(retrace_visual_perturbation=True, gradient_accumulation_steps=2, steps_per_generation=1,
                           max_steps=1, max_completion_length=4, retrace_samples_per_anchor=1)
    seen = record_retrace_batches(trainer)
    trainer.train()
    first, second = seen
    assert first["step"] == second["step"] == 0
    assert first["levels"] != second["levels"]
    assert not np.array_equal(first["noise"], second["noise"])
    assert (first["batch"], second["batch"]) == ((), (1, 1))  # the first keeps the seeds of one batch per step


def test_training_and_evaluation_at_one_step_get_different_seeds(csrs_trainer, monkeypatch):
    trainer = csrs_trainer(retrace_visual_perturbation=True, reproducible_generation=True, max_completion_length=4,
                           retrace_samples_per_anchor=1)
    seen = record_retrace_batches(trainer)
    rollout_seeds = []

    def spy_seed(*args):
        rollout_seeds.append(rollout_seed(*args))
        return rollout_seeds[-1]

    monkeypatch.setattr("self_evolve_trl.trainer.rollout_seed", spy_seed)
    row = trainer.train_dataset[0]
    for training in (True, False):
        trainer.model.train(training)
        trainer._generate_and_score_completions([row] * 4)
    train, evaluation = seen
    assert train["batch"] == () and evaluation["batch"] == (0, 2)
    assert train["levels"] != evaluation["levels"] and not np.array_equal(train["noise"], evaluation["noise"])
    assert rollout_seeds[:4] == [rollout_seed(0, 0, i) for i in range(4)] == [i for i in range(4)]  # (0·P + 0)·P + i
    assert not set(rollout_seeds[:4]) & set(rollout_seeds[4:]) and len(rollout_seeds) == 8


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


# ----------------------------------------------------------------------------------------------------------------
# Training


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


class FakeVLLMClient:
    """Stand-in for TRL's `VLLMClient`, the HTTP client of a vLLM server, under TRL's own `VLLMGeneration`: the one
    stand-in of the vLLM path, for what cannot run on a CPU, the NCCL weight transfer (`init_communicator`,
    `update_named_params`). tests/test_vllm_server_mode.py runs the same path against a real vLLM server with the
    disk sync; this one keeps the NCCL sync's calls in the test, and answers chosen so that the rewards can be
    checked by hand. TRL's server-mode code runs: the gather of every process's
    prompts and images to the main process, the image features placed on the image tokens, one call with n
    completions per distinct prompt, the broadcast of the results and each process's slice. Answers are a function
    of what is sent: a rollout (n = G) answers 1, 1, 2 and nothing in turn; a re-inference answers a digit made of its
    prompt's tokens and a hash of its image's pixels, so a process given another's rows, or other noise, changes the
    rewards.
    """

    tokenizer = None  # set by `train_with_fake_vllm_client`
    group_size = 4
    log: list = []

    def __init__(self, base_url=None, group_port=51216, connection_timeout=0.0):
        self.log.append(["connect", base_url])

    def get_server_info(self):
        return {"model_config": {"logprobs_mode": "processed_logprobs"}, "weight_transfer_config": {"backend": "nccl"}}

    def init_communicator(self, device=0):
        self.log.append(["init_communicator", str(device)])

    def update_named_params(self, metadata, named_params):
        tensors = sum(1 for _ in named_params)
        assert tensors == len(metadata) > 0
        self.log.append(["update_named_params", tensors])

    def reset_prefix_cache(self):
        self.log.append(["reset_prefix_cache"])

    def close_communicator(self):
        pass

    def image_features(self, images):
        return [
            None if not prompt_images else {
                "mm_placeholders": {"image": [{"offset": 0, "length": 0}] * len(prompt_images)},
                "pixel_hash": sum(zlib.crc32(image.tobytes()) for image in prompt_images),
            }
            for prompt_images in images
        ]

    def generate(self, prompts, features=None, n=1, max_tokens=16, **sampling):
        image_token = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        for ids, feature in zip(prompts, features or [None] * len(prompts)):  # TRL placed the images on their tokens
            assert feature and all(ids[p["offset"]] == image_token for p in feature["mm_placeholders"]["image"])
        texts = []
        for ids, feature in zip(prompts, features):
            for j in range(n):
                if n == self.group_size:  # a rollout
                    answer = ("1", "1", "2", None)[j]
                    texts.append(f"<think>a</think> \\boxed{{{answer}}}" if answer else "<think>a</think> no answer")
                else:
                    # + j²: the K answers of a prefix are not a permutation of {0, 1, 2}, so the counts c differ
                    texts.append(f"\\boxed{{{(sum(ids) + feature['pixel_hash'] + j * j) % 3}}}")
        completions = [self.tokenizer.encode(t)[: max_tokens - 1] + [self.tokenizer.eos_token_id] for t in texts]
        self.log.append(["generate", len(prompts), n, texts])
        return {
            "prompt_ids": list(prompts),
            "completion_ids": completions,
            "logprobs": [[[-0.5]] * len(c) for c in completions],
            "logprob_token_ids": [[[t] for t in c] for c in completions],
        }


def train_with_fake_vllm_client(argv: list[str]) -> int:
    """The CLI on `argv`, with TRL's vLLM client replaced by `FakeVLLMClient`; each process writes the generation
    rounds it took part in (and the main process the client's calls) to $FAKE_VLLM_LOG_DIR/rank<r>.json."""
    import trl.generation.vllm_generation as vllm_generation
    from transformers import AutoTokenizer

    from self_evolve_trl import cli

    FakeVLLMClient.tokenizer = AutoTokenizer.from_pretrained(argv[argv.index("--model_name_or_path") + 1])
    vllm_generation.is_vllm_available = lambda *args, **kwargs: True  # vLLM itself is never reached, only the client
    vllm_generation.VLLMClient = FakeVLLMClient
    rounds = []
    generate = vllm_generation.VLLMGeneration.generate

    def counted(self, prompts, images, num_generations, profiler=None):
        rounds.append([len(prompts), num_generations])
        return generate(self, prompts, images, num_generations, profiler)

    vllm_generation.VLLMGeneration.generate = counted
    code = cli.main(argv)
    rank = int(os.environ.get("RANK", "0"))
    log = {"rounds": rounds, "client": FakeVLLMClient.log}
    Path(os.environ["FAKE_VLLM_LOG_DIR"], f"rank{rank}.json").write_text(json.dumps(log))
    return code


def run_with_fake_vllm_client(run, python, model_dir, output_dir, nproc):
    args = ["recipes/tiny-cpu-csrs.yaml", "--model_name_or_path", model_dir, "--use_vllm", "true",
            "--vllm_mode", "server", "--max_steps", "2", "--output_dir", str(output_dir), "--log_completions", "true",
            "--save_strategy", "no", "--num_generations", "4", "--per_device_train_batch_size", str(4 // nproc),
            "--max_completion_length", "12", "--synthetic_size", "8"]
    log_dir = output_dir.parent / f"vllm-log-{nproc}"
    log_dir.mkdir()
    env = {"SELF_EVOLVE_TRL_CACHE": str(output_dir.parent / "cache"), "FAKE_VLLM_LOG_DIR": str(log_dir)}
    launcher = [python]
    if nproc > 1:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        launcher = [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port)]
    result = run([*launcher, str(Path(__file__).resolve()), *args], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [json.loads((log_dir / f"rank{r}.json").read_text()) for r in range(nproc)]
    tables = [pd.read_parquet(output_dir / "completions" / f"completions_{s:05d}.parquet") for s in (1, 2)]
    return logs, tables


@pytest.mark.slow
def test_trls_vllm_server_generation_with_reinference_on_two_processes(run, python, tiny_model_dir, tmp_path):
    """TRL's own `VLLMGeneration` (server mode) on a fake client: every process takes part in every generation
    round (TRL's gather and broadcast are collective), and 2 processes give the rewards of 1."""
    one_logs, one = run_with_fake_vllm_client(run, python, tiny_model_dir, tmp_path / "one", 1)
    two_logs, two = run_with_fake_vllm_client(run, python, tiny_model_dir, tmp_path / "two", 2)
    # per step: the rollout (the process's rows, n = G), then the re-inference (its completions × K = 3, n = K)
    assert one_logs[0]["rounds"] == [[4, 4], [12, 3]] * 2
    assert two_logs[0]["rounds"] == two_logs[1]["rounds"] == [[2, 4], [6, 3]] * 2
    assert two_logs[1]["client"] == []  # only the main process talks to the server
    for logs in (one_logs, two_logs):
        calls = logs[0]["client"]
        assert [c[0] for c in calls[:2]] == ["connect", "init_communicator"]
        # each step: one weight sync, then the server sees 1 distinct prompt (n = 4) and 4 prefixes (n = 3)
        steps = [[c[0] if c[0] != "generate" else tuple(c[1:3]) for c in calls[2:]]]
        assert steps == [["update_named_params", "reset_prefix_cache", (1, 4), (4, 3)] * 2]
    assert one_logs[0]["client"][2:] == two_logs[0]["client"][2:]  # the same requests and answers
    rewards = set()
    for a, b in zip(one, two):
        assert len(a) == len(b) == 4
        for column in ("completion", "answer", "retrace_answers", "retrace_frequency"):
            assert list(a[column].astype(str)) == list(b[column].astype(str)), column
        assert list(a["answer"]) == ["1", "1", "2", ""]
        retraced = Counter(x for answers in a["retrace_answers"] for x in answers.split(" | "))
        expected = [spec_reward(retraced[answer] if answer else 0, 4, 3, fmt=answer != "") for answer in a["answer"]]
        assert a["retrace_frequency"].tolist() == pytest.approx(expected)
        rewards |= set(a["retrace_frequency"])
    assert len(rewards) > 2  # answers 1 and 2 got different counts: the comparison means something


# ----------------------------------------------------------------------------------------------------------------
# The recipe, one and two processes


def run_recipe(run, python, output_dir, nproc, extra=()):
    args = ["recipes/tiny-cpu-csrs.yaml", "--max_steps", "2", "--output_dir", str(output_dir), "--log_completions",
            "true", "--save_strategy", "no", "--reproducible_generation", "true", "--num_generations", "4",
            "--per_device_train_batch_size", str(4 // nproc), "--max_completion_length", "12", "--synthetic_size", "8",
            *extra]
    env = {"SELF_EVOLVE_TRL_CACHE": str(output_dir.parent / "cache")}
    if nproc == 1:
        result = run([python, "-m", "self_evolve_trl.cli", *args], env=env)
    else:
        with socket.socket() as free:  # other test runs may share the machine: no fixed port
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        result = run([python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port),
                      "-m", "self_evolve_trl.cli", *args], env=env)
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


if __name__ == "__main__":  # torchrun --nproc_per_node N tests/test_retrace.py RECIPE FLAGS...
    sys.exit(train_with_fake_vllm_client(sys.argv[1:]))
