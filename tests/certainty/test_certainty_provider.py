"""The `token_stats` provider on the tiny Qwen2.5-VL: its values equal a direct computation from the model's full
logits for the same prompt + completion (images included), whatever the chunking."""

import math

import pytest
import torch
from trl.data_utils import prepare_multimodal_messages

from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


@pytest.fixture
def certainty_trainer(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    def make(**overrides):
        config = cpu_config(reward_funcs=["self_certainty"], **overrides)
        return SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=synthetic_dataset(4),
                                     processing_class=tiny_processor)

    return make


def rows(trainer, n):
    """Conversational prompts with their images embedded, as TRL hands them to `_calculate_rewards`."""
    return [prepare_multimodal_messages(trainer.train_dataset[i]["prompt"], images=trainer.train_dataset[i]["images"])
            for i in range(n)]


def direct_stats(model, processor, prompt, completion_ids, temperature):
    """Entropy and KL(U ‖ p) of each completion token's next-token distribution, from the full logits of one
    unpadded prompt + completion (log_softmax over the whole vocabulary, no chunking)."""
    inputs = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    n = inputs["input_ids"].size(1)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([completion_ids])], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat(
            [inputs["mm_token_type_ids"], torch.zeros(1, len(completion_ids), dtype=torch.long)], dim=1)
    with torch.no_grad():
        logits = model(**inputs).logits[0, n - 1 : n - 1 + len(completion_ids)].float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    certainty = -math.log(logits.size(-1)) - logp.mean(-1)
    return entropy, certainty


@pytest.mark.parametrize("overrides", [{}, {"certainty_batch_size": 1, "certainty_chunk_tokens": 2,
                                            "temperature": 0.7}])
def test_provider_equals_a_direct_computation_from_the_logits(certainty_trainer, tiny_processor, overrides):
    trainer = certainty_trainer(**overrides)
    provider = trainer.reward_input_providers["token_stats"]
    prompts = rows(trainer, 3)
    completion_ids = [[15, 16, 17, 18, 19], [42], [7, 8, 9]]  # unequal lengths: the padding must not matter
    trainer.model.eval()
    stats = provider([{} for _ in prompts], prompts, ["x"] * 3, completion_ids)
    for prompt, ids, entry in zip(prompts, completion_ids, stats):
        entropy, certainty = direct_stats(trainer.model, tiny_processor, prompt, ids, trainer.temperature)
        assert len(entry["entropy"]) == len(entry["self_certainty"]) == len(ids)
        assert list(entry["entropy"]) == pytest.approx(entropy.tolist(), abs=1e-4)
        assert list(entry["self_certainty"]) == pytest.approx(certainty.tolist(), abs=1e-4)
    seconds = trainer._pending_metrics["certainty/seconds"]  # TRL's reward-metric log
    assert len(seconds) == 1 and seconds[0] > 0


def test_provider_of_empty_completions(certainty_trainer):
    trainer = certainty_trainer()
    stats = trainer.reward_input_providers["token_stats"]([{}, {}], rows(trainer, 2), ["", ""], [[], []])
    assert [{k: list(v) for k, v in entry.items()} for entry in stats] == [{"self_certainty": [], "entropy": []}] * 2


def test_one_training_step_rewards_are_the_provider_values(certainty_trainer):
    """The rewards TRL's loss gets are the mean self-certainty of each completion's tokens."""
    trainer = certainty_trainer(max_steps=1)
    provider = trainer.reward_input_providers["token_stats"]
    seen, rewards = [], []
    call, calculate = provider.__call__, trainer._calculate_rewards

    class Spy:
        def __call__(self, *args):
            seen.append(call(*args))
            return seen[-1]

    trainer.reward_input_providers["token_stats"] = Spy()

    def spy_rewards(*args):
        rewards.append(calculate(*args))
        return rewards[-1]

    trainer._calculate_rewards = spy_rewards
    trainer.train()
    (stats,), (table,) = seen, rewards
    expected = [sum(s["self_certainty"]) / len(s["self_certainty"]) for s in stats]
    assert table[:, 0].tolist() == pytest.approx(expected, abs=1e-6)
    entry = next(e for e in trainer.state.log_history if "rewards/self_certainty/mean" in e)
    assert entry["rewards/self_certainty/mean"] == pytest.approx(sum(expected) / len(expected), abs=1e-5)
