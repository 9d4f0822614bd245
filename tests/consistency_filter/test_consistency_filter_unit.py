"""The consistency filter on hand-made groups: which groups are dropped (exact boundaries), what the loss inputs
become, and the settings' rule (docs/math.md#consistency-filter)."""

import pytest
import torch

from self_evolve_trl.consistency_filter import (
    FILTER_LOSS_TYPES,
    consistency_filter_setting_problems,
    filter_batch,
    filters_groups,
    kept_groups,
)
from self_evolve_trl.errors import ConfigError
from self_evolve_trl.voting import vote_groups

# ----------------------------------------------------------------------------------------------------------------
# Which groups are kept


def ratios_of(groups, **settings):
    return [vote.p_max for vote in vote_groups([c for g in groups for c in g], len(groups[0]), **settings)]


def test_majority_ratios_of_hand_made_groups_decide():
    groups = [
        ["\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "\\boxed{1}"],  # unanimous: 4/4
        ["\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "\\boxed{2}"],  # 3/4
        ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}", "\\boxed{3}"],  # 2/4
        ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"],  # 1/4
        ["no answer", "none", "\\boxed{}", "."],  # every completion abstains: 0
    ]
    ratios = ratios_of(groups)
    assert ratios == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert kept_groups(ratios, 0.5, 0.75) == [False, True, True, False, False]  # both bounds inclusive
    assert kept_groups(ratios, min_consistency=0.5) == [True, True, True, False, False]
    assert kept_groups(ratios, max_consistency=0.75) == [False, True, True, True, True]
    assert kept_groups(ratios, 0.0, 1.0) == [True] * 5  # the widest bounds drop nothing, abstaining groups included
    assert kept_groups(ratios) == [True] * 5


def test_exact_boundaries_with_shares_that_are_not_binary_fractions():
    """c/G equals the same decimal written in a recipe: 3/10 is kept by min 0.3, 7/10 by max 0.7."""
    ratios = [c / 10 for c in range(11)]
    kept = kept_groups(ratios, 0.3, 0.7)
    assert [r for r, k in zip(ratios, kept) if k] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert kept_groups([0.2999999], 0.3) == [False] and kept_groups([0.7000001], None, 0.7) == [False]


def test_the_vote_counts_equivalent_answers_and_follows_the_answer_settings():
    group = [["\\boxed{1/2}", "\\boxed{0.5}", "\\boxed{3}", "no answer"]]
    assert ratios_of(group) == [0.5]  # 1/2 and 0.5 are one class under match="math"
    assert ratios_of(group, match="exact") == [0.25]
    assert ratios_of(group, abstain_as_answer=True) == [0.5]  # "None" is one of 3 classes: 1 of 4
    assert ratios_of([["x", "y", "z", "\\boxed{3}"]], abstain_as_answer=True) == [0.75]  # 3 "None" answers


# ----------------------------------------------------------------------------------------------------------------
# What the loss receives


def test_filter_batch_zeroes_advantages_and_masks_and_recounts_tokens():
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0])  # 3 groups of 2, every process's rows
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])  # this process: rows 3..5 (start 3)
    output = {"completion_mask": mask.clone(), "num_items_in_batch": torch.tensor(99)}
    gathered = []

    def gather(x):  # another process holds 5 kept tokens
        gathered.append(int(x))
        return torch.stack([x, torch.tensor(5)])

    result = filter_batch(output, advantages, [True, False, True], 2, 3, gather)
    assert result.tolist() == [1.0, -1.0, 0.0, 0.0, 2.0, -2.0]
    assert output["completion_mask"].tolist() == [[0, 0, 0], [1, 1, 1], [1, 0, 0]]  # row 3 is group 1's
    assert gathered == [4] and int(output["num_items_in_batch"]) == 4 + 5
    assert advantages.tolist() == [1.0, -1.0, 0.5, -0.5, 2.0, -2.0]  # the input is not changed


def test_filter_batch_all_groups_filtered_leaves_no_token():
    output = {"completion_mask": torch.ones(4, 2, dtype=torch.long), "num_items_in_batch": torch.tensor(8)}
    result = filter_batch(output, torch.ones(4), [False, False], 2, 0, gather=lambda x: x)
    assert result.tolist() == [0.0] * 4 and int(output["completion_mask"].sum()) == 0
    assert int(output["num_items_in_batch"]) == 0  # TRL clamps the normaliser to >= 1: the loss is 0


def test_filter_batch_refuses_groups_that_do_not_cover_the_advantages():
    with pytest.raises(ValueError, match="2 groups of 2 for 6 advantages"):
        filter_batch({"completion_mask": torch.ones(6, 1)}, torch.zeros(6), [True, True], 2, 0, lambda x: x)


# ----------------------------------------------------------------------------------------------------------------
# Settings


class Settings:
    def __init__(self, min_consistency=None, max_consistency=None, loss_type="dapo"):
        self.min_consistency, self.max_consistency, self.loss_type = min_consistency, max_consistency, loss_type


def lines(**settings):
    return [problem.line for problem in consistency_filter_setting_problems(Settings(**settings))]


def test_setting_rule():
    assert lines() == [] and not filters_groups(Settings())
    assert lines(min_consistency=0.0, max_consistency=1.0) == [] and filters_groups(Settings(0.0, 1.0))
    assert lines(min_consistency=0.5, max_consistency=0.5) == []
    assert lines(min_consistency=-0.1) == ["min_consistency must be a fraction in [0, 1] or null, got -0.1."]
    assert lines(max_consistency=1.5) == ["max_consistency must be a fraction in [0, 1] or null, got 1.5."]
    assert lines(max_consistency=float("nan")) == ["max_consistency must be a fraction in [0, 1] or null, got nan."]
    assert lines(min_consistency="high") == ["min_consistency must be a fraction in [0, 1] or null, got 'high'."]
    (line,) = lines(min_consistency=0.8, max_consistency=0.6)
    assert line == "min_consistency must be <= max_consistency (0.6), got 0.8."
    settings = Settings(min_consistency="0.25")
    assert consistency_filter_setting_problems(settings) == [] and settings.min_consistency == 0.25  # normalised


@pytest.mark.parametrize("loss_type", ["grpo", "sapo", "dr_grpo", "luspo"])
def test_loss_types_that_count_filtered_rows_are_refused(loss_type):
    (line,) = lines(min_consistency=0.3, loss_type=loss_type)
    assert line.startswith(f"loss_type '{loss_type}' counts the completions of filtered groups")
    assert lines(loss_type=loss_type) == []  # without the filter, any loss type


@pytest.mark.parametrize("loss_type", FILTER_LOSS_TYPES)
def test_loss_types_normalised_by_kept_tokens_are_accepted(loss_type):
    assert lines(min_consistency=0.3, max_consistency=0.9, loss_type=loss_type) == []


def test_config_refuses_every_problem_at_once(cpu_config):
    with pytest.raises(ConfigError) as error:
        cpu_config(reward_funcs=["majority_vote"], min_consistency=0.9, max_consistency=0.1, loss_type="grpo")
    assert "min_consistency must be <= max_consistency (0.1), got 0.9." in str(error.value)
    assert "loss_type 'grpo' counts the completions of filtered groups" in str(error.value)
    config = cpu_config(reward_funcs=["majority_vote"], min_consistency=0.25, max_consistency=0.75)
    assert (config.min_consistency, config.max_consistency, config.loss_type) == (0.25, 0.75, "dapo")
