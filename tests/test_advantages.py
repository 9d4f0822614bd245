"""Advantages against hand-computed values (SPEC §3)."""

import math

import pytest
import torch

from self_evolve_trl.advantages import group_advantages


R = torch.tensor([1.0, 0.0, 0.5, 0.5])


def test_centered():
    assert group_advantages(R, 4, mode="centered").tolist() == [0.5, -0.5, 0.0, 0.0]


def test_grpo_matches_hand_computed_group_std():
    std = math.sqrt((0.25 + 0.25) / 3)  # unbiased, as TRL
    expected = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.0, 0.0]
    assert group_advantages(R, 4, mode="grpo").tolist() == pytest.approx(expected, rel=1e-6)
    assert group_advantages(R, 4, mode="grpo", scale="none").tolist() == [0.5, -0.5, 0.0, 0.0]


def test_grpo_batch_scaling_uses_the_batch_std():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 3.0])
    std = r.std().item()
    expected = [0.75 / (std + 1e-4)] + [-0.25 / (std + 1e-4)] * 3 + [0.0] * 4
    assert group_advantages(r, 4, mode="grpo", scale="batch").tolist() == pytest.approx(expected, rel=1e-6)


def test_lse_with_log_group_size_offset():
    log_z = math.log(math.e + 1 + 2 * math.exp(0.5))
    expected = [r - log_z + math.log(4) for r in (1.0, 0.0, 0.5, 0.5)]
    assert group_advantages(R, 4, mode="lse").tolist() == pytest.approx(expected, abs=1e-6)


def test_lse_literal_form_is_log_softmax():
    got = group_advantages(R, 4, mode="lse", offset="none")
    assert got.tolist() == pytest.approx(torch.log_softmax(R, 0).tolist(), abs=1e-6)
    assert (got <= 0).all()


def test_lse_temperature():
    got = group_advantages(R, 4, mode="lse", tau=0.5, offset="none")
    assert got.tolist() == pytest.approx(torch.log_softmax(R / 0.5, 0).tolist(), abs=1e-6)


@pytest.mark.parametrize("mode", ["grpo", "centered", "lse"])
@pytest.mark.parametrize("value", [0.0, 0.125, 1.0, -0.5, 0.3])
def test_equal_rewards_give_exactly_zero(mode, value):
    rewards = torch.full((8,), value)
    assert group_advantages(rewards, 8, mode=mode).tolist() == [0.0] * 8


def test_groups_are_independent():
    r = torch.tensor([1.0, 0.0, 7.0, 7.0])
    assert group_advantages(r, 2, mode="centered").tolist() == [0.5, -0.5, 0.0, 0.0]


def test_nan_rewards_are_left_out_and_get_zero():
    r = torch.tensor([1.0, float("nan"), 0.0, 0.5])
    got = group_advantages(r, 4, mode="centered")
    assert got.tolist() == pytest.approx([0.5, 0.0, -0.5, 0.0])
    lse = group_advantages(r, 4, mode="lse")
    log_z = math.log(math.e + 1 + math.exp(0.5))
    assert lse.tolist() == pytest.approx([1 - log_z + math.log(3), 0.0, -log_z + math.log(3), 0.5 - log_z + math.log(3)], abs=1e-6)


def test_clip():
    r = torch.tensor([10.0, 0.0])
    assert group_advantages(r, 2, mode="centered", clip=1.0).tolist() == [1.0, -1.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid advantages: grpo, centered, lse"):
        group_advantages(R, 4, mode="ppo")
    with pytest.raises(ValueError, match="whole groups of 3"):
        group_advantages(R, 3)
