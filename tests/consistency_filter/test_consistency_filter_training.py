"""The consistency filter in training on the tiny model: the groups it drops get advantage 0 and leave TRL's loss
normalisation, it decides on the diagnostics' vote (not on a reward), it logs `consistency_filter/filtered_share`,
and the tiny CPU recipe runs through the CLI (docs/math.md#consistency-filter)."""

import json

import pandas as pd
import pytest
import torch

import self_evolve_trl.training.trainer as trainer_module
from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer
from self_evolve_trl.voting import vote, vote_groups
from tests.conftest import launcher


def completion_length(completions, **kwargs):
    """A reward that is no vote: the completion's length in characters (varies within a group)."""
    return [float(len(str(completion))) for completion in completions]


@pytest.fixture
def make(tiny_model_dir, tiny_processor, synthetic_dataset, cpu_config):
    def build(reward_funcs=(completion_length,), **overrides):
        config = cpu_config(**{"max_steps": 1, "max_completion_length": 6, **overrides})
        return SelfEvolveGRPOTrainer(model=tiny_model_dir, args=config, reward_funcs=list(reward_funcs),
                                     train_dataset=synthetic_dataset(16), processing_class=tiny_processor)

    return build


def force_ratios(trainer, ratios):
    """The main process's whole-group scoring reports these majority ratios (one per group) to the filter."""
    score = trainer._score_groups

    def scored(*args):
        result = score(*args)
        result["majority_ratios"] = list(ratios)
        return result

    trainer._score_groups = scored


def steps(trainer):
    return [entry for entry in trainer.state.log_history if "loss" in entry]


# ----------------------------------------------------------------------------------------------------------------
# What TRL's loss receives


@pytest.mark.parametrize("loss_type", ["dapo", "bnpo"])
def test_filtered_group_gets_zero_advantage_and_leaves_the_loss_normalisation(make, monkeypatch, loss_type):
    """Two groups of 4 in one micro-batch; the first (majority ratio 0.25 < 0.5) is filtered. With beta = 0 and one
    iteration the ratio is 1, so TRL's per-token loss is -A_i and the loss is -sum_i A_i n_i / N, N = the kept
    tokens only (dapo: `num_items_in_batch`; bnpo: the micro-batch's mask)."""
    trainer = make(per_device_train_batch_size=8, min_consistency=0.5, loss_type=loss_type, beta=0.0)
    force_ratios(trainer, [0.25, 1.0])
    before, generated, received = [], [], []
    filter_batch, generate, compute_loss = (trainer_module.filter_batch, trainer._generate_and_score_completions,
                                            trainer._compute_loss)

    def spy_filter(output, *args):
        before.append(output["completion_mask"].clone())
        return filter_batch(output, *args)

    def spy_generate(inputs):
        output = generate(inputs)
        generated.append({k: output[k].clone() for k in ("completion_mask", "advantages", "num_items_in_batch")})
        return output

    def spy_loss(model, inputs):
        loss = compute_loss(model, inputs)
        received.append(({k: inputs[k].clone() for k in ("completion_mask", "advantages", "num_items_in_batch")},
                         loss.detach()))
        return loss

    monkeypatch.setattr(trainer_module, "filter_batch", spy_filter)
    trainer._generate_and_score_completions, trainer._compute_loss = spy_generate, spy_loss
    trainer.train()

    (mask_before,), (output,), ((inputs, loss),) = before, generated, received
    kept_tokens = int(mask_before[4:].sum())
    assert int(mask_before[:4].sum()) > 0 and kept_tokens > 0
    assert output["completion_mask"][:4].sum() == 0 and torch.equal(output["completion_mask"][4:], mask_before[4:])
    assert output["advantages"][:4].tolist() == [0.0] * 4 and output["advantages"][4:].abs().sum() > 0
    assert int(output["num_items_in_batch"]) == kept_tokens
    # what `_compute_loss` receives (shuffled by TRL): the filtered rows carry no token and no advantage
    tokens = inputs["completion_mask"].sum(dim=1).float()
    assert int((tokens == 0).sum()) == 4 and int(tokens.sum()) == kept_tokens
    assert int(inputs["num_items_in_batch"]) == kept_tokens and inputs["advantages"][tokens == 0].abs().sum() == 0
    weighted = (inputs["advantages"] * tokens).sum()
    assert weighted.abs() > 1e-6
    assert loss.item() == pytest.approx((-weighted / kept_tokens).item(), rel=1e-5, abs=1e-7)
    assert loss.item() != pytest.approx((-weighted / int(mask_before.sum())).item(), rel=1e-3)  # not all tokens
    (entry,) = steps(trainer)
    assert entry["consistency_filter/filtered_share"] == 0.5
    assert entry["advantages/frac_zero"] >= 0.5


def test_without_bounds_nothing_is_filtered_or_logged(make):
    trainer = make(per_device_train_batch_size=8)
    force_ratios(trainer, [0.0, 1.0])
    masks = []
    compute_loss = trainer._compute_loss
    trainer._compute_loss = lambda model, inputs: (masks.append(inputs["completion_mask"].clone()),
                                                   compute_loss(model, inputs))[1]
    trainer.train()
    assert bool((masks[0].sum(dim=1) > 0).all())
    assert all("consistency_filter/filtered_share" not in entry for entry in trainer.state.log_history)


# ----------------------------------------------------------------------------------------------------------------
# The filter decides on the vote


def test_the_filter_decides_on_the_diagnostics_vote_not_on_a_reward(make, monkeypatch):
    """The length reward votes on nothing: the ratios the filter gets are the vote's with the config's answer
    settings (last_number here), the very `self_consistency/majority_ratio` values logged."""
    trainer = make(per_device_train_batch_size=8, max_steps=2, min_consistency=0.3, max_consistency=0.7)
    scored, decided = [], []
    score, kept_groups = trainer._score_groups, trainer_module.kept_groups

    def spy_score(rows, *args):
        scored.append([row["completion"] for row in rows])
        return score(rows, *args)

    def spy_kept(ratios, *bounds):
        decided.append((list(ratios), bounds))
        return kept_groups(ratios, *bounds)

    trainer._score_groups = spy_score
    monkeypatch.setattr(trainer_module, "kept_groups", spy_kept)
    trainer.train()
    assert len(scored) == len(decided) == 2
    for completions, (ratios, bounds), entry in zip(scored, decided, steps(trainer)):
        votes = vote_groups(completions, 4, extractor="last_number", match="math", abstain_as_answer=False)
        assert ratios == [v.p_max for v in votes] and bounds == (0.3, 0.7)
        assert entry["self_consistency/majority_ratio"] == pytest.approx(sum(ratios) / len(ratios))
        share = sum(not 0.3 <= r <= 0.7 for r in ratios) / len(ratios)
        assert entry["consistency_filter/filtered_share"] == pytest.approx(share)


# ----------------------------------------------------------------------------------------------------------------
# The recipe


def test_tiny_filter_recipe_trains_two_steps(run, python, tmp_path):
    out = tmp_path / "run"
    result = run([python, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-filter.yaml", "--max_steps", "2",
                  "--output_dir", str(out), "--log_completions", "true", "--save_steps", "2"],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run summary: 2 steps" in result.stdout
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    assert len(logged) == 2
    dropped_groups = 0
    for step, entry in enumerate(logged, start=1):
        table = pd.read_parquet(out / "completions" / f"completions_{step:05d}.parquet")
        assert len(table) == 16  # 2 groups of 8, in group order
        answers = [a or None for a in table["answer"]]
        ratios = [vote(answers[i : i + 8]).p_max for i in (0, 8)]
        filtered = [not 0.25 <= r <= 0.9 for r in ratios]
        assert entry["consistency_filter/filtered_share"] == sum(filtered) / 2
        dropped_groups += sum(filtered)
        for group, dropped in enumerate(filtered):
            if dropped:
                assert (table["advantage"][group * 8 : group * 8 + 8] == 0).all()
    assert 0 < dropped_groups < 4  # the seeded run drops some groups and keeps some


def recipe_history(run, python, out, nproc):
    """The logged steps of 2 seeded steps of the tiny recipe: 2 groups of 8 per step, on `nproc` processes."""
    args = ["recipes/tiny-cpu-filter.yaml", "--max_steps", "2", "--output_dir", str(out), "--save_steps", "2",
            "--reproducible_generation", "true", "--per_device_train_batch_size", str(16 // nproc)]
    command = [*launcher(python, nproc), "-m", "self_evolve_trl.cli", *args]
    result = run(command, env={"SELF_EVOLVE_TRL_CACHE": str(out.parent / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    return [entry for entry in history if "loss" in entry]


@pytest.mark.slow
def test_two_processes_filter_and_normalise_as_one(run, python, tmp_path):
    """On 2 processes each holds one group; a process whose group is dropped has no token left, and the recounted
    `num_items_in_batch` (gathered) keeps the loss and the gradient those of the 1-process run."""
    one, two = (recipe_history(run, python, tmp_path / f"p{n}", n) for n in (1, 2))
    share = "consistency_filter/filtered_share"
    assert [e[share] for e in one] == [e[share] for e in two]
    assert any(e[share] == 0.5 for e in one)  # one group of two dropped
    for a, b in zip(one, two):
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)

def test_mmr1_filter_recipe_settings():
    from self_evolve_trl.cli import parse_recipe

    data_args, config, model_args = parse_recipe(["recipes/mmr1-filter.yaml", "--bf16", "false", "--use_cpu", "true"])
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and data_args.dataset_name == "mmr1"
    assert config.reward_funcs == ["majority_vote"] and config.advantage == "grpo"
    assert (config.min_consistency, config.max_consistency, config.loss_type) == (0.3, 1.0, "dapo")  # EMPO's bounds
    assert config.use_vllm and config.vllm_mode == "server"
    assert (config.num_generations, config.temperature, config.learning_rate, config.beta) == (10, 0.7, 1e-6, 0.01)
