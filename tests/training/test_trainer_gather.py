"""What `_calculate_rewards` gathers from the processes: only the inputs some reward function reads, so that a
step sends no more than it must."""

import pytest

import self_evolve_trl.training.trainer as trainer_module
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer


@pytest.fixture
def gathered(monkeypatch):
    """Records the rows each process hands to `gather_object` for the rewards (a 1-process run gathers them as they
    are); the trainer's other gathers (the logged images) are not recorded."""
    calls = []
    original = trainer_module.gather_object

    def recording(rows):
        if rows and isinstance(rows[0], dict) and "completion" in rows[0]:
            calls.append(rows)
        return original(rows)

    monkeypatch.setattr(trainer_module, "gather_object", recording)
    return calls


def scored_batch(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config, reward_funcs):
    trainer = SelfEvolveGRPOTrainer(
        model=tiny_model_dir, args=cpu_config(max_steps=1), train_dataset=synthetic_dataset(4),
        processing_class=tiny_processor, reward_funcs=reward_funcs,
    )
    trainer.model.train()
    return trainer, trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)


def test_token_ids_and_prompts_are_not_gathered_when_no_reward_reads_them(
    gathered, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config
):
    scored_batch(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config, ["soft_frequency", "format"])
    (rows,) = gathered
    assert len(rows) == 4
    assert all(row["completion_ids"] is None and row["prompt"] is None for row in rows)
    assert all(row["completion"] for row in rows)


def test_a_reward_that_reads_token_ids_gets_them_unchanged(
    gathered, tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config
):
    seen = {}

    def length_reward(completions, completion_ids, prompts):
        seen["completion_ids"], seen["prompts"] = completion_ids, prompts
        return [float(len(ids)) for ids in completion_ids]

    trainer, output = scored_batch(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config, [length_reward])
    mask = output["completion_mask"].bool()
    expected = [ids[m].tolist() for ids, m in zip(output["completion_ids"], mask)]
    assert seen["completion_ids"] == expected
    assert all(type(i) is int for ids in seen["completion_ids"] for i in ids)
    assert trainer._last_rewards_per_func[:, 0].tolist() == [float(len(ids)) for ids in expected]
    assert seen["prompts"][0][0]["role"] == "user"
    assert {"type": "image"} in seen["prompts"][0][0]["content"]  # images stripped to placeholders
    (rows,) = gathered
    assert [row["completion_ids"].tolist() for row in rows] == expected
