"""Diagnostics on hand-made groups with known answers (docs/math.md, "Diagnostics"): exact values."""

import math
from collections import defaultdict

import pytest

from self_evolve_trl.training.diagnostics import (
    LABEL_FREE_METRICS,
    LABEL_METRICS,
    DiagnosticsByKind,
    finite_mean,
    format_pattern_of,
    group_diagnostics,
    per_group_diagnostics,
    row_kind,
    split_by_kind,
)
from self_evolve_trl.rewards import get_reward_function
from self_evolve_trl.rewards.format import DEFAULT_FORMAT_PATTERN
from self_evolve_trl.voting import vote_groups


def boxed(*answers):
    return [f"<think>work</think> \\boxed{{{a}}}" if a is not None else "<think>I give up</think>" for a in answers]


def diagnose(completions, group_size, labels=None, **kwargs):
    vote_kwargs = {k: kwargs.pop(k) for k in ("tie", "abstain_as_answer", "match") if k in kwargs}
    votes = vote_groups(completions, group_size, **vote_kwargs)
    return group_diagnostics(
        votes, completions, labels, match=vote_kwargs.get("match", "math"),
        abstain_as_answer=vote_kwargs.get("abstain_as_answer", False), **kwargs,
    )


def test_label_free_metrics_on_two_groups():
    unanimous = boxed("3", "3", "3", "3")
    unanimous[0] = "\\boxed{3}"  # right answer, but no <think>: a format violation
    split = boxed("1/2", "0.5", "7", None)  # 1/2 = 0.5: classes of 2 and 1, one abstention
    d = diagnose(unanimous + split, 4)
    assert set(d) == set(LABEL_FREE_METRICS)
    assert d["self_consistency/majority_ratio"] == (1.0 + 0.5) / 2
    assert d["self_consistency/high_confidence_share"] == 0.5
    split_entropy = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert d["self_consistency/answer_entropy"] == pytest.approx((0.0 + split_entropy) / 2)
    assert d["self_consistency/distinct_answers"] == 1.5
    assert d["self_consistency/abstention_rate"] == 1 / 8
    assert d["self_consistency/format_violation_rate"] == 2 / 8  # the missing <think> and the missing \boxed{}


def test_high_confidence_threshold_is_inclusive():
    assert diagnose(boxed("4", "4", "4", "4", "5"), 5)["self_consistency/high_confidence_share"] == 1.0  # 4/5 = 0.8
    assert diagnose(boxed("4", "4", "4", "5", "5"), 5)["self_consistency/high_confidence_share"] == 0.0  # 3/5


def test_label_metrics():
    # group 1: majority 7 (3 of 4) is right; group 2: majority 2 (3 of 4) is wrong, one sample finds 9
    completions = boxed("7", "7", "7", "1") + boxed("2", "2", "9", "2")
    d = diagnose(completions, 4, labels=["7", "9"])
    assert d["labels/pseudo_label_accuracy"] == 0.5
    assert d["labels/maj_at_g"] == 0.5
    assert d["labels/pass_at_g"] == 1.0
    assert d["labels/rollout_accuracy"] == (3 + 1) / 8
    # majority-vote reward vs true reward: group 1 agrees on all 4, group 2 on none
    assert d["labels/reward_accuracy"] == 4 / 8


def test_labels_are_compared_with_math_equivalence():
    d = diagnose(boxed("0.5", "1/2", "3", "3"), 4, labels=["\\frac{1}{2}"])  # tie: the class seen first (0.5) wins
    assert d["labels/maj_at_g"] == 1.0 and d["labels/rollout_accuracy"] == 0.5
    d = diagnose(boxed("0.5", "1/2", "3", "3"), 4, labels=["\\frac{1}{2}"], match="exact")
    assert d["labels/rollout_accuracy"] == 0.0


def test_ties():
    group = boxed("2", "3", "3", "2")
    first = diagnose(group, 4, labels=["3"], tie="first")  # "2" is seen first and wins the tie
    assert first["labels/pseudo_label_accuracy"] == 0.0 and first["labels/maj_at_g"] == 0.0
    assert first["labels/pass_at_g"] == 1.0 and first["labels/rollout_accuracy"] == 0.5
    assert first["labels/reward_accuracy"] == 0.0  # rewarded exactly the wrong half
    assert first["self_consistency/majority_ratio"] == 0.5
    none = diagnose(group, 4, labels=["3"], tie="none")  # no majority: no pseudo-label at all
    assert math.isnan(none["labels/pseudo_label_accuracy"])
    assert none["labels/maj_at_g"] == 0.0
    assert none["labels/reward_accuracy"] == 0.5  # nobody rewarded: right on the two wrong answers
    assert none["self_consistency/majority_ratio"] == 0.5  # p_max does not depend on the tie rule


def test_pseudo_label_accuracy_leaves_out_groups_without_majority_but_maj_at_g_does_not():
    completions = boxed("2", "3", "3", "2") + boxed("5", "5", "5", "1")
    d = diagnose(completions, 4, labels=["2", "5"], tie="none")
    assert d["labels/pseudo_label_accuracy"] == 1.0  # only group 2 has a majority, and it is right
    assert d["labels/maj_at_g"] == 0.5


def test_abstentions_are_not_answers():
    group = boxed(None, None, None, "5")
    d = diagnose(group, 4, labels=["5"])
    assert d["self_consistency/majority_ratio"] == 0.25
    assert d["self_consistency/distinct_answers"] == 1.0
    assert d["self_consistency/answer_entropy"] == 0.0
    assert d["self_consistency/abstention_rate"] == 0.75
    assert d["labels/maj_at_g"] == 1.0 and d["labels/rollout_accuracy"] == 0.25
    assert d["labels/reward_accuracy"] == 1.0


def test_abstain_as_answer_counts_the_none_class():
    group = boxed(None, None, None, "5")
    d = diagnose(group, 4, labels=["5"], abstain_as_answer=True)
    assert d["self_consistency/majority_ratio"] == 0.75  # "None" is the majority class
    assert d["self_consistency/distinct_answers"] == 2.0
    assert d["self_consistency/answer_entropy"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert d["self_consistency/abstention_rate"] == 0.75  # still abstentions
    assert d["labels/pseudo_label_accuracy"] == 0.0 and d["labels/maj_at_g"] == 0.0  # "None" is never right
    assert d["labels/rollout_accuracy"] == 0.25
    assert d["labels/reward_accuracy"] == 0.0


def test_a_literal_none_answer_is_an_answer_without_abstain_as_answer():
    d = diagnose(boxed("None", "None", "3", "3"), 4, labels=["None"])
    assert d["self_consistency/abstention_rate"] == 0.0
    assert d["labels/maj_at_g"] == 1.0


def test_all_abstaining_group():
    d = diagnose(boxed(None, None, None, None), 4, labels=["5"])
    assert d["self_consistency/majority_ratio"] == 0.0
    assert d["self_consistency/distinct_answers"] == 0.0
    assert d["self_consistency/answer_entropy"] == 0.0
    assert d["self_consistency/abstention_rate"] == 1.0
    assert math.isnan(d["labels/pseudo_label_accuracy"])
    assert d["labels/maj_at_g"] == 0.0 and d["labels/pass_at_g"] == 0.0 and d["labels/rollout_accuracy"] == 0.0


def test_groups_without_labels_are_left_out_of_label_metrics():
    completions = boxed("7", "7", "7", "1") + boxed("2", "2", "9", "2") + boxed("4", "4", "4", "4")
    d = diagnose(completions, 4, labels=["7", None, ""])  # a blank label is no label
    assert d["labels/maj_at_g"] == 1.0
    assert d["labels/rollout_accuracy"] == 0.75
    assert d["labels/reward_accuracy"] == 1.0
    assert d["self_consistency/majority_ratio"] == pytest.approx((0.75 + 0.75 + 1.0) / 3)  # over all groups
    per_group = per_group_diagnostics(vote_groups(completions, 4), completions, ["7", None, ""])
    assert per_group["labels/maj_at_g"][0] == 1.0 and all(math.isnan(v) for v in per_group["labels/maj_at_g"][1:])


def test_no_labels_gives_no_label_metrics():
    completions = boxed("7", "7", "7", "1")
    assert set(diagnose(completions, 4)) == set(LABEL_FREE_METRICS)
    assert set(diagnose(completions, 4, labels=[None])) == set(LABEL_FREE_METRICS)
    assert set(diagnose(completions, 4, labels=["7"])) == set(LABEL_FREE_METRICS) | set(LABEL_METRICS)


def test_per_group_values_average_to_the_batch_metric():
    completions = boxed("7", "7", "7", "1") + boxed("2", None, "9", "2") + boxed("1", "2", "3", "4")
    labels = ["7", "9", "5"]
    votes = vote_groups(completions, 4)
    per_group = per_group_diagnostics(votes, completions, labels)
    assert per_group["self_consistency/majority_ratio"] == [0.75, 0.5, 0.25]
    assert per_group["self_consistency/distinct_answers"] == [2.0, 2.0, 4.0]
    assert per_group["labels/rollout_accuracy"] == [0.75, 0.25, 0.0]
    means = group_diagnostics(votes, completions, labels)
    for name, values in per_group.items():
        assert means[name] == pytest.approx(sum(values) / len(values)), name


def test_format_pattern_and_its_source():
    group = ["5", "\\boxed{5}", "<think>x</think>\\boxed{5}", "<think>x</think>"]
    assert diagnose(group, 4)["self_consistency/format_violation_rate"] == 0.75
    assert diagnose(group, 4, format_pattern=r".*\\boxed\{.*\}.*")["self_consistency/format_violation_rate"] == 0.5
    functions = [get_reward_function("soft_frequency"), get_reward_function("format", pattern=r".*\\boxed\{.*\}.*")]
    assert format_pattern_of(functions) == r".*\\boxed\{.*\}.*"
    assert format_pattern_of([get_reward_function("format")]) == DEFAULT_FORMAT_PATTERN


def test_mismatched_labels_are_an_error():
    completions = boxed("7", "7", "7", "1")
    with pytest.raises(ValueError, match="1 groups"):
        diagnose(completions, 4, labels=["7", "8"])


def mixed_batch():
    """Image, text, image, text questions; the second image question has no label."""
    completions = (boxed("3", "3", "3", "3") + boxed("1", "2", "2", None) + boxed("5", "5", "5", "7")
                   + boxed("4", "4", "4", "4"))
    labels = ["3", "1", None, "4"]
    return completions, labels, ["image", "text", "image", "text"]


def test_diagnostics_by_kind_of_question():
    completions, labels, kinds = mixed_batch()
    per_group = per_group_diagnostics(vote_groups(completions, 4), completions, labels, format_pattern=".*")
    split = split_by_kind(per_group, kinds, [label is not None for label in labels])
    assert set(split) == {f"{name}/{kind}" for name in LABEL_FREE_METRICS + LABEL_METRICS for kind in ("image", "text")}
    by_kind = {name: finite_mean(values) for name, values in split.items()}
    # image: {3,3,3,3} (label 3) and {5,5,5,7} (no label)
    assert by_kind["self_consistency/majority_ratio/image"] == (1.0 + 0.75) / 2
    assert by_kind["self_consistency/high_confidence_share/image"] == 0.5
    assert by_kind["self_consistency/answer_entropy/image"] == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / 2)
    assert by_kind["self_consistency/distinct_answers/image"] == 1.5
    assert split["labels/pseudo_label_accuracy/image"][0] == 1.0 and math.isnan(split["labels/maj_at_g/image"][1])
    assert by_kind["labels/pseudo_label_accuracy/image"] == 1.0 and by_kind["labels/rollout_accuracy/image"] == 1.0
    # text: {1,2,2,-} (label 1: the majority 2 is wrong) and {4,4,4,4} (label 4)
    assert by_kind["self_consistency/majority_ratio/text"] == (0.5 + 1.0) / 2
    assert by_kind["self_consistency/high_confidence_share/text"] == 0.5
    assert by_kind["self_consistency/abstention_rate/text"] == (0.25 + 0.0) / 2
    assert by_kind["self_consistency/answer_entropy/text"] == pytest.approx(
        -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)) / 2)
    assert by_kind["labels/pseudo_label_accuracy/text"] == 0.5
    assert by_kind["labels/maj_at_g/text"] == 0.5 and by_kind["labels/pass_at_g/text"] == 1.0
    assert by_kind["labels/rollout_accuracy/text"] == (0.25 + 1.0) / 2
    assert by_kind["labels/reward_accuracy/text"] == (0.25 + 1.0) / 2  # only the abstention: out of the majority, wrong
    # the kinds' groups together are the whole batch
    whole = group_diagnostics(vote_groups(completions, 4), completions, labels, format_pattern=".*")
    assert whole["self_consistency/majority_ratio"] == (1.0 + 0.75 + 0.5 + 1.0) / 4


def test_a_kind_without_labels_has_no_label_metrics_and_one_kind_gives_one_kind():
    completions, labels, kinds = mixed_batch()
    per_group = per_group_diagnostics(vote_groups(completions, 4), completions, labels)
    split = split_by_kind(per_group, kinds, [False, False, True, False])  # only an image question has a label
    assert not any(name.startswith("labels/") and name.endswith("/text") for name in split)
    assert "labels/maj_at_g/image" in split and "self_consistency/majority_ratio/text" in split
    only_images = split_by_kind(per_group, ["image"] * 4, [True] * 4)
    assert set(only_images) == {f"{name}/image" for name in per_group}
    with pytest.raises(ValueError, match="3 kinds and 3 label flags for diagnostics of 4 groups"):
        split_by_kind(per_group, kinds[:3], [True] * 3)


def test_row_kind():
    assert row_kind({"images": [object()]}) == "image" and row_kind({"image": object()}) == "image"
    assert row_kind({"images": []}) == row_kind({"images": None}) == row_kind({"image": None}) == "text"
    assert row_kind({"prompt": "What is 1+1?"}) == "text"


def test_the_split_is_logged_once_both_kinds_have_been_seen():
    by_kind, metrics = DiagnosticsByKind(), defaultdict(list)
    by_kind.add("train", ["image", "image"], {"self_consistency/majority_ratio/image": [1.0, 0.5]})
    by_kind.flush("train", metrics)
    assert metrics == {}  # one kind so far: nothing more is logged
    by_kind.add("train", ["image"], {"self_consistency/majority_ratio/image": [0.25]})
    by_kind.add("train", ["text"], {"self_consistency/majority_ratio/text": [0.75]})
    by_kind.add("eval", ["image"], {"self_consistency/majority_ratio/image": [0.5]})
    by_kind.flush("train", metrics)  # the whole logging step, the batch before the first text question included
    assert metrics == {"self_consistency/majority_ratio/image": [0.25], "self_consistency/majority_ratio/text": [0.75]}
    by_kind.add("train", ["image"], {"self_consistency/majority_ratio/image": [0.5]})
    by_kind.flush("train", metrics)  # both kinds seen: a step with one kind still logs it
    assert metrics["self_consistency/majority_ratio/image"] == [0.25, 0.5]
    eval_metrics = defaultdict(list)
    by_kind.flush("eval", eval_metrics)  # each mode on its own
    assert eval_metrics == {}
    resumed = DiagnosticsByKind()
    resumed.load_state_dict(by_kind.state_dict())
    assert by_kind.state_dict() == {"train": ["image", "text"], "eval": ["image"]} and resumed.seen == by_kind.seen


CONFIG_SETTINGS = {"extractor": "boxed", "match": "math", "abstain_as_answer": False, "tie": "first"}


def test_vote_settings_follow_the_rewards_that_vote():
    from self_evolve_trl.training.diagnostics import vote_settings

    # no voting reward: the config's settings
    assert vote_settings([get_reward_function("format")], CONFIG_SETTINGS) == (CONFIG_SETTINGS, None, [])
    # the first voting reward's own bound settings, the config's for the rest
    majority = get_reward_function("majority_vote", extractor="last_number", tie="none")
    expected = {**CONFIG_SETTINGS, "extractor": "last_number", "tie": "none"}
    assert vote_settings([get_reward_function("format"), majority], CONFIG_SETTINGS) == (expected, "majority_vote", [])
    # a wrapper votes as its base reward, which gets the wrapper's settings unless its base_kwargs bind their own
    judge = get_reward_function("judge_modulated", match="exact", base_kwargs={"extractor": "answer_tag"})
    settings, followed, _ = vote_settings([judge], CONFIG_SETTINGS)
    assert settings == {**CONFIG_SETTINGS, "extractor": "answer_tag", "match": "exact"}
    assert followed == "judge_modulated"
    # rewards that vote differently from the one followed are named
    same = get_reward_function("soft_frequency", extractor="last_number", tie="none")
    rewards = [majority, get_reward_function("soft_frequency"), same]
    assert vote_settings(rewards, CONFIG_SETTINGS)[2] == ["soft_frequency"]
