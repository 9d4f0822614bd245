"""Non-finite rewards and advantages never reach the loss; they are counted per round, over the run, and reported."""

import json
import math

import pytest
import torch

from self_evolve_trl.training.summary import nonfinite_totals, write_summary
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


def make_trainer(tiny_model_dir, tiny_processor, dataset, config, reward_funcs):
    return SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=dataset, processing_class=tiny_processor,
                                 reward_funcs=reward_funcs)


def overflow_a(completions, **kwargs):
    # group 1: two rewards finite in float32 whose sum overflows; group 2: ordinary rewards
    return [3e38, 3e38, 0.0, 0.0] + [1.0, 0.0, 0.0, 0.0]


def overflow_b(completions, **kwargs):
    return [3e38, 3e38, 0.0, 0.0] + [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("advantage", ["centered", "lse", "grpo"])
def test_advantages_that_overflow_are_zeroed_and_counted(advantage, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    config = cpu_config(advantage=advantage, per_device_train_batch_size=8, reward_weights=[1.0, 1.0],
                        reward_funcs=["overflow_a", "overflow_b"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config, [overflow_a, overflow_b])
    trainer.model.train()
    output = trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4 + [trainer.train_dataset[1]] * 4)
    advantages = output["advantages"]
    assert torch.isfinite(advantages).all()
    assert trainer._metrics["train"]["rewards/nonfinite_count"][-1] == 0.0  # each reward alone is finite
    # the first group's sum is inf: its statistics are inf/NaN, and every advantage of the group is set to 0
    assert advantages[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert trainer._metrics["train"]["advantages/nonfinite_count"][-1] == 4.0
    assert trainer.nonfinite_counter.state_dict() == {"rewards": 0, "advantages": 4}
    assert advantages[4] > 0 and (advantages[5:] < 0).all()  # the other group is untouched


def broken(completions, **kwargs):
    return [float("inf"), float("nan"), 1e39, 1.0] * (len(completions) // 4)


def test_no_nonfinite_value_reaches_the_loss_in_training(tmp_path, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    config = cpu_config(max_steps=2, advantage="lse", reward_funcs=["broken"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), config, [broken])
    seen = []
    compute_loss = trainer.compute_loss

    def spy(model, inputs, *args, **kwargs):
        seen.append(inputs["advantages"].detach().clone())
        loss = compute_loss(model, inputs, *args, **kwargs)
        assert torch.isfinite(loss)
        return loss

    trainer.compute_loss = spy
    trainer.train()
    assert len(seen) == 2 and all(torch.isfinite(a).all() for a in seen)
    # inf, NaN and 1e39 (inf in float32) are unscored: only the 1.0 is valid, its lse advantage is log(1/1) + log 1 = 0
    assert all(a.tolist() == [0.0, 0.0, 0.0, 0.0] for a in seen)
    assert trainer.nonfinite_counter.state_dict() == {"rewards": 6, "advantages": 0}  # 3 per step, 2 steps
    steps = [e for e in trainer.state.log_history if "reward" in e]
    assert [e["rewards/nonfinite_count"] for e in steps] == [3.0, 3.0]
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["reward"]) for e in steps)

    text = write_summary(str(tmp_path / "run"), trainer.state.log_history, trainer.nonfinite_counter.state_dict())
    assert text.splitlines()[-1].split() == ["non-finite", "rewards", "/", "advantages", "(set", "to", "0)", "6", "/", "0"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["nonfinite"] == {"rewards": 6, "advantages": 0}


def test_summary_sums_logged_counts_without_the_run_totals():
    log = [{"step": 1, "reward": 0.1, "rewards/nonfinite_count": 2.0, "advantages/nonfinite_count": 0.0},
           {"step": 2, "reward": 0.2, "rewards/nonfinite_count": 1.0, "advantages/nonfinite_count": 4.0}]
    assert nonfinite_totals(log) == {"rewards": 3, "advantages": 4}
    assert nonfinite_totals(log, {"rewards": 7, "advantages": 0}) == {"rewards": 7, "advantages": 0}
    assert nonfinite_totals([{"step": 1, "reward": 0.1}]) is None


def test_a_reward_that_returns_a_non_number_is_named(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    def words(completions, **kwargs):
        return ["high"] * len(completions)

    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), cpu_config(reward_funcs=["words"]), [words])
    trainer.model.train()
    with pytest.raises(ValueError, match="reward function 'words' returned 'high' for completion 0; it must return numbers"):
        trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)
