"""`module:name` paths (self_evolve_trl/plugins.py): a recipe's own reward, advantage mode and judge backend are all
found next to the recipe, in the working directory, whichever command runs it (the `self-evolve-trl` console script
does not put the working directory on `sys.path`, `python -m` does)."""

from __future__ import annotations

import sys

import pytest
import torch

from self_evolve_trl import advantages
from self_evolve_trl.judge.backends import backend_class
from self_evolve_trl.plugins import split_path
from self_evolve_trl.rewards import get_reward_function


@pytest.fixture
def in_recipe_folder(tmp_path, monkeypatch):
    (tmp_path / "beside_recipe.py").write_text(
        "def bonus(completions, group_size):\n    return [1.0] * len(completions)\n\n"
        "def flat(rewards, valid, settings):\n    return rewards * 0 + 2.0\n\n"
        "class Judge:\n    name = 'beside'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.setattr(advantages, "ADVANTAGES", dict(advantages.ADVANTAGES))  # the test registers a mode
    yield
    sys.modules.pop("beside_recipe", None)


def test_every_kind_of_path_is_found_in_the_working_directory(in_recipe_folder):
    assert get_reward_function("beside_recipe:bonus")(["a", "b"], group_size=2) == [1.0, 1.0]
    assert advantages.group_advantages(torch.tensor([0.1, 0.9]), 2, mode="beside_recipe:flat").tolist() == [2.0, 2.0]
    assert backend_class("beside_recipe:Judge").name == "beside"


def test_a_path_without_a_name_is_refused():
    with pytest.raises(ValueError, match="Cannot read the path 'nomodule': use 'module:name'."):
        split_path("nomodule")
