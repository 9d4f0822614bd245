"""The registry of reward functions: names to functions, and `RewardFunction`, a function with its recipe keyword
arguments bound.

Built-in names map to `"module:function"` strings, imported on first use, so that importing the registry imports no
reward module. `register_reward(name, target)` adds one; `get_reward_function(name, **kwargs)` returns it bound.

A reward function may declare two attributes that the registry reads: `reward_inputs`, the extra inputs the trainer
computes for it (e.g. `("judge_scores",)`), and `reward_choices`, the valid values of some of its keyword arguments
(e.g. `{"on_failure": ("zero", "neutral")}`), checked when it is bound.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import threading
import types
import typing
from collections.abc import Callable
from typing import Any

from ..answers import EXTRACTORS, MATCH_MODES
from ..plugins import import_module, split_path
from ..voting import TIE_RULES


# name -> "module:attribute". Lazy, so that importing the registry does not import every backend.
REWARD_REGISTRY: dict[str, str] = {
    "majority_vote": "self_evolve_trl.rewards.consistency:majority_vote",
    "soft_frequency": "self_evolve_trl.rewards.consistency:soft_frequency",
    "format": "self_evolve_trl.rewards.format:format_reward",
    "retrace_frequency": "self_evolve_trl.csrs.reward:retrace_frequency",  # CSRS (needs the re-inferences)
    "judge_modulated": "self_evolve_trl.judge.reward:judge_modulated",
    "self_certainty": "self_evolve_trl.certainty.reward:self_certainty",  # Intuitor (needs the policy's logits)
    "token_entropy": "self_evolve_trl.certainty.reward:token_entropy",  # RENT (needs the policy's logits)
    "ttrl_vote": "self_evolve_trl.ttrl.reward:ttrl_vote",  # TTRL (needs the extra votes)
}


def register_reward(name: str, target: str | Callable) -> None:
    """Add a reward function to the registry under `name` (a callable, or a `"module:attribute"` path)."""
    REWARD_REGISTRY[name] = target


def available_rewards() -> list[str]:
    return sorted(REWARD_REGISTRY)


class RewardError(ValueError):
    """A reward function that cannot be found or configured; the message names the valid choices."""


class RewardValueError(RewardError):
    """A keyword argument of a reward function with a value it cannot take (wrong type, unknown choice)."""


# Keyword arguments that several of this package's rewards share (the answer settings), with their valid values.
SHARED_CHOICES: dict[str, tuple[str, ...]] = {"extractor": EXTRACTORS, "match": MATCH_MODES, "tie": TIE_RULES}


def _fits(value: Any, annotation: Any) -> bool:
    """Whether `value` fits a simple type annotation (int, float, str, bool, None, unions, containers); True for
    annotations it cannot judge."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, dict, tuple, set):
        return isinstance(value, origin)
    return True


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _value_problem(name: str, value: Any, annotation: Any, choices: tuple[str, ...] | None) -> str | None:
    if choices is not None and value not in choices:
        return f"{name}={value!r} is not one of: {', '.join(choices)}"
    if annotation is not inspect.Parameter.empty and not _fits(value, annotation):
        return f"{name}={value!r} is not a {_type_name(annotation)}"
    if name.endswith("pattern") and isinstance(value, str):
        try:
            re.compile(value)
        except re.error as error:
            return f"{name}={value!r} is not a valid regular expression ({error})"
    return None


def _import_target(path: str) -> Callable:
    try:
        module_name, attribute = split_path(path)  # also TRL's dotted form: my_pkg.rewards.my_reward
    except ValueError:
        raise RewardError(f"Cannot read reward path {path!r}: use 'module:function' (or 'module.function').") from None
    try:
        module = import_module(module_name)
    except ImportError as error:
        raise RewardError(f"Cannot import module {module_name!r} for reward {path!r}: {error}") from error
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RewardError(f"Module {module_name!r} has no function {attribute!r} (reward {path!r}).") from None


def is_reward_model(name: str) -> bool:
    """Whether a `reward_funcs` entry names a reward model, as TRL takes one: a local folder or a hub id
    (`org/name`) of a sequence classification model, rather than a registry name or a `module:function` path.

    Example:

    ```python
    >>> is_reward_model("soft_frequency"), is_reward_model("my_rewards:length"), is_reward_model("org/reward-model")
    (False, False, True)

    ```
    """
    if name in REWARD_REGISTRY or ":" in name:
        return False
    return os.path.isdir(name) or "/" in name


def _resolve(name: str) -> Callable:
    target = REWARD_REGISTRY.get(name)
    if target is None:
        if ":" not in name and "." not in name:
            raise RewardError(
                f"Unknown reward {name!r}. Valid rewards: {', '.join(available_rewards())}; "
                "or give your own as 'module:function', or a reward model as a local folder or a hub id 'org/name'."
            )
        target = name
    return _import_target(target) if isinstance(target, str) else target


_EVENT_LOOP: asyncio.AbstractEventLoop | None = None
_EVENT_LOOP_LOCK = threading.Lock()


def _await(coroutine) -> Any:
    """The result of an async reward function's coroutine, run on one event loop on a daemon thread (TRL's helper,
    started at the first async reward): the same loop for every call, so that async clients a reward keeps between
    calls stay usable, and usable while another loop runs in this thread (a notebook)."""
    global _EVENT_LOOP
    with _EVENT_LOOP_LOCK:
        if _EVENT_LOOP is None:
            import atexit

            from trl.trainer.utils import shutdown_event_loop_in_daemon, start_event_loop_in_daemon

            thread, loop, ready = start_event_loop_in_daemon(name="self-evolve-async-rewards")
            ready.wait()
            atexit.register(shutdown_event_loop_in_daemon, thread, loop)
            _EVENT_LOOP = loop
    return asyncio.run_coroutine_threadsafe(coroutine, _EVENT_LOOP).result()


class RewardFunction:
    """A reward function with its recipe keyword arguments bound.

    Calling it with `completions` and `group_size` (and any other inputs it names) returns one float per completion.
    `call_with(inputs)` passes only the inputs that the function's signature names; bound keyword arguments win
    over inputs of the same name.
    """

    def __init__(self, name: str, function: Callable, kwargs: dict[str, Any] | None = None):
        self.name = name
        self.__name__ = name.rsplit(":", 1)[-1].rsplit(".", 1)[-1]  # what TRL logs as rewards/<name>/mean
        self.function = function
        self.kwargs = dict(kwargs or {})
        self.signature = inspect.signature(function)
        self.takes_var_kwargs = any(p.kind is p.VAR_KEYWORD for p in self.signature.parameters.values())
        self.parameters = {
            n for n, p in self.signature.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        if "completions" not in self.parameters and not self.takes_var_kwargs:
            raise RewardError(f"Reward {name!r} must take a `completions` argument; its signature is {self.signature}.")
        unknown = sorted(set(self.kwargs) - self.parameters) if not self.takes_var_kwargs else []
        if unknown:
            accepted = sorted(self.parameters - {"completions", "group_size", "prompts", "completion_ids"})
            raise RewardError(
                f"Reward {name!r} got unknown keyword argument(s) {', '.join(unknown)}; "
                f"it accepts: {', '.join(accepted) or 'none'}."
            )
        self._check_values()
        self.required_inputs = getattr(function, "reward_inputs", ())

    def _check_values(self) -> None:
        try:
            hints = typing.get_type_hints(self.function)
        except Exception:  # noqa: BLE001 - annotations that do not resolve: check the choices only
            hints = {}
        # the shared answer settings have this package's meaning in this package's rewards; others get type checks
        ours = getattr(self.function, "__module__", "").startswith("self_evolve_trl.")
        choices = {**(SHARED_CHOICES if ours else {}), **getattr(self.function, "reward_choices", {})}
        problems = [
            problem
            for key, value in self.kwargs.items()
            if (problem := _value_problem(key, value, hints.get(key, inspect.Parameter.empty), choices.get(key)))
            is not None
        ]
        if problems:
            raise RewardValueError(f"Reward {self.name!r}: {'; '.join(problems)}.")

    def accepts(self, name: str) -> bool:
        return self.takes_var_kwargs or name in self.parameters

    def call_with(self, inputs: dict[str, Any]) -> list[float]:
        """Call with the inputs that the signature names (all of them for a `**kwargs` function); an async
        function's coroutine is awaited."""
        selected = {k: v for k, v in inputs.items() if self.accepts(k) and k not in self.kwargs}
        rewards = self.function(**selected, **self.kwargs)
        if inspect.isawaitable(rewards):  # an async reward function
            rewards = _await(rewards)
        return list(rewards)

    def __call__(self, completions: list[Any], group_size: int | None = None, **inputs: Any) -> list[float]:
        inputs = {"completions": completions, **inputs}
        if group_size is not None:
            inputs["group_size"] = group_size
        return self.call_with(inputs)

    def __repr__(self) -> str:
        return f"RewardFunction({self.name!r}, kwargs={self.kwargs!r})"


def get_reward_function(name: str | Callable, **kwargs: Any) -> RewardFunction:
    """A reward function by registry name or `module:function` path, with `kwargs` bound.

    Raises `RewardError` naming the valid rewards, or the accepted keyword arguments, when either is wrong.
    """
    if callable(name):
        return RewardFunction(getattr(name, "__name__", type(name).__name__), name, kwargs)
    return RewardFunction(name, _resolve(name), kwargs)
