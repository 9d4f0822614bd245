"""The trainer on the tiny Qwen2.5-VL: training steps, advantages used, rewards on whole groups."""

import pytest
import torch

from self_evolve_trl.advantages import group_advantages
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


OUR_METRICS = [
    "self_consistency/majority_ratio",
    "self_consistency/high_confidence_share",
    "self_consistency/answer_entropy",
    "self_consistency/distinct_answers",
    "self_consistency/abstention_rate",
    "self_consistency/format_violation_rate",
    "labels/rollout_accuracy",
    "labels/pseudo_label_accuracy",
    "advantages/mean",
    "advantages/abs_max",
    "rewards/soft_frequency/mean",
]


def test_module_docstring_names_every_overridden_method():
    """The trainer module's docstring lists what is overridden of TRL's trainer, all of it."""
    import self_evolve_trl.training.trainer as module
    from trl import GRPOTrainer

    overridden = [name for name, value in vars(SelfEvolveGRPOTrainer).items() if callable(value) and hasattr(GRPOTrainer, name)]
    assert len(overridden) == 9 and "Nine methods of TRL's trainer are overridden, nothing else." in module.__doc__
    assert [name for name in overridden if f"`{name}`" not in module.__doc__] == []


def make_trainer(model_dir, processor, dataset, config, **kwargs):
    return SelfEvolveGRPOTrainer(
        model=model_dir, args=config, train_dataset=dataset, processing_class=processor, **kwargs
    )


@pytest.mark.parametrize("advantage", ["grpo", "centered", "lse"])
def test_two_steps_change_parameters_and_log_our_metrics(advantage, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    config = cpu_config(advantage=advantage, reward_funcs=["soft_frequency", "format"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(8), config)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    # the update reached the language model and the output head (the vision tower may get no gradient here)
    assert any("language_model" in n for n in changed) and any("lm_head" in n for n in changed)
    steps = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(steps) == 2
    for key in OUR_METRICS:
        assert all(key in entry for entry in steps), key
    assert trainer.state.log_history[-1]["train_loss"] is not None


def test_logged_advantages_are_the_ones_used(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    """The advantages in the batch equal group_advantages(lse) of the weighted rewards, and TRL's logs show them."""
    config = cpu_config(advantage="lse", lse_tau=0.5, reward_funcs=["soft_frequency", "format"], reward_weights=[1.0, 0.5])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config)
    trainer.model.train()
    batch = [trainer.train_dataset[i] for i in [0, 0, 0, 0]]
    output = trainer._generate_and_score_completions(batch)
    rewards = (trainer._last_rewards_per_func * torch.tensor([1.0, 0.5])).sum(dim=1)
    expected = group_advantages(rewards, 4, mode="lse", tau=0.5)
    assert torch.allclose(output["advantages"], expected)
    assert list(trainer._logs["advantages"]) == pytest.approx(expected.tolist())
    assert trainer._metrics["train"]["advantages/abs_max"][-1] == pytest.approx(expected.abs().max().item())


def test_a_recipes_own_advantage_mode_is_the_one_used(tmp_path, monkeypatch, tiny_model_dir, tiny_processor,
                                                     synthetic_dataset, cpu_config):
    """`advantage: module:function` (docs/architecture.md, "Registries"): the trainer's advantages are that function's,
    on the weighted rewards, clipped by `clip_advantage`."""
    (tmp_path / "flat_advantage_mode.py").write_text(
        "def flat(rewards, valid, settings):\n    return rewards * 0 + 5.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = cpu_config(advantage="flat_advantage_mode:flat", clip_advantage=1.5, reward_funcs=["soft_frequency"])
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config)
    trainer.model.train()
    output = trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)
    assert output["advantages"].tolist() == [1.5] * 4  # 5.0 for every completion, clipped (lse would give 0 here)
    assert list(trainer._logs["advantages"]) == [1.5] * 4


def test_labels_never_reach_rewards(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    seen = {}

    def spy(completions, **kwargs):
        seen.update(kwargs)
        return [0.0] * len(completions)

    config = cpu_config(max_steps=1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config, reward_funcs=[spy])
    trainer.train()
    assert "uid" in seen and "group_size" in seen and "prompts" in seen
    assert "label" not in seen and "images" not in seen
    assert not any(isinstance(v, list) and v and isinstance(v[0], str) and v[0].isdigit() and k != "uid"
                   for k, v in seen.items() if k not in ("completions", "completion_ids"))
    # the label metrics were computed from the hidden column
    assert "labels/rollout_accuracy" in trainer.state.log_history[0]


def test_no_labels_no_label_metrics(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    dataset = synthetic_dataset(4).remove_columns("label")
    trainer = make_trainer(tiny_model_dir, tiny_processor, dataset, cpu_config(max_steps=1))
    trainer.train()
    entry = trainer.state.log_history[0]
    assert "self_consistency/majority_ratio" in entry
    assert not any(k.startswith("labels/") for k in entry)


def test_nonfinite_rewards_never_reach_the_loss(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    def broken(completions, **kwargs):
        return [float("inf"), 1.0, float("nan"), 0.0] * (len(completions) // 4)

    trainer = make_trainer(
        tiny_model_dir, tiny_processor, synthetic_dataset(4), cpu_config(max_steps=1, advantage="centered"),
        reward_funcs=[broken],
    )
    trainer.model.train()
    output = trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)
    assert torch.isfinite(output["advantages"]).all()
    assert output["advantages"].tolist() == pytest.approx([0.0, 0.5, 0.0, -0.5])
    assert trainer._metrics["train"]["rewards/nonfinite_count"][-1] == 2.0  # inf and a float NaN (None is not counted)


def test_math_verify_errors_are_counted_in_a_metric(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config,
                                                    monkeypatch):
    """A comparison that raises counts as "not equal" and shows in `answers/math_errors` (docs/math.md, "Answers")."""
    from self_evolve_trl import answers

    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4),
                           cpu_config(max_steps=1, answer_extractor="boxed", reward_funcs=["soft_frequency"]))
    group = ["\\boxed{3y+3}", "\\boxed{3(y+1)}", "\\boxed{3y+3}", "\\boxed{4}"]
    rows = [{"completion": c, "label": None, "prompt": None, "completion_ids": None, "columns": {}, "extras": {},
             "kind": "image"}
            for c in group]
    trainer.model.train()
    scored = trainer._score_groups(rows, [], [])
    assert scored["metrics"]["answers/math_errors"] == 0.0 and scored["metrics"]["answers/math_timeouts"] == 0.0
    assert scored["rewards"] == [[0.75], [0.75], [0.75], [0.25]]  # 3y+3 = 3(y+1)

    def broken(*args, **kwargs):
        raise RuntimeError("math-verify broke")

    monkeypatch.setattr(answers.verify, "mv_verify", broken)
    group = ["\\boxed{5z+10}", "\\boxed{5(z+2)}", "\\boxed{5z+10}", "\\boxed{4}"]
    rows = [{**row, "completion": c} for row, c in zip(rows, group)]
    scored = trainer._score_groups(rows, [], [])
    assert scored["metrics"]["answers/math_errors"] >= 1.0
    assert scored["rewards"] == [[0.5], [0.25], [0.5], [0.25]]  # the failed comparison counted as "not equal"


@pytest.mark.parametrize("training", [True, False])
def test_grpo_keeps_trls_normalize_then_sum(training, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    """With `advantage: grpo` and TRL's `multi_objective_aggregation: normalize_then_sum`, the advantages are TRL's:
    each reward normalised within its group, weighted, summed, then normalised over the batch. In eval the batch
    (8 completions here) may be larger than a training generation batch (4)."""
    config = cpu_config(advantage="grpo", multi_objective_aggregation="normalize_then_sum",
                        reward_funcs=["soft_frequency", "format"], reward_weights=[1.0, 0.5],
                        per_device_eval_batch_size=8, num_generations_eval=4)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config)
    trainer.model.train(training)
    output = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in [0, 0, 0, 0, 1, 1, 1, 1]])
    grouped = trainer._last_rewards_per_func.view(2, 4, 2)
    mean, std = grouped.mean(dim=1, keepdim=True), grouped.std(dim=1, keepdim=True)
    summed = (((grouped - mean) / (std + 1e-4)).view(8, 2) * torch.tensor([1.0, 0.5])).sum(dim=1)
    expected = (summed - summed.mean()) / (summed.std() + 1e-4)
    assert output["advantages"].shape == (8,)
    assert torch.allclose(output["advantages"], expected, atol=1e-5)
    mode = "train" if training else "eval"
    assert trainer._metrics[mode]["advantages/abs_max"][-1] == pytest.approx(expected.abs().max().item(), abs=1e-5)


def test_clip_advantage_applies_to_trls_normalize_then_sum(tiny_model_dir, tiny_processor, synthetic_dataset,
                                                            cpu_config):
    """`clip_advantage` clamps TRL's own GDPO advantages too: rewards 0, 1, 2, 3 give (unclipped)
    [-1.16, -0.39, 0.39, 1.16], clipped to 0.1."""
    def ranks(completions, **kwargs):
        return [0.0, 1.0, 2.0, 3.0] * (len(completions) // 4)

    config = cpu_config(advantage="grpo", multi_objective_aggregation="normalize_then_sum", clip_advantage=0.1)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config, reward_funcs=[ranks])
    trainer.model.train()
    output = trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)
    assert output["advantages"].tolist() == pytest.approx([-0.1, -0.1, 0.1, 0.1])
    assert list(trainer._logs["advantages"]) == pytest.approx([-0.1, -0.1, 0.1, 0.1])
    assert trainer._metrics["train"]["advantages/abs_max"][-1] == pytest.approx(0.1)


def test_diagnostics_vote_as_the_rewards_voted(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    """A reward that binds its own extractor (here `boxed`, the config's is `last_number`): the diagnostics describe
    its vote, majority 2 of 3/4 (by the last number it would be 7 of 2/4, a wrong pseudo-label)."""
    config = cpu_config(max_steps=1, reward_funcs=["majority_vote"],
                        reward_kwargs={"majority_vote": {"extractor": "boxed"}})
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), config)
    group = ["\\boxed{2} 7", "\\boxed{2} 8", "\\boxed{2} 9", "\\boxed{3} 7"]
    rows = [{"completion": c, "label": "2", "prompt": None, "completion_ids": None, "columns": {}, "extras": {},
             "kind": "image"}
            for c in group]
    trainer.model.train()
    scored = trainer._score_groups(rows, [], [])
    assert scored["rewards"] == [[1.0], [1.0], [1.0], [0.0]]
    metrics = scored["metrics"]
    assert metrics["self_consistency/majority_ratio"] == [0.75]
    assert metrics["self_consistency/distinct_answers"] == [2.0]
    assert metrics["labels/pseudo_label_accuracy"] == [1.0] and metrics["labels/reward_accuracy"] == [1.0]
    assert scored["logged_extra"]["answer"] == ["2", "2", "2", "3"]
