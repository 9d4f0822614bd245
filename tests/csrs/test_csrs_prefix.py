"""CSRS's re-inference: where completions are cut, the re-inference prompts of both modes, and their generation."""

import re

import pytest
from datasets import Dataset
from trl.data_utils import prepare_multimodal_messages

from self_evolve_trl.csrs import NEW_TURN_NEEDS_CONVERSATIONS, prefix_length
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


def test_prefix_length_both_bases():
    assert [prefix_length(n, 0.7) for n in (0, 1, 10, 20, 100)] == [0, 0, 7, 14, 70]
    assert prefix_length(100, 0.29) == 29  # not 28 from 0.29·100 = 28.999999999999996
    assert [prefix_length(n, 0.7, "max_length", 100) for n in (10, 69, 70, 71, 100)] == [10, 69, 70, 70, 70]
    assert prefix_length(10, 1.0) == 10 and prefix_length(10, 0.0) == 0
    with pytest.raises(ValueError, match="valid bases: actual_length, max_length"):
        prefix_length(10, 0.5, "tokens")


def make_trainer(model_dir, processor, dataset, config, **kwargs):
    return SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor, **kwargs)


def trainer_factory(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    """`make(eval_dataset=None, **overrides)`: a trainer with the `retrace_frequency` reward on 4 synthetic rows."""

    def make(eval_dataset=None, **overrides):
        config = cpu_config(reward_funcs=["retrace_frequency"], **overrides)
        return make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config, eval_dataset=eval_dataset)

    return make


@pytest.fixture
def csrs_trainer(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    return trainer_factory(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config)


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


def test_new_turn_needs_conversational_prompts_when_the_trainer_is_built(tiny_model_dir, tiny_processor, cpu_config):
    plain = Dataset.from_dict({"prompt": ["How many squares? Answer in \\boxed{}."] * 4})
    config = cpu_config(reward_funcs=["retrace_frequency"], retrace_mode="new_turn")
    with pytest.raises(ValueError, match=re.escape(NEW_TURN_NEEDS_CONVERSATIONS)):
        make_trainer(tiny_model_dir, tiny_processor, plain, config)
    assert "use retrace_mode 'continuation'" in NEW_TURN_NEEDS_CONVERSATIONS
    config = cpu_config(reward_funcs=["retrace_frequency"], retrace_mode="continuation")
    make_trainer(tiny_model_dir, tiny_processor, plain, config)  # continuation works on plain text
