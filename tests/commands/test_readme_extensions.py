"""README's "Add your own reward function / advantage mode / judge backend": each section's file, written as the
README shows it, works as the section's YAML names it (`module:function` or `module:Class`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from self_evolve_trl import advantages
from self_evolve_trl.advantages import advantage_problems, group_advantages
from self_evolve_trl.judge.backends import backend_class
from self_evolve_trl.judge.prompt import JudgeRequest
from self_evolve_trl.rewards import get_reward_function


README = Path(__file__).resolve().parents[2] / "README.md"


def section_file(tmp_path: Path, section: str) -> str:
    """Write the first python block of README section `section` to the file its first line names; its module name."""
    text = README.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    name = re.match(r"# (\w+)\.py\n", code).group(1)
    (tmp_path / f"{name}.py").write_text(code)
    return name


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    stale = [name for name in sys.modules if name.startswith("my_")]  # another test's module of the same name
    for name in stale:
        monkeypatch.delitem(sys.modules, name)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("my_"):
            del sys.modules[name]


def test_reward_section(on_path):
    module = section_file(on_path, "Add your own reward function")
    reward = get_reward_function(f"{module}:short_answer_bonus", bonus=0.2)
    assert reward(["short", "x" * 300], group_size=2) == [0.2, 0.0]


def test_advantage_section(on_path, monkeypatch):
    monkeypatch.setattr(advantages, "ADVANTAGES", dict(advantages.ADVANTAGES))  # the test registers a mode
    module = section_file(on_path, "Add your own advantage mode")
    assert advantage_problems(f"{module}:rank", clip_advantage=1.0) == []
    rewards = torch.tensor([0.9, 0.1, 0.5, 0.3])
    assert group_advantages(rewards, 4, mode=f"{module}:rank").tolist() == [1.5, -1.5, 0.5, -0.5]
    assert group_advantages(rewards, 4, mode=f"{module}:rank", clip=1.0).tolist() == [1.0, -1.0, 0.5, -0.5]


def test_judge_backend_section(on_path):
    module = section_file(on_path, "Add your own judge backend")
    judge = backend_class(f"{module}:MyJudge").from_settings(None, None)
    outputs = judge.judge([JudgeRequest(system="Grade it.", text="Q: 1+1? A: 2")], seeds=[7])
    assert [o.text for o in outputs] == ["\\boxed{0.9}"] and judge.describe() == "my judge"
