"""The token-level confidence rewards and their statistics on hand-computed values: self-certainty (Intuitor) and
token entropy (RENT), docs/math.md#certainty."""

import math

import pytest
import torch

from self_evolve_trl.certainty import PROVIDERS, self_certainty, token_entropy
from self_evolve_trl.certainty.reward import last_part
from self_evolve_trl.certainty.stats import token_stats_from_logits
from self_evolve_trl.errors import ConfigError
from self_evolve_trl.rewards import get_reward_function


def test_statistics_of_fixed_logits_equal_the_hand_computation():
    # z = (0, 0, log 2): p = (1/4, 1/4, 1/2), V = 3
    logits = torch.tensor([[0.0, 0.0, math.log(2)], [5.0, 5.0, 5.0]])
    entropy, certainty = token_stats_from_logits(logits)
    # H = 2·(1/4)·log 4 + (1/2)·log 2 = 1.5 log 2
    assert entropy[0].item() == pytest.approx(1.5 * math.log(2), abs=1e-6)
    # KL(U ‖ p) = −log 3 − (1/3)(log 1/4 + log 1/4 + log 1/2) = (5/3) log 2 − log 3
    assert certainty[0].item() == pytest.approx(5 / 3 * math.log(2) - math.log(3), abs=1e-6)
    # a uniform distribution: entropy log V, self-certainty 0
    assert entropy[1].item() == pytest.approx(math.log(3), abs=1e-6)
    assert certainty[1].item() == pytest.approx(0.0, abs=1e-6)


def test_statistics_use_the_temperature_scaled_logits_and_any_chunking():
    # temperature 2: z/2 = (0, 0, log √2): p = (1, 1, √2) / (2 + √2)
    logits = torch.tensor([0.0, 0.0, math.log(2)])
    entropy, certainty = token_stats_from_logits(logits, temperature=2.0)
    p = torch.tensor([1.0, 1.0, math.sqrt(2)]) / (2 + math.sqrt(2))
    assert entropy.item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-6)
    assert certainty.item() == pytest.approx(-math.log(3) - p.log().mean().item(), abs=1e-6)
    z = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    whole, chunked = token_stats_from_logits(z), token_stats_from_logits(z, chunk_tokens=3)
    assert whole[0].shape == (2, 5) and all(torch.allclose(a, b) for a, b in zip(whole, chunked))
    assert (whole[1] >= 0).all() and (whole[0] <= math.log(11) + 1e-6).all()  # KL ≥ 0, H ≤ log V


STATS = [
    {"self_certainty": [1.0, 2.0, 6.0], "entropy": [0.9, 0.3, 0.0]},
    {"self_certainty": [4.0], "entropy": [1.2]},
    {"self_certainty": [], "entropy": []},
]


def test_self_certainty_is_the_mean_over_tokens():
    assert self_certainty(["a", "b", ""], STATS) == [3.0, 4.0, None]  # an empty completion is unscored
    assert self_certainty(["a", "b", ""], STATS, last_tokens=2) == [4.0, 4.0, None]
    assert self_certainty(["a", "b", ""], STATS, last_fraction=0.5) == [pytest.approx(4.0), 4.0, None]  # round(1.5)


def test_token_entropy_is_the_negative_mean_entropy():
    assert token_entropy(["a", "b", ""], STATS) == [pytest.approx(-0.4), -1.2, None]
    assert token_entropy(["a", "b", ""], STATS, last_tokens=1) == [-0.0, -1.2, None]
    with pytest.raises(ValueError, match="3 entries for 2 completions"):
        token_entropy(["a", "b"], STATS)


def test_last_part():
    assert last_part([1, 2, 3], last_tokens=5) == [1, 2, 3]
    assert last_part([1, 2, 3], last_fraction=0.01) == [3]  # at least one token
    assert last_part([], last_fraction=0.5) == [] and last_part([1, 2, 3], last_fraction=1.0) == [1, 2, 3]


def test_rewards_are_registered_and_need_the_token_stats_input():
    for name in ("self_certainty", "token_entropy"):
        function = get_reward_function(name, last_tokens=4)
        assert function.required_inputs == ("token_stats",) and function.kwargs == {"last_tokens": 4}
    assert PROVIDERS == {"token_stats": "self_evolve_trl.certainty.provider:TokenStatsProvider"}
    from self_evolve_trl.training.trainer import REWARD_INPUT_PROVIDERS

    assert REWARD_INPUT_PROVIDERS["token_stats"] == PROVIDERS["token_stats"]


@pytest.mark.parametrize("kwargs, message", [
    ({"last_tokens": 0}, "last_tokens must be an integer >= 1"),
    ({"last_fraction": 1.5}, r"last_fraction must be in \(0, 1\]"),
    ({"last_tokens": 2, "last_fraction": 0.5}, "sets both last_tokens and last_fraction"),
])
def test_settings_are_checked_once_by_the_config(cpu_config, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cpu_config(reward_funcs=["token_entropy"], reward_kwargs={"token_entropy": kwargs})
    with pytest.raises(ConfigError, match="certainty_chunk_tokens must be >= 1"):
        cpu_config(reward_funcs=["self_certainty"], certainty_chunk_tokens=0)
    config = cpu_config(reward_funcs=["self_certainty"], reward_kwargs={"self_certainty": {"last_fraction": 0.5}})
    assert config.certainty_batch_size is None and config.certainty_chunk_tokens == 1024
