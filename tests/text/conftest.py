"""Fixtures of the text-only tests: the tiny text-only Qwen2 causal LM, a scoring variant of it, text-only data."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def text_model_dir(tmp_path_factory) -> str:
    from self_evolve_trl.data.tiny_text import build_tiny_qwen2_text

    return build_tiny_qwen2_text(tmp_path_factory.mktemp("tiny-text-model"))


def build_text_scoring_model(model_dir: str, path) -> str:
    """The tiny text model made a bigram model that writes `\\boxed{0.d}` or a bare `0.d}` (60 % and 40 %), d
    uniform in 1..3, then ends: answers that repeat within a group of 4, a format that varies, judge scores that
    parse. Its layers add nothing to the residual stream, so the next token depends on the current one alone (as
    `tests/conftest.py`'s `build_scoring_model` for the tiny Qwen2.5-VL)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    token = tokenizer.convert_tokens_to_ids
    digits = [token(str(d)) for d in range(1, 4)]
    successors = {token("Ċ"): [token("\\boxed"), token("0")], token("\\boxed"): [token("{")], token("{"): [token("0")],
                  token("0"): [token(".")], token("."): digits, **{d: [token("}")] for d in digits},
                  token("}"): [token("<|im_end|>")]}  # "Ċ": the newline that ends the generation prompt
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for k, (state, following) in enumerate(successors.items()):
            model.model.embed_tokens.weight[state] = 0.0
            model.model.embed_tokens.weight[state, k] = 1.0  # normalised to sqrt(hidden size) = 8
            for successor in following:
                model.lm_head.weight[successor, k] = 4.0  # logit 32: the others (about 0) never come
        model.lm_head.weight[token("\\boxed"), 0] = 4.05  # greedy boxes: logit 32.4 against the bare number's 32
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def text_scoring_model_dir(text_model_dir, tmp_path_factory) -> str:
    return build_text_scoring_model(text_model_dir, tmp_path_factory.mktemp("text-scoring-model"))


@pytest.fixture(scope="session")
def text_tokenizer(text_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(text_model_dir, padding_side="left")


@pytest.fixture
def text_dataset():
    """`make(size)`: the synthetic text-only task `add` ("What is a + b?"), prepared for the trainer."""
    from self_evolve_trl.data import load_training_dataset
    from self_evolve_trl.data.arguments import DataArguments

    def make(size: int = 8):
        return load_training_dataset(DataArguments(synthetic_task="add", synthetic_size=size,
                                                   instruction="Answer in \\boxed{}."))

    return make
