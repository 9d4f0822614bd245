"""TTRL in training: the provider draws M extra samples per prompt with the trainer's generation, the reward votes
with them, the loss never sees them, and the recipe on one and two processes."""


import pandas as pd
import pytest
from trl.data_utils import prepare_multimodal_messages

from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer
from self_evolve_trl.ttrl import ttrl_vote
from tests.conftest import launcher


@pytest.fixture
def ttrl_trainer(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    """`make(**overrides)`: a trainer with the `ttrl_vote` reward on 4 synthetic rows (G = 4, M = 8 by default)."""

    def make(**overrides):
        config = cpu_config(reward_funcs=["ttrl_vote"], **{"vote_samples": 8, **overrides})
        return SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, train_dataset=synthetic_dataset(4),
                                     processing_class=tiny_processor)

    return make


def spy_generation(trainer):
    """Record every `_generate_single_turn` call: (prompt token ids, completion token ids, num_generations)."""
    calls, generate = [], trainer._generate_single_turn

    def spy(prompt_ids, images, fields, num_generations, **kwargs):
        ids, logprobs = generate(prompt_ids, images, fields, num_generations, **kwargs)
        calls.append(([list(p) for p in prompt_ids], [list(c) for c in ids], num_generations))
        return ids, logprobs

    trainer._generate_single_turn = spy
    return calls


def prompts_of(trainer, n):
    return [prepare_multimodal_messages(trainer.train_dataset[i]["prompt"], images=trainer.train_dataset[i]["images"])
            for i in range(n)]


def test_the_provider_draws_m_samples_per_prompt_once(ttrl_trainer):
    """8 completions = 2 groups of G = 4: each completion draws M / G = 2, so each prompt gets M = 8 extra samples
    in one generation call, from that prompt."""
    trainer = ttrl_trainer(max_completion_length=4)
    provider = trainer.reward_input_providers["vote_completions"]
    calls = spy_generation(trainer)
    prompts = [p for p in prompts_of(trainer, 2) for _ in range(4)]
    rows = [{"prompt": p} for p in prompts]
    texts = provider(rows, prompts, ["x"] * 8, [[1]] * 8)
    assert [len(t) for t in texts] == [2] * 8
    ((prompt_ids, completions, n),) = calls  # one call for the whole batch, n = M / G per prompt row
    assert n == 2 and len(prompt_ids) == len(completions) == 16
    first, second = (trainer._tokenize_prompts([p])[0][0] for p in prompts_of(trainer, 2))
    assert prompt_ids == [list(first)] * 8 + [list(second)] * 8  # group 1's 8 extra samples, then group 2's
    assert all(len(c) <= 4 for c in completions)


def test_seeded_samples_depend_on_the_group_and_sample_number_only(ttrl_trainer):
    """Under `reproducible_generation`, completion r of a group draws samples r·M/G …; the same samples whatever the
    process: a process holding the second half of a group draws what a single process draws for it."""
    trainer = ttrl_trainer(max_completion_length=6, reproducible_generation=True, vote_samples=4)
    provider = trainer.reward_input_providers["vote_completions"]
    prompts = [prompts_of(trainer, 1)[0]] * 4
    whole = provider([{}] * 4, prompts, ["x"] * 4, [[1]] * 4)
    del trainer._generation_batches  # the same generation batch again (not the step's second)
    trainer.accelerator.state.__dict__["process_index"] = 1  # the second of 2 processes, 2 rows each
    try:
        half = provider([{}] * 2, prompts[:2], ["x"] * 2, [[1]] * 2)
    finally:
        del trainer.accelerator.state.__dict__["process_index"]
    assert [len(t) for t in whole] == [1] * 4 and half == whole[2:]


def test_rewards_come_from_the_larger_vote(ttrl_trainer):
    """Hand-made trained completions, extra samples drawn by the tiny model: the rewards are `ttrl_vote` over the
    G completions and the drawn M."""
    trainer = ttrl_trainer(max_completion_length=4)
    provider = trainer.reward_input_providers["vote_completions"]
    drawn, draw = [], provider.__call__
    trainer.reward_input_providers["vote_completions"] = lambda *a: drawn.append(draw(*a)) or drawn[-1]
    completions = ["2", "2", "3", "3"]
    inputs = [trainer.train_dataset[0]] * 4
    prompts = [prepare_multimodal_messages(row["prompt"], images=row["images"]) for row in inputs]
    rewards = trainer._calculate_rewards(inputs, prompts, completions, [[1]] * 4)
    (votes,) = drawn
    assert [len(v) for v in votes] == [2] * 4
    assert rewards[:, 0].tolist() == ttrl_vote(completions, 4, votes, extractor="last_number")


def test_training_rewards_against_the_larger_vote_and_never_trains_on_it(ttrl_trainer):
    """The extra samples say "7": the larger vote has a majority (7, 8 of 12) where the G trained completions alone
    have none (the untrained tiny model does not answer); TRL's loss gets the rollout's completions only; the label
    column never reaches the provider."""
    trainer = ttrl_trainer(max_completion_length=6, max_steps=1, log_completions=True)
    provider = trainer.reward_input_providers["vote_completions"]
    seen, losses, calls = [], [], spy_generation(trainer)

    def voting_seven(inputs, prompts, completions, completion_ids_list):
        seen.append([set(row) for row in inputs])
        provider(inputs, prompts, completions, completion_ids_list)  # the real draws (recorded by the spy)
        return [["7"] * 2 for _ in prompts]  # M = 8 votes for 7 in every group

    trainer.reward_input_providers["vote_completions"] = voting_seven
    compute_loss = trainer._compute_loss

    def spy_loss(model, inputs):
        losses.append([row[m.bool()].tolist() for row, m in zip(inputs["completion_ids"], inputs["completion_mask"])])
        return compute_loss(model, inputs)

    trainer._compute_loss = spy_loss
    trainer.train()
    assert seen and all("label" not in keys for row in seen for keys in row)
    (_, rollout, _), (_, extra, n) = calls
    assert len(rollout) == 4 and len(extra) == 8 and n == 2
    (trained,) = losses
    assert sorted(trained) == sorted(rollout) and not any(ids in trained for ids in extra)
    (entry,) = [entry for entry in trainer.state.log_history if "rewards/ttrl_vote/mean" in entry]
    assert entry["self_consistency/majority_ratio"] == 0.0 and entry["ttrl/majority_ratio"] == pytest.approx(8 / 12)
    for key in ("ttrl/pseudo_label_accuracy", "ttrl/maj_at_n", "ttrl/reward_accuracy", "ttrl/seconds",
                "ttrl/completion_length"):
        assert key in entry, key
    assert 0 < entry["ttrl/completion_length"] <= 6


# ----------------------------------------------------------------------------------------------------------------
# The recipe, one and two processes


def run_recipe(run, python, output_dir, nproc):
    args = ["recipes/tiny-cpu-ttrl.yaml", "--max_steps", "2", "--output_dir", str(output_dir), "--log_completions",
            "true", "--save_strategy", "no", "--reproducible_generation", "true", "--num_generations", "4",
            "--vote_samples", "4", "--per_device_train_batch_size", str(4 // nproc), "--max_completion_length", "12",
            "--synthetic_size", "8"]
    env = {"SELF_EVOLVE_TRL_CACHE": str(output_dir.parent / "cache")}
    result = run([*launcher(python, nproc), "-m", "self_evolve_trl.cli", *args], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return [pd.read_parquet(output_dir / "completions" / f"completions_{s:05d}.parquet") for s in (1, 2)]


@pytest.mark.slow
def test_recipe_two_processes_give_the_same_rewards_as_one(run, python, tmp_path):
    """Groups of 4 split over 2 processes (2 completions each, gloo): same completions, extra votes and rewards."""
    one = run_recipe(run, python, tmp_path / "one", 1)
    two = run_recipe(run, python, tmp_path / "two", 2)
    voted = 0
    for a, b in zip(one, two):
        assert len(a) == len(b) == 4
        assert list(a["completion"].astype(str)) == list(b["completion"].astype(str))
        assert list(a["vote_answers"]) == list(b["vote_answers"])
        assert list(a["vote_majority"]) == list(b["vote_majority"])
        assert a["ttrl_vote"].tolist() == b["ttrl_vote"].tolist()
        assert sorted(set(b["process"])) == [0, 1]
        voted += sum(bool(answer) for x in a["vote_answers"] for answer in x.split(" | "))
    assert voted > 0  # some extra samples did produce answers, so the comparison means something


def test_tiny_ttrl_recipe_trains_two_steps(run, python, tmp_path):
    out = tmp_path / "run"
    result = run([python, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-ttrl.yaml", "--max_steps", "2",
                  "--output_dir", str(out), "--log_completions", "true"],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run summary: 2 steps" in result.stdout and (out / "summary.json").exists()
    for step in (1, 2):
        table = pd.read_parquet(out / "completions" / f"completions_{step:05d}.parquet")
        assert len(table) == 8 and set(table["ttrl_vote"]) <= {0.0, 1.0}
        assert all(len(x.split(" | ")) == 1 for x in table["vote_answers"])  # M / G = 8 / 8 extra samples each
        assert table["vote_majority"].nunique() == 1  # one prompt per step: one larger vote


def test_ttrl_7b_recipe_settings():
    from self_evolve_trl.cli import parse_recipe

    _, config, model_args = parse_recipe(["recipes/geoqa-ttrl.yaml", "--bf16", "false", "--use_cpu", "true"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config.reward_funcs == ["ttrl_vote"] and config.advantage == "grpo"
    assert (config.num_generations, config.vote_samples) == (32, 32)  # TTRL: 64 votes, 32 trained
    assert config.use_vllm and config.vllm_mode == "server"
