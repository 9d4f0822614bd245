"""Advantages against hand-computed values (docs/math.md, "Advantages"); a mode added to the registry."""

import math

import pytest
import torch

from self_evolve_trl.advantages import (
    ADVANTAGE_MODES,
    ADVANTAGES,
    advantage_setting_problems,
    group_advantages,
    register_advantage,
)


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
    with pytest.raises(ValueError, match="valid choices: grpo, centered, lse"):
        group_advantages(R, 4, mode="ppo")
    with pytest.raises(ValueError, match="whole groups of 3"):
        group_advantages(R, 3)


# ------------------------------------------------------------------------------------------------------------------
# Which settings combine: one rule for the config, `cli check` and group_advantages

NOT_GRPO_AGGREGATION = ("multi_objective_aggregation 'normalize_then_sum' works with advantage 'grpo' only; with "
                        "advantage '{}' the valid choice is sum_then_normalize.")
NOT_SCALED = ("scale_rewards '{}' applies to advantage 'grpo' only; advantage '{}' is not scaled: the valid choice is "
              "none (or leave scale_rewards out).")
GDPO_SCALE = ("scale_rewards '{}' does not apply with multi_objective_aggregation 'normalize_then_sum' (each reward "
              "is normalised within its group, then their sum over the batch); valid choices: group (or leave "
              "scale_rewards out), or multi_objective_aggregation sum_then_normalize.")
GDPO = {"advantage": "grpo", "aggregation": "normalize_then_sum"}


@pytest.mark.parametrize(
    "settings, expected",
    [
        # applied
        ({"advantage": "grpo"}, []),
        ({"advantage": "grpo", "scale_rewards": "batch", "clip_advantage": 0.5}, []),
        ({"advantage": "grpo", "scale_rewards": False}, []),  # TRL's spelling of none
        ({**GDPO, "scale_rewards": "group", "clip_advantage": 0.1}, []),
        ({"advantage": "centered", "scale_rewards": "none", "clip_advantage": 1.0}, []),
        ({"advantage": "lse", "lse_tau": 0.5, "lse_offset": "none", "clip_advantage": 1.0}, []),
        ({"advantage": "centered", "lse_tau": 1.0, "lse_offset": "log_group_size"}, []),  # the defaults: nothing set
        # refused
        ({"advantage": "lse", "aggregation": "normalize_then_sum"}, [NOT_GRPO_AGGREGATION.format("lse")]),
        ({"advantage": "centered", "aggregation": "normalize_then_sum"}, [NOT_GRPO_AGGREGATION.format("centered")]),
        ({"advantage": "centered", "scale_rewards": "group"}, [NOT_SCALED.format("group", "centered")]),
        ({"advantage": "lse", "scale_rewards": True}, [NOT_SCALED.format("group", "lse")]),
        ({**GDPO, "scale_rewards": "none"}, [GDPO_SCALE.format("none")]),
        ({**GDPO, "scale_rewards": "batch"}, [GDPO_SCALE.format("batch")]),
        ({"advantage": "grpo", "lse_tau": 0.5},
         ["lse_tau 0.5 applies to advantage 'lse' only, not 'grpo': leave it out (default 1.0), or set "
          "advantage: lse."]),
        ({"advantage": "centered", "lse_offset": "none"},
         ["lse_offset 'none' applies to advantage 'lse' only, not 'centered': leave it out (default "
          "'log_group_size'), or set advantage: lse."]),
        ({"advantage": "grpo", "aggregation": "gdpo", "scale_rewards": "std"},
         ["Unknown multi_objective_aggregation 'gdpo'; valid choices: sum_then_normalize, normalize_then_sum.",
          "Unknown scale_rewards 'std'; valid choices: group, batch, none."]),
    ],
)
def test_which_settings_combine(settings, expected):
    assert advantage_setting_problems(**settings) == expected


def test_group_advantages_refuses_a_setting_its_advantage_ignores():
    with pytest.raises(ValueError, match="scale_rewards 'batch' applies to advantage 'grpo' only"):
        group_advantages(R, 4, mode="lse", scale="batch")
    with pytest.raises(ValueError, match="lse_tau 2.0 applies to advantage 'lse' only, not 'centered'"):
        group_advantages(R, 4, mode="centered", tau=2.0)
    assert group_advantages(R, 4, mode="centered", scale="none").tolist() == [0.5, -0.5, 0.0, 0.0]


def test_a_registered_mode_is_a_valid_advantage_with_the_shared_handling(monkeypatch):
    monkeypatch.setitem(ADVANTAGES, "max_gap", None)  # removed again after the test
    del ADVANTAGES["max_gap"]
    seen = []

    def max_gap(rewards, valid, settings):
        seen.append(settings)
        best = torch.where(valid, rewards, -torch.inf).max(dim=1, keepdim=True).values
        return rewards - best

    register_advantage("max_gap", max_gap)
    assert "max_gap" in ADVANTAGE_MODES and "max_gap" in advantage_setting_problems("ppo")[0]
    r = torch.tensor([1.0, 0.0, float("nan"), 0.5, 2.0, 2.0, 2.0, 2.0])
    # NaN rewards get 0 and clip applies, whatever the mode returns
    assert group_advantages(r, 4, mode="max_gap", clip=0.75).tolist() == [0.0, -0.75, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0]
    assert seen[0].mode == "max_gap" and seen[0].scale == "none" and seen[0].clip == 0.75
    with pytest.raises(ValueError, match="applies to advantage 'grpo' only"):
        group_advantages(r, 4, mode="max_gap", scale="group")
    with pytest.raises(ValueError, match="already registered"):
        register_advantage("lse", max_gap)


def test_a_module_function_path_is_an_advantage_mode(tmp_path, monkeypatch):
    """`advantage: module:function` imports the user's mode and registers it under that name; a path that does not
    import is a problem that names it."""
    (tmp_path / "rank_advantage_mode.py").write_text(
        "def rank(rewards, valid, settings):\n    return rewards.argsort(dim=1).argsort(dim=1).float()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("self_evolve_trl.advantages.ADVANTAGES", dict(ADVANTAGES))
    assert advantage_setting_problems("rank_advantage_mode:rank") == []
    r = torch.tensor([0.2, 0.9, 0.5, 0.1, 0.3, 0.2])
    assert group_advantages(r, 3, mode="rank_advantage_mode:rank").tolist() == [0.0, 2.0, 1.0, 0.0, 2.0, 1.0]
    (problem,) = advantage_setting_problems("rank_advantage_mode:missing")
    assert problem.startswith("advantage 'rank_advantage_mode:missing' cannot be imported")


def test_config_refuses_what_does_not_combine_and_resolves_scale_rewards(tmp_path):
    from self_evolve_trl.training.config import ConfigError, SelfEvolveConfig

    def config(**kwargs):
        return SelfEvolveConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                                num_generations=4, per_device_train_batch_size=4, **kwargs)

    with pytest.raises(ConfigError) as error:
        config(advantage="lse", multi_objective_aggregation="normalize_then_sum", scale_rewards="group")
    assert str(error.value) == f"{NOT_GRPO_AGGREGATION.format('lse')} | {NOT_SCALED.format('group', 'lse')}"
    with pytest.raises(ConfigError, match="scale_rewards 'none' does not apply with multi_objective_aggregation"):
        config(advantage="grpo", multi_objective_aggregation="normalize_then_sum", scale_rewards="none")
    # scale_rewards left out: TRL's `group` for grpo, `none` (what is applied) for the others
    assert config(advantage="grpo").scale_rewards == "group"
    assert config(advantage="lse").scale_rewards == "none"
    assert config(advantage="centered", scale_rewards=False).scale_rewards == "none"
    assert config(advantage="grpo", scale_rewards="batch").scale_rewards == "batch"
