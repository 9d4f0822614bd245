"""TTRL's reward and larger-vote diagnostics on hand-made groups and extra samples, and its settings."""

import math

import pytest

from self_evolve_trl.errors import ConfigError
from self_evolve_trl.rewards import get_reward_function
from self_evolve_trl.rewards.consistency import majority_vote, soft_frequency
from self_evolve_trl.ttrl import larger_vote_metrics, larger_votes, ttrl_setting_problems, ttrl_vote


def boxed(*answers):
    return [f"so \\boxed{{{a}}}" if a is not None else "no answer" for a in answers]


def test_the_extra_samples_decide_the_majority():
    """Trained 4 say 2, 2, 3, 3; the 8 extra say 3: the majority of 12 is 3 (G alone would tie, and 2 came first)."""
    group = boxed(2, 2, 3, 3)
    extra = [boxed(3, 3)] * 4  # M = 8, M / G = 2 per completion
    assert majority_vote(group, 4) == [1.0, 1.0, 0.0, 0.0]
    assert ttrl_vote(group, 4, extra) == [0.0, 0.0, 1.0, 1.0]
    assert ttrl_vote(group, 4, extra, soft=True) == pytest.approx([2 / 12, 2 / 12, 10 / 12, 10 / 12])
    assert ttrl_vote(group, 4, extra, soft=True, power=2) == pytest.approx([(2 / 12) ** 2] * 2 + [(10 / 12) ** 2] * 2)
    # p_max = 10/12 > 0.8: the hard branch
    assert ttrl_vote(group, 4, extra, soft=True, hard_threshold=0.8) == [0.0, 0.0, 1.0, 1.0]
    assert ttrl_vote(group, 4, extra, soft=True, hard_threshold=0.9) == pytest.approx([2 / 12] * 2 + [10 / 12] * 2)


def test_a_groups_extra_samples_are_all_of_its_shares_together():
    """How the M extra samples are spread over the group's completions does not matter; other groups' do not count."""
    groups = boxed(2, 2, 3, 3) + boxed(5, 5, 5, 7)
    spread = [boxed(3, 3)] * 4 + [boxed(7, 7)] * 4
    lumped = [boxed(*[3] * 8), [], [], []] + [[], [], [], boxed(*[7] * 8)]
    expected = [0.0, 0.0, 1.0, 1.0] + [0.0, 0.0, 0.0, 1.0]  # group 2: 3 fives vs 9 sevens
    assert ttrl_vote(groups, 4, spread) == ttrl_vote(groups, 4, lumped) == expected
    (v, w) = larger_votes(groups, 4, spread, extractor="boxed")
    assert (v.size, v.majority_answer, v.p_max) == (12, "3", 10 / 12)
    assert (w.size, w.majority_answer, w.p_max) == (12, "7", 9 / 12)


def test_abstentions_equivalence_and_ties():
    group = boxed("1/2", None, 3, 3)
    extra = [boxed("0.5", "\\frac{1}{2}"), boxed(None, None), [], []]  # 1/2 three times, 3 twice, 3 abstentions
    assert ttrl_vote(group, 4, extra) == [1.0, 0.0, 0.0, 0.0]
    assert ttrl_vote(group, 4, extra, soft=True) == pytest.approx([3 / 8, 0.0, 2 / 8, 2 / 8])
    # the abstentions as the class "None" (released behaviour): 4 of 8, the majority, rewarded 1
    abstaining = [boxed(None, None), boxed(None), [], []]
    assert ttrl_vote(group, 4, abstaining, abstain_as_answer=True) == [0.0, 1.0, 0.0, 0.0]
    tie = [boxed(2, 3), [], [], []]  # 2 and 3 three times each
    assert ttrl_vote(boxed(2, 3, 3, 2), 4, tie, tie="none") == [0.0] * 4  # a tie has no majority
    assert ttrl_vote(boxed(2, 3, 3, 2), 4, tie) == [1.0, 0.0, 0.0, 1.0]  # tie "first": 2 came first


def test_without_extra_samples_it_is_the_consistency_rewards():
    group = boxed(2, 2, "2.0", 5, None, 5)
    none = [[]] * 6
    assert ttrl_vote(group, 3, none) == majority_vote(group, 3)
    assert ttrl_vote(group, 3, none, soft=True) == pytest.approx(soft_frequency(group, 3))


def test_the_completions_table_columns():
    logged = {}
    ttrl_vote(boxed(2, 2, 3, 3), 4, [boxed(3, None), boxed(3, 3), [], boxed(3, 3)],
              log_extra=lambda name, values: logged.__setitem__(name, values))
    assert logged == {"vote_majority": ["3"] * 4, "vote_answers": ["3 | ", "3 | 3", "", "3 | 3"]}


def test_bad_inputs():
    with pytest.raises(ValueError, match="3 entries for 4 completions"):
        ttrl_vote(boxed(1, 1, 1, 1), 4, [[]] * 3)
    with pytest.raises(ValueError, match="whole groups"):
        ttrl_vote(boxed(1, 1, 1), 2, [[]] * 3)


def test_registered_and_needs_the_extra_votes():
    reward = get_reward_function("ttrl_vote", soft=True)
    assert reward.required_inputs == ("vote_completions",)
    rewards = reward(boxed(2, 2, 3, 3), 4, vote_completions=[boxed(3, 3)] * 4)
    assert rewards == pytest.approx([2 / 12] * 2 + [10 / 12] * 2)


def test_larger_vote_metrics_by_hand():
    groups = boxed(2, 2, 3, 3) + boxed(4, 4, 5, 6)
    extra = [boxed(3, 3)] * 4 + [boxed(5, 6), [], [], boxed(6, 5)]  # group 2: 4 twice, 5 three times, 6 three times
    votes = larger_votes(groups, 4, extra)
    metrics = larger_vote_metrics(votes, 4, ["3", "4"])
    assert metrics["ttrl/majority_ratio"] == pytest.approx([10 / 12, 3 / 8])
    # group 1: majority 3 is right; rewards 0,0,1,1 = truth. Group 2: majority 5 (first of the tied 5 and 6) is wrong;
    # rewards 0,0,1,0 vs truth 1,1,0,0: only the last (the 6) agrees
    assert metrics["ttrl/pseudo_label_accuracy"] == [1.0, 0.0]
    assert metrics["ttrl/maj_at_n"] == [1.0, 0.0]
    assert metrics["ttrl/reward_accuracy"] == [1.0, 0.25]
    tied = larger_vote_metrics(larger_votes(groups, 4, extra, tie="none"), 4, [None, "4"])
    assert math.isnan(tied["ttrl/pseudo_label_accuracy"][0]) and math.isnan(tied["ttrl/pseudo_label_accuracy"][1])
    assert tied["ttrl/maj_at_n"][1] == 0.0 and tied["ttrl/reward_accuracy"][1] == 0.5  # no majority: all rewards 0
    assert set(larger_vote_metrics(votes, 4, None)) == {"ttrl/majority_ratio"}


def test_vote_samples_settings(cpu_config):
    assert cpu_config(vote_samples=8, num_generations=4).vote_samples == 8
    with pytest.raises(ConfigError, match="vote_samples \\(6\\) must be a multiple of num_generations \\(4\\)"):
        cpu_config(vote_samples=6, num_generations=4)
    with pytest.raises(ConfigError, match="num_generations_eval"):
        cpu_config(vote_samples=4, num_generations=4, num_generations_eval=8)
    with pytest.raises(ConfigError, match="must be an integer >= 0"):
        cpu_config(vote_samples=-4)
    config = cpu_config(num_generations=4)
    config.vote_samples = 10
    assert [p.area for p in ttrl_setting_problems(config)] == ["vote_samples"]
    assert "use vote_samples: 8" in str(ttrl_setting_problems(config)[0])
