"""Fixtures of the Qwen3-VL tests: the tiny Qwen3-VL (`tiny:qwen3-vl`), a scoring variant of it that thinks first,
and the synthetic image task resized in Qwen3-VL's 32-pixel units."""

from __future__ import annotations

import pytest

from tests.conftest import BOXED_CHAIN, build_scoring_model

# `<think>x</think>\boxed{0.d}`, d uniform in 1..3: answers that repeat within a group of 4, and a `<think>` block
# that every CSRS prefix (at anchor 0.7: 6 of its 9 tokens) holds.
THINKING_CHAIN = {**{k: v for k, v in BOXED_CHAIN.items() if k not in list("456789")},
                  "Ċ": ["<think>"], "<think>": ["x"], "x": ["</think>"], "</think>": ["\\boxed"],
                  ".": ["1", "2", "3"]}


@pytest.fixture(scope="session")
def qwen3vl_model_dir(tmp_path_factory) -> str:
    from self_evolve_trl.data.tiny_qwen3vl import build_tiny_qwen3vl

    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


@pytest.fixture(scope="session")
def qwen3vl_scoring_model_dir(qwen3vl_model_dir, tmp_path_factory) -> str:
    """The tiny Qwen3-VL as a bigram model that always writes `<think>x</think>\\boxed{0.d}`, d in 1..3."""
    return build_scoring_model(qwen3vl_model_dir, tmp_path_factory.mktemp("qwen3vl-scoring"), THINKING_CHAIN)


@pytest.fixture(scope="session")
def qwen3vl_processor(qwen3vl_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(qwen3vl_model_dir, padding_side="left")


@pytest.fixture
def qwen3vl_dataset(qwen3vl_processor):
    """`make(size)`: the synthetic image task, its images resized within the tiny Qwen3-VL processor's bounds in
    32-pixel units (as the training command does)."""
    from self_evolve_trl.data import load_training_dataset, with_pixel_bounds
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.data.images import processor_patch_size, processor_pixel_bounds

    def make(size: int = 8):
        dataset = load_training_dataset(DataArguments(synthetic_size=size, instruction="Answer in \\boxed{}."))
        return with_pixel_bounds(dataset, *processor_pixel_bounds(qwen3vl_processor),
                                 processor_patch_size(qwen3vl_processor))

    return make
