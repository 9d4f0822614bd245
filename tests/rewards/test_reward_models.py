"""Reward models, as TRL's `GRPOTrainer` takes them, next to this package's reward functions; and the arguments of
TRL's trainer that this one refuses."""

import pytest
import torch

from self_evolve_trl.answers import completion_text
from self_evolve_trl.rewards import RewardError
from self_evolve_trl.rewards.consistency import soft_frequency
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


def make_trainer(model_dir, processor, dataset, config, **kwargs):
    return SelfEvolveGRPOTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=processor,
                                 **kwargs)


def one_batch(trainer):
    """One generation round on prompt 0 (a group of 4), in training mode: the rows' prompt and the completions."""
    trainer.model.train()
    row = trainer.train_dataset[0]
    trainer._generate_and_score_completions([row] * 4)
    return row["prompt"], [completion_text(c) for c in list(trainer._logs["completion"])[-4:]]


def scores_one_by_one(model_dir, tokenizer, prompt, completions) -> list[float]:
    """What the reward model says of each completion on its own: its score of the whole conversation, unpadded."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    scores = []
    for completion in completions:
        text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": completion}], tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            scores.append(model(input_ids=ids).logits[0, 0].item())
    return scores


def test_a_reward_model_by_path_scores_next_to_a_reward_function(reward_model_dir, tiny_model_dir, tiny_processor,
                                                                 synthetic_dataset, cpu_config):
    """A recipe's `reward_funcs` may name a reward model (a local folder here; a hub id works the same way): TRL
    loads it and its tokenizer, and it scores each completion with the prompt, as it would alone; the reward function
    next to it still gets whole groups."""
    config = cpu_config(reward_funcs=["soft_frequency", reward_model_dir], reward_weights=[1.0, 0.5])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config)
    assert isinstance(trainer.reward_funcs[1], torch.nn.Module)
    assert trainer.reward_func_names[1] == reward_model_dir.rstrip("/").split("/")[-1]
    prompt, completions = one_batch(trainer)
    rewards = trainer._last_rewards_per_func
    assert rewards[:, 0].tolist() == pytest.approx(soft_frequency(completions, 4, extractor="last_number"))
    expected = scores_one_by_one(reward_model_dir, tiny_processor.tokenizer, prompt, completions)
    assert rewards[:, 1].tolist() == pytest.approx(expected, abs=1e-5)
    assert len(set(expected)) > 1
    logged = trainer._metrics["train"][f"rewards/{trainer.reward_func_names[1]}/mean"][-1]
    assert logged == pytest.approx(sum(expected) / 4, abs=1e-5)


def test_a_reward_model_module_with_its_processing_class(reward_model_dir, tiny_model_dir, tiny_processor,
                                                         synthetic_dataset, cpu_config):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(reward_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), cpu_config(reward_funcs=["format"]),
                           reward_funcs=[model, "format"], reward_processing_classes=[tokenizer, None])
    assert trainer.reward_processing_classes[0] is tokenizer
    prompt, completions = one_batch(trainer)
    expected = scores_one_by_one(reward_model_dir, tokenizer, prompt, completions)
    assert trainer._last_rewards_per_func[:, 0].tolist() == pytest.approx(expected, abs=1e-5)


def test_a_reward_model_takes_no_keyword_arguments(reward_model_dir, tiny_model_dir, tiny_processor,
                                                   synthetic_dataset, cpu_config):
    config = cpu_config(reward_funcs=[reward_model_dir], reward_kwargs={reward_model_dir: {"scale": 2}})
    with pytest.raises(RewardError, match="a reward model takes no keyword arguments"):
        make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tools": [len]}, "SelfEvolveGRPOTrainer does not take tools: tool-calling rollouts are not supported"),
        ({"environment_factory": object}, "SelfEvolveGRPOTrainer does not take environment_factory: environments"),
        ({"rollout_func": lambda prompts, trainer: {}},
         "reproducible_generation generates with the trainer's own rollout_func; pass a rollout_func or set "
         "reproducible_generation, not both."),
    ],
    ids=["tools", "environment_factory", "rollout_func"],
)
def test_arguments_the_trainer_refuses(kwargs, message, tiny_model_dir, tiny_processor, synthetic_dataset,
                                       cpu_config):
    config = cpu_config(reproducible_generation=True)
    with pytest.raises(ValueError, match=message):
        make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config, **kwargs)


def test_a_plain_grpo_config_is_refused(tiny_model_dir, tiny_processor, synthetic_dataset, tmp_path):
    from trl import GRPOConfig

    config = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(TypeError, match="args must be a SelfEvolveConfig .* got GRPOConfig"):
        make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config)


def test_check_takes_a_reward_model_without_keyword_arguments(reward_model_dir, cpu_config):
    from self_evolve_trl.check import reward_problems

    assert reward_problems(cpu_config(reward_funcs=["soft_frequency", reward_model_dir])) == []
    problems = reward_problems(cpu_config(reward_funcs=[reward_model_dir], reward_kwargs={reward_model_dir: {"a": 1}}))
    assert [(p.area, p.message) for p in problems] == [
        (f"reward_kwargs[{reward_model_dir!r}]", "a reward model takes no keyword arguments.")]
