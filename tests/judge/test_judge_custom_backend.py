"""A judge backend of the user's own: one module with a class that follows `JudgeBackend`, named in the recipe as
`judge_backend: module:Class`. The trainer builds it from the settings, sends it every judgement with its seed, and
its scores reach the reward; a path that does not import is a problem of the settings."""

from __future__ import annotations

import pytest

from self_evolve_trl.errors import ConfigError
from tests.judge.judge_helpers import gate_formula, judge_config, make_trainer, metric, score_one_batch


BACKEND = '''
from self_evolve_trl.judge.backends import JudgeOutput


class WordCountJudge:
    """Scores 0.97 when the user text has at most `judge_max_tokens` words, else 0.2."""

    name = "word-count"
    calls = []

    def __init__(self, max_words):
        self.max_words = max_words

    @classmethod
    def from_settings(cls, settings, trainer):
        return cls(settings.judge_max_tokens)

    def judge(self, requests, seeds=None):
        WordCountJudge.calls.append((len(requests), seeds))
        return [JudgeOutput(text="\\\\boxed{0.97}" if len(r.text.split()) <= self.max_words else "\\\\boxed{0.2}")
                for r in requests]

    def describe(self):
        return "word count"

    def close(self):
        pass
'''


@pytest.fixture
def my_judges(tmp_path, monkeypatch):
    (tmp_path / "my_judges.py").write_text(BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_judges

    yield my_judges
    monkeypatch.delitem(__import__("sys").modules, "my_judges")


def test_a_module_class_backend_judges_the_completions(my_judges, tiny_model_dir, tiny_processor, synthetic_dataset,
                                                      cpu_config):
    args = judge_config(cpu_config, judge_backend="my_judges:WordCountJudge", judge_max_tokens=10_000, judge_repeats=2)
    trainer = make_trainer(tiny_model_dir, tiny_processor, synthetic_dataset(4), args)
    backend = trainer.reward_input_providers["judge_scores"].backend
    assert isinstance(backend, my_judges.WordCountJudge) and backend.max_words == 10_000
    completions, rewards = score_one_batch(trainer)
    ((count, seeds),) = my_judges.WordCountJudge.calls
    assert count == 8 and len(seeds) == 8 and len(set(seeds)) == 8  # 4 completions x 2 repeats, each its own seed
    assert metric(trainer, "judge/score_mean") == pytest.approx(0.97)
    assert metric(trainer, "judge/gate_mean") == pytest.approx(gate_formula(0.97), abs=1e-6)


def test_a_backend_path_that_does_not_import_is_refused(cpu_config):
    with pytest.raises(ConfigError, match="judge_backend 'no_such_module:Judge' cannot be imported"):
        judge_config(cpu_config, judge_backend="no_such_module:Judge")
    with pytest.raises(ConfigError, match="Unknown judge_backend 'remote'; valid choices: reference, openai"):
        judge_config(cpu_config, judge_backend="remote")
