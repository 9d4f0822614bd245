"""The Actor–Judge's judge: who scores the completions that the `judge_modulated` reward gates (SPEC §2).

- `prompt.py`: the judge prompt, a template file (default `templates/default.txt`, the SPEC rubric in our words).
- `backends.py`: `ReferenceJudge`, the frozen initial policy in the training process (with LoRA: the base model
  with the adapter disabled; else TRL's reference model when beta > 0; else a frozen copy loaded for the judge),
  and `OpenAIJudge`, any OpenAI-compatible chat-completions endpoint (e.g. `vllm serve` of the base model).
- `provider.py`: `JudgeScoreProvider`, which the trainer calls for the `judge_scores` reward input: it judges each
  completion, parses the scores, logs the judge metrics and applies the failure policy.

The math (gate, score parsing, reward) is in `self_evolve_trl.rewards.judge`.
"""

JUDGE_BACKENDS = ("reference", "openai")


class JudgeUnavailableError(RuntimeError):
    """The judge failed more judgements than the recipe allows; training stopped (after saving a checkpoint)."""
