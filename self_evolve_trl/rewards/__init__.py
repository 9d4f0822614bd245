"""Reward functions and their registry (`registry.py`); see docs/math.md for each reward.

A reward function takes whole groups of completions and returns one float per completion:

```python
>>> from self_evolve_trl.rewards import get_reward_function
>>> fn = get_reward_function("soft_frequency", hard_threshold=None)
>>> fn(["\\\\boxed{1}", "\\\\boxed{1}", "\\\\boxed{2}", "oops"], group_size=4)
[0.5, 0.5, 0.25, 0.0]

```

Recipes name them in `reward_funcs` (registry names or `module:function` paths) with per-function keyword
arguments in `reward_kwargs`. The trainer calls each function with the keyword arguments its signature names, from:
`completions` and `group_size` (always, whole groups across all processes), `prompts` (images stripped),
`completion_ids`, every dataset column except the prompt, the images and the label column, the extra inputs that the
trainer computes for some rewards (e.g. `judge_scores`), the answer settings of the config (`extractor`, `match`,
`abstain_as_answer`, `tie`) unless given in `reward_kwargs`, and TRL's `trainer_state`, `log_metric`, `log_extra`.
A function that takes `**kwargs` receives all of them. An `async def` reward function (or a callable whose
`__call__` is async) works too: its coroutine is awaited on one event loop kept on a daemon thread, as TRL runs
async rewards.
"""

from .registry import (
    REWARD_REGISTRY,
    RewardError,
    RewardFunction,
    RewardValueError,
    available_rewards,
    get_reward_function,
    is_reward_model,
    register_reward,
)


__all__ = [
    "REWARD_REGISTRY",
    "RewardError",
    "RewardFunction",
    "RewardValueError",
    "available_rewards",
    "get_reward_function",
    "is_reward_model",
    "register_reward",
]
