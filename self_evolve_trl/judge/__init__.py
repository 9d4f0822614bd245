"""The Actor–Judge method: a frozen judge scores each completion, and the `judge_modulated` reward gates a
consistency prior with that score (docs/math.md, "Actor–Judge").

- `scores.py`: `parse_judge_score`, the judge's score in its output;
- `gate.py`: `judge_gate`, the bounded gate g(s);
- `reward.py`: the `judge_modulated` reward and the failure policy it binds (`with_failure_policy`);
- `prompt.py`: the judge prompt, a template file (default `templates/default.txt`);
- `backends/`: who judges, `JudgeBackend`s registered in `JUDGE_BACKENDS`: `reference` (the frozen initial policy in
  the training process) and `openai` (any OpenAI-compatible chat-completions endpoint, e.g. `vllm serve`);
- `provider.py`: `JudgeScoreProvider`, which the trainer calls for the `judge_scores` reward input: it judges each
  completion, parses the scores, logs the judge metrics and applies the failure policy.

`self_evolve_trl.rewards.judge` is the public import path of the reward's pieces.
"""

from ..errors import JudgeUnavailableError
from .backends import JUDGE_BACKENDS


# The reward inputs that this method computes: name -> "module:Class" of the provider the trainer builds.
PROVIDERS = {"judge_scores": "self_evolve_trl.judge.provider:JudgeScoreProvider"}

__all__ = ["JUDGE_BACKENDS", "PROVIDERS", "JudgeUnavailableError"]
