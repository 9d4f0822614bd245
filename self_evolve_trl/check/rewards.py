"""The reward functions of a recipe, as far as a check can tell without training: each name resolves, takes its
keyword arguments, and has a provider for every extra input it needs (the reward settings' own rule is the
config's, `reward_setting_problems`).

The registry and the training stack (torch, transformers, TRL) are imported inside the functions, when a check runs."""

from __future__ import annotations

from ..errors import Problem


def reward_problems(args) -> list[Problem]:
    """The problems of the reward settings (`reward_funcs`, `reward_kwargs`, `reward_weights`) and of the functions
    they name."""
    from ..training.config import reward_setting_problems  # trl and torch: imported when a check runs

    return reward_setting_problems(args, reward_function_problems)


def reward_function_problems(args) -> list[Problem]:
    """What the registry finds in `args.reward_funcs` bound with `args.reward_kwargs` (both normalised by the
    config's rule): unknown names, keyword arguments a function does not take or values it refuses, inputs without a
    provider, and rewards that vote with different answer settings (a warning)."""
    # The registry and the trainer import torch and transformers: imported when a check runs.
    from ..training.diagnostics import vote_settings_note
    from ..rewards import is_reward_model
    from ..training.reward_setup import answer_settings

    problems, needed_inputs, built = [], {}, []
    for name in args.reward_funcs:
        kwargs = args.reward_kwargs.get(name)
        if is_reward_model(name):  # TRL loads it (a local folder or hub id of a sequence classification model)
            if kwargs:
                problems.append(Problem(f"reward_kwargs[{name!r}]", "a reward model takes no keyword arguments.",
                                        "remove the entry."))
            continue
        function, bound, function_problems = _resolved(name, kwargs if isinstance(kwargs, dict) else {})
        problems += function_problems
        if bound is not None:
            built.append(bound)
        for needed in function.required_inputs if function is not None else ():
            needed_inputs.setdefault(needed, name)
    problems += _provider_problems(needed_inputs)
    note = vote_settings_note(built, answer_settings(args))
    if note:
        problems.append(Problem("reward_kwargs", note, "bind the same answer settings to every voting reward, if the "
                                "diagnostics should describe each one's vote.", warning=True))
    return problems


def _resolved(name: str, kwargs: dict):
    """(the registry's function, it bound with `kwargs` or None, the problems) for one `reward_funcs` entry."""
    from ..rewards import RewardError, RewardValueError, available_rewards, get_reward_function

    try:
        function = get_reward_function(name)
    except RewardError as error:
        return None, None, [Problem(f"reward {name!r}", str(error),
                                    f"use one of: {', '.join(available_rewards())}, or an importable `module:function`.")]
    try:
        return function, get_reward_function(name, **kwargs), []
    except RewardValueError as error:
        return function, None, [Problem(f"reward_kwargs[{name!r}]", str(error),
                                        "give each argument a value of its type and choices.")]
    except RewardError as error:
        accepted = sorted(function.parameters - {"completions", "group_size", "prompts", "completion_ids"})
        return function, None, [Problem(f"reward_kwargs[{name!r}]", str(error),
                                        f"set only: {', '.join(accepted) or 'nothing'}.")]


def _provider_problems(needed_inputs: dict[str, str]) -> list[Problem]:
    """A problem per extra reward input (`needed_inputs`: input -> the first reward needing it) whose provider is not
    registered or cannot be imported."""
    from ..plugins import import_object
    from ..training.trainer import REWARD_INPUT_PROVIDERS

    problems = []
    for needed, name in needed_inputs.items():
        if needed not in REWARD_INPUT_PROVIDERS:
            problems.append(Problem(
                f"reward {name!r}", f"needs the input {needed!r}, which has no provider.",
                f"register one before training: `REWARD_INPUT_PROVIDERS[{needed!r}] = 'module:Class'` "
                "(e.g. in the module that defines the reward)."))
            continue
        try:
            import_object(REWARD_INPUT_PROVIDERS[needed])
        except (ImportError, AttributeError, ValueError) as error:
            problems.append(Problem(
                f"provider {needed!r}", f"cannot import {REWARD_INPUT_PROVIDERS[needed]!r}: {error}.",
                "install its module or fix the `module:Class` path."))
    return problems
