"""The reward functions as training binds them, from the config (`reward_funcs`, `reward_kwargs`, the answer settings).

Shared by the trainer (`SelfEvolveGRPOTrainer.__init__`), the CLI (which builds them before loading the model, so bad
names fail early) and the recipe checks.
"""

from __future__ import annotations

from typing import Any

import torch

from .config import SelfEvolveConfig
from ..rewards import RewardError, RewardFunction, get_reward_function, is_reward_model
from ..judge.reward import with_failure_policy


def build_reward_functions(args: SelfEvolveConfig, reward_funcs=None) -> list[RewardFunction | str | torch.nn.Module]:
    """The reward functions as training binds them: `reward_funcs` (default: the recipe's `args.reward_funcs`), each
    a registry name or `module:function` path (bound with its `reward_kwargs` entry), a callable, a `RewardFunction`,
    or a reward model as TRL takes it (see `as_reward_func`). A reward that reads the judge's scores and takes
    `on_failure` gets `judge_on_failure`, the policy the judge's provider averages repeats with. Raises `RewardError`
    on bad names/kwargs, or on a reward bound with another failure policy."""
    reward_funcs = args.reward_funcs if reward_funcs is None else reward_funcs
    reward_funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    functions = [as_reward_func(f, args) for f in reward_funcs]
    return [with_failure_policy(f, args.judge_on_failure) if isinstance(f, RewardFunction) else f for f in functions]


def answer_settings(args: SelfEvolveConfig) -> dict[str, Any]:
    """The config's answer settings, as reward functions receive them unless bound in `reward_kwargs`."""
    return {"extractor": args.answer_extractor, "match": args.answer_match,
            "abstain_as_answer": args.abstain_as_answer, "tie": args.tie}


def as_reward_func(function, args: SelfEvolveConfig) -> RewardFunction | str | torch.nn.Module:
    """One `reward_funcs` entry as the trainer keeps it: a `RewardFunction` (with the recipe's `reward_kwargs` bound to
    a name), or a reward model as TRL takes it (a name that TRL loads, or an `nn.Module`)."""
    if isinstance(function, (RewardFunction, torch.nn.Module)):
        return function
    if not isinstance(function, str):
        return get_reward_function(function)
    if is_reward_model(function):
        if args.reward_kwargs.get(function):
            raise RewardError(f"reward_kwargs[{function!r}]: a reward model takes no keyword arguments.")
        return function
    return get_reward_function(function, **args.reward_kwargs.get(function, {}))
