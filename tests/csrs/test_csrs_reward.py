"""CSRS's reward, `retrace_frequency`, on hand-made groups, and the `retrace_*` config checks."""

import re

import pytest

from self_evolve_trl.training.config import ConfigError, SelfEvolveConfig
from self_evolve_trl.csrs import retrace_frequency
from self_evolve_trl.rewards import get_reward_function


def boxed(*answers):
    return [f"<think>...</think> \\boxed{{{a}}}" if a is not None else "<think>...</think> no answer" for a in answers]


# ----------------------------------------------------------------------------------------------------------------
# The reward on hand-made groups


def expected_reward(c, G, K, fmt, beta=1.2, w=0.9):
    """docs/math.md, section "`retrace_frequency`": r = w·min(1, β·c/(G·(K+1))) + (1 − w)·fmt."""
    return w * min(1.0, beta * c / (G * (K + 1))) + (1 - w) * fmt


def test_retrace_frequency_counts_the_whole_groups_reinferences():
    # G = 4, K = 3. Original answers 1/2, 0.5, 3, none; re-inferences of every completion are pooled.
    completions = boxed("1/2", "0.5", "3", None)
    retraced = [
        boxed("\\frac{1}{2}", "0.5", "7"),   # two in the 1/2 class
        boxed("3", None, "1/2"),             # one 3, one 1/2, one failed extraction
        boxed("3", "3", "3"),
        boxed(None, None, "2"),
    ]
    rewards = retrace_frequency(completions, 4, retraced)
    # 1/2 class: \frac{1}{2}, 0.5, 1/2 -> c = 3 for the first two; 3 class: 3+1 = 4; the abstention: 0
    expected = [expected_reward(3, 4, 3, 1), expected_reward(3, 4, 3, 1), expected_reward(4, 4, 3, 1),
                expected_reward(0, 4, 3, 0)]
    assert rewards == pytest.approx(expected)
    assert rewards == pytest.approx([0.9 * 1.2 * 3 / 16 + 0.1, 0.9 * 1.2 * 3 / 16 + 0.1, 0.9 * 1.2 * 4 / 16 + 0.1, 0.0])


def test_several_anchors_count_every_reinference_in_k():
    # G = 2, 2 anchors × 2 samples: K = 4 texts per completion, anchor by anchor, and the denominator G·(K+1) = 10
    completions = boxed("1", "2")
    retraced = [boxed("1", "1", "2", None), boxed("1", "1", "1", "2")]  # class 1: c = 5; class 2: c = 2
    rewards = retrace_frequency(completions, 2, retraced)
    assert rewards == pytest.approx([0.9 * min(1, 1.2 * 5 / 10) + 0.1, 0.9 * 1.2 * 2 / 10 + 0.1])
    assert rewards == pytest.approx([0.64, 0.316])  # with K = samples per anchor (2), the first would be 1.0


def test_originals_are_not_counted_and_groups_are_separate():
    # every original says 5, but no re-inference does: no reward beyond the format term
    group_a = boxed("5", "5")
    group_b = boxed("5", "6")
    retraced = [boxed("6"), boxed("6"), boxed("5"), boxed("5")]
    rewards = retrace_frequency(group_a + group_b, 2, retraced, format_pattern=".*")
    assert rewards == pytest.approx([0.1, 0.1, expected_reward(2, 2, 1, 1), 0.1])


def test_failed_extractions_never_match_even_a_missing_answer():
    completions = ["no box", "no box either"]
    retraced = [["still none"], ["none"]]
    assert retrace_frequency(completions, 2, retraced, format_pattern=".*") == pytest.approx([0.1, 0.1])


def test_beta_clip_weight_and_matching_mode():
    completions = boxed("2", "2.0")
    retraced = [boxed("2", "2"), boxed("2.0", "2")]
    # math: all four agree; c = 4, β·c/(G·(K+1)) = 3·4/6 = 2 -> clipped to 1
    assert retrace_frequency(completions, 2, retraced, beta=3.0, weight=0.5) == pytest.approx([1.0, 1.0])
    # exact matching splits 2 and 2.0: c = 3 and 1
    exact = retrace_frequency(completions, 2, retraced, match="exact", weight=1.0)
    assert exact == pytest.approx([1.2 * 3 / 6, 1.2 * 1 / 6])


def test_format_term_uses_the_pattern():
    completions = ["<think>a</think> \\boxed{1}", "\\boxed{1}"]
    retraced = [boxed("9"), boxed("9")]
    assert retrace_frequency(completions, 2, retraced) == pytest.approx([0.1, 0.0])
    assert retrace_frequency(completions, 2, retraced, format_pattern=r".*\\boxed\{.*\}.*") == pytest.approx([0.1, 0.1])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same number of re-inferences"):
        retrace_frequency(boxed("1", "1"), 2, [boxed("1"), boxed("1", "1")])
    with pytest.raises(ValueError, match="retrace_completions has 1 entries for 2"):
        retrace_frequency(boxed("1", "1"), 2, [boxed("1")])
    with pytest.raises(ValueError, match="whole groups"):
        retrace_frequency(boxed("1", "1", "1"), 2, [boxed("1")] * 3)


def test_registry_logging_and_declared_input():
    fn = get_reward_function("retrace_frequency", beta=1.2)
    assert fn.required_inputs == ("retrace_completions",)
    logged, extra = {}, {}
    rewards = fn(
        boxed("1", "2"), 2, retrace_completions=[boxed("1", "2"), boxed(None, "2")],
        log_metric=logged.__setitem__, log_extra=extra.__setitem__,
    )
    assert rewards == pytest.approx([expected_reward(1, 2, 2, 1), expected_reward(2, 2, 2, 1)])
    assert logged["retrace/agreement"] == pytest.approx((0.5 + 0.5) / 2)
    assert logged["retrace/abstention_rate"] == pytest.approx(0.25)
    assert extra["retrace_answers"] == ["1 | 2", " | 2"]


# ----------------------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(retrace_mode="prefix"), "Unknown retrace_mode 'prefix'; valid choices: new_turn, continuation."),
        (dict(retrace_anchor_base="tokens"), "valid choices: actual_length, max_length"),
        (dict(retrace_anchors=[0.5, 1.5]), "retrace_anchors must be a non-empty list of fractions in [0, 1]"),
        (dict(retrace_anchors=[]), "retrace_anchors must be a non-empty list"),
        (dict(retrace_samples_per_anchor=0), "retrace_samples_per_anchor must be >= 1"),
        (dict(retrace_noise_max_level=0), "retrace_noise_max_level must be in 1..100"),
        (dict(retrace_generation_batch_size=0), "retrace_generation_batch_size must be >= 1 or null"),
    ],
)
def test_config_errors_name_the_valid_values(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SelfEvolveConfig(output_dir=str(tmp_path), use_cpu=True, **overrides)
