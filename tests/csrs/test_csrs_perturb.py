"""VSP, CSRS's visual perturbation: the image noise, its seeds, and the re-inference prompts that get it (only those),
batch by batch."""

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from trl.data_utils import prepare_multimodal_messages

from self_evolve_trl.csrs import add_noise, map_images, noise_generator, noise_level, perturb_image, perturb_images
from self_evolve_trl.seeds import batch_entropy, generation_batch, rollout_seed
from tests.csrs.test_csrs_prefix import rows, trainer_factory


@pytest.fixture
def csrs_trainer(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    return trainer_factory(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config)


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

    monkeypatch.setattr("self_evolve_trl.training.rollout.rollout_seed", spy_seed)
    row = trainer.train_dataset[0]
    for training in (True, False):
        trainer.model.train(training)
        trainer._generate_and_score_completions([row] * 4)
    train, evaluation = seen
    assert train["batch"] == () and evaluation["batch"] == (0, 2)
    assert train["levels"] != evaluation["levels"] and not np.array_equal(train["noise"], evaluation["noise"])
    assert rollout_seeds[:4] == [rollout_seed(0, 0, i) for i in range(4)] == [i for i in range(4)]  # (0·P + 0)·P + i
    assert not set(rollout_seeds[:4]) & set(rollout_seeds[4:]) and len(rollout_seeds) == 8
