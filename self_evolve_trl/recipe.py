"""Read a recipe: its YAML mapping, the field types of its dataclasses, and the parsed
`(DataArguments, SelfEvolveConfig, ModelConfig)`; also the model path and processor that a recipe names.

A recipe is one flat YAML file read by TRL's `TrlParser`: keys of `SelfEvolveConfig`, `DataArguments` and TRL's
`ModelConfig` side by side; command-line flags override it. `parse_recipe` is what training reads (the configs'
own validation runs: the first problem stops it); `field_problems` and `parse_raw` are what `check` reads (every
problem found, the configs' values left unvalidated).

trl, transformers and the configs are imported inside the functions that need them: `cli --help` and the other
commands start without them.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import os
import re
import types
import typing
from typing import Any

import yaml

from .errors import ConfigError, Problem, UsageError

# Fields whose YAML value may also be a boolean although the dataclass says `str`.
BOOL_ALSO = {"resume_from_checkpoint", "scale_rewards"}  # TRL reads scale_rewards true / false as group / none
# Keys of a recipe that are not dataclass fields but that TRL's parser understands.
PARSER_KEYS = {"env"}


def user_error_types() -> tuple[type[BaseException], ...]:
    """The errors a user can fix (a recipe, its data, a checkpoint): printed as one line, exit status 2."""
    from .training.checkpoints import CheckpointError
    from .data import DataError
    from .data.images import ImageError
    from .rewards import RewardError

    return (UsageError, ConfigError, DataError, ImageError, RewardError, CheckpointError)


def _recipe_types():
    """The dataclasses of a recipe (imported here: trl and the configs are slow to import)."""
    from trl import ModelConfig

    from .data.arguments import DataArguments

    from .training.config import SelfEvolveConfig

    return (DataArguments, SelfEvolveConfig, ModelConfig)


def _field_specs(dataclass_types) -> dict[str, tuple[Any, dataclasses.Field]]:
    specs = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                specs[f.name] = (hints[f.name], f)
    return specs


def _union_args(tp) -> tuple | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _is_enum(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _accepts(value: Any, tp) -> bool:
    """Whether TRL's parser and the dataclass would take `value` (from YAML) for a field of type `tp`."""
    if tp is Any or tp is object:
        return True
    members = _union_args(tp)
    if members is not None:
        if value is None:
            return type(None) in members
        enums = [m for m in members if _is_enum(m)]
        if enums and isinstance(value, str):  # `SaveStrategy | str`: the string must name a member
            return any(value in {e.value for e in m} for m in enums)
        return any(_accepts(value, m) for m in members if m is not type(None))
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):  # one value for a list: some configs take it (`lora_target_modules: all-linear`)
            return not isinstance(value, (dict, list)) and _accepts(value, inner)
        return all(_accepts(v, inner) for v in value)
    if origin is dict or tp is dict:
        if isinstance(value, str):
            try:
                return isinstance(json.loads(value), dict)
            except json.JSONDecodeError:
                return False
        return isinstance(value, dict)
    if tp is bool:
        if isinstance(value, str):  # argparse converts a string default with the field's type
            return value.strip().lower() in ("true", "false", "yes", "no", "t", "f", "y", "n", "1", "0")
        return isinstance(value, bool)
    if tp is int:
        if isinstance(value, str):
            try:
                int(value)
                return True
            except ValueError:
                return False
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        if isinstance(value, str):
            try:
                float(value)
                return True
            except ValueError:
                return False
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if _is_enum(tp):
        return isinstance(value, tp) or value in {e.value for e in tp}
    return True  # other classes (e.g. ParallelismConfig): left to the config itself


def _describe(tp) -> str:
    members = _union_args(tp)
    if members is not None:
        enums = any(_is_enum(m) for m in members)  # `SaveStrategy | str`: the string must name a member
        names = [_describe(m) for m in members if m is not type(None) and not (enums and m is str)]
        text = " or ".join(dict.fromkeys(names))
        return f"{text} (or null)" if type(None) in members else text
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return f"a list of {_describe(inner).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or tp is dict:
        return "a mapping"
    if _is_enum(tp):
        return "one of " + ", ".join(repr(e.value) for e in tp)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def field_problems(content: dict[str, Any], dataclass_types=None) -> list[Problem]:
    """Unknown keys and values of the wrong type or outside a field's choices, for a recipe's YAML mapping."""
    specs = _field_specs(dataclass_types or _recipe_types())
    problems = []
    for key, value in content.items():
        if key in PARSER_KEYS:
            continue
        if key not in specs:
            close = difflib.get_close_matches(key, list(specs), n=1, cutoff=0.75)
            fix = f"did you mean `{close[0]}`?" if close else "remove it; `python -m self_evolve_trl.cli --help` lists the fields."
            problems.append(Problem(key, "unknown field.", fix))
            continue
        tp, f = specs[key]
        if key in BOOL_ALSO and isinstance(value, bool):
            continue
        if not _accepts(value, tp):
            problems.append(Problem(key, f"expected {_describe(tp)}, got {value!r}.", f"write `{key}:` as {_describe(tp)}."))
            continue
        choices = f.metadata.get("choices")
        if choices and value is not None and value not in choices:
            problems.append(
                Problem(key, f"{value!r} is not a valid choice.", f"use one of: {', '.join(map(str, choices))}.")
            )
    return problems


def _without_validation(cls):
    """A subclass of dataclass `cls` whose `__post_init__` does nothing: the raw values of a recipe."""
    return type(cls.__name__, (cls,), {"__post_init__": lambda self: None, "__module__": cls.__module__})


def _without_flag(overrides: list[str], message: str) -> list[str] | None:
    """`overrides` without the flag that argparse's `message` names (and its values); None if none matches.

    The flag may be written as the message names it (`--learning_rate` or `--learning-rate`, `--flag=value`) or
    abbreviated (argparse accepts a unique prefix).
    """
    head = message.split(": ", 1)[0] if message.startswith("argument ") else message  # not the value quoted after
    named = set(re.findall(r"--[\w-]+", head))
    flags = [i for i, item in enumerate(overrides) if item.startswith("--")]
    spelled = {i: overrides[i].split("=", 1)[0] for i in flags}
    bad = [i for i in flags if spelled[i] in named] or [
        i for i in flags if len(spelled[i]) > 2 and any(n.startswith(spelled[i]) for n in named)]
    if not bad:
        return None
    kept, skipping = [], False
    for i, item in enumerate(overrides):
        if item.startswith("--"):
            skipping = i in bad
        if not skipping:
            kept.append(item)
    return kept


def parse_raw(content: dict[str, Any], overrides: list[str]) -> tuple[tuple, list[Problem]]:
    """(DataArguments, SelfEvolveConfig, ModelConfig) with the recipe's and the command line's values, unvalidated.

    Keys with problems (see `field_problems`) are left at their defaults; a command-line flag that argparse rejects
    (a value of the wrong type, an ambiguous abbreviation) is reported and left out, the other flags kept.
    """
    from trl import TrlParser

    class Parser(TrlParser):
        def error(self, message):
            raise ValueError(message)

    raw_types = tuple(_without_validation(cls) for cls in _recipe_types())
    problems = []
    attempt = list(overrides)
    while True:
        parser = Parser(raw_types)
        parser.set_defaults_with_config(**content)
        try:
            *parsed, remaining = parser.parse_args_into_dataclasses(args=attempt, return_remaining_strings=True)
        except ValueError as error:
            if not attempt:
                raise AssertionError("unreachable: parsing without overrides cannot fail on the command line")
            message = str(error).splitlines()[0]
            problems.append(Problem("command line", message, "fix or remove that flag."))
            kept = _without_flag(attempt, message)
            attempt = kept if kept is not None else []  # a message that names no flag given: drop them all
            continue
        flags = [item for item in remaining if item.startswith("--")]
        for flag in flags:
            name = flag[2:].split("=", 1)[0].replace("-", "_")
            close = difflib.get_close_matches(name, list(_field_specs(_recipe_types())), n=1, cutoff=0.75)
            problems.append(
                Problem(flag, "unknown command-line flag.", f"did you mean `--{close[0]}`?" if close else "remove it.")
            )
        return tuple(parsed), problems


def load_recipe(path: str) -> dict[str, Any]:
    """The recipe's YAML mapping; `ValueError` with one line for a missing file or malformed YAML."""

    if not os.path.isfile(path):
        raise ValueError(f"Recipe file not found: {path}")
    try:
        with open(path) as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"Recipe {path} is not valid YAML{where}: {problem}.") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ValueError(f"Recipe {path} must be a YAML mapping of field: value, got a {type(content).__name__}.")
    return content


def _recipe_argv(argv: list[str]) -> list[str]:
    """Accept the recipe as the first positional argument (TRL's parser wants `--config PATH`)."""
    if argv and not argv[0].startswith("-"):
        path = argv[0]
        if not os.path.isfile(path):
            raise UsageError(f"Recipe file not found: {path}")
        return ["--config", path, *argv[1:]]
    return argv


def without_stale_reward_settings(config: dict, argv: list[str]) -> tuple[dict, str | None]:
    """The recipe's YAML mapping without the reward settings that a `--reward_funcs` on the command line makes stale,
    and one line saying what was dropped (None if nothing): the `reward_kwargs` entries of functions no longer listed
    and `reward_weights` of another length, unless the command line gives those too."""

    flags = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("reward_funcs", "reward_kwargs", "reward_weights"):
        flags.add_argument(f"--{name}", f"--{name.replace('_', '-')}", nargs="+")
    given = flags.parse_known_args(argv)[0]
    if given.reward_funcs is None:
        return config, None
    config, dropped = dict(config), []
    kwargs = config.get("reward_kwargs")
    stale = [name for name in kwargs if name not in given.reward_funcs] if isinstance(kwargs, dict) else []
    if given.reward_kwargs is None and stale:
        config["reward_kwargs"] = {name: value for name, value in kwargs.items() if name not in stale}
        dropped.append(f"reward_kwargs of {', '.join(stale)}")
    weights = config.get("reward_weights")
    if given.reward_weights is None and isinstance(weights, list) and len(weights) != len(given.reward_funcs):
        del config["reward_weights"]
        dropped.append(f"reward_weights {weights} ({len(weights)} for {len(given.reward_funcs)} function(s))")
    if not dropped:
        return config, None
    return config, f"--reward_funcs {' '.join(given.reward_funcs)}: dropped from the recipe: {'; '.join(dropped)}."


def parse_recipe(argv: list[str]):
    """(DataArguments, SelfEvolveConfig, ModelConfig) from a recipe path and command-line overrides."""
    from trl import ModelConfig, TrlParser

    from .data.arguments import DataArguments

    from .training.config import SelfEvolveConfig

    class RecipeParser(TrlParser):
        def error(self, message):  # argparse would print the usage of hundreds of fields first
            raise UsageError(message)

        def set_defaults_with_config(self, **config):  # the YAML's values, before the flags override them
            config, note = without_stale_reward_settings(config, argv)
            if note and os.environ.get("RANK", "0") == "0":
                print(note)
            return super().set_defaults_with_config(**config)

    argv = _recipe_argv(argv)
    if "--config" in argv:
        path = argv[argv.index("--config") + 1]
        try:
            content = load_recipe(path)
        except ValueError as error:
            raise UsageError(str(error)) from None
        problems = field_problems(content)  # unknown fields and wrong types, all of them, before TRL's parser
        if problems:
            unknown = [p for p in problems if p.message == "unknown field."]
            parts = [str(p) for p in problems if p not in unknown]
            if unknown:
                hints = "".join(f" ({p.area}: {p.fix})" for p in unknown if p.fix.startswith("did you mean"))
                parts.insert(0, f"Unknown recipe field(s): {', '.join(p.area for p in unknown)}.{hints} "
                                "See `python -m self_evolve_trl.cli --help` for the valid fields.")
            raise UsageError(f"Recipe {path}: " + " | ".join(parts))
    parser = RecipeParser((DataArguments, SelfEvolveConfig, ModelConfig))
    try:
        data_args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as error:
        if isinstance(error, user_error_types()):
            raise
        message = str(error)
        if message.startswith("Unknown arguments from config file"):
            keys = [k[2:] for k in str(error).split("[", 1)[1].split("]")[0].replace("'", "").split(", ") if k.startswith("--")]
            message = f"Unknown recipe field(s): {', '.join(keys)}. See `python -m self_evolve_trl.cli --help` for the valid fields."
        elif message.startswith("Some specified arguments are not used"):
            flags = [k for k in message.split("[", 1)[1].split("]")[0].replace("'", "").split(", ") if k.startswith("--")]
            message = f"Unknown command-line flag(s): {', '.join(flags)}. See `python -m self_evolve_trl.cli --help` for the valid fields."
        raise UsageError(message.splitlines()[0] if message else repr(error)) from None
    if not model_args.model_name_or_path:
        raise UsageError("model_name_or_path is not set: give a model path, hub id, or 'tiny:qwen2.5-vl'.")
    return data_args, training_args, model_args


def resolve_model_path(model_name_or_path: str) -> str:
    """The model folder or hub id of a recipe (`tiny:...` is built offline); `UsageError` for a missing local path."""
    from .data.tiny import cache_dir, resolve_tiny_model

    try:
        model_path = resolve_tiny_model(model_name_or_path, cache_dir())
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not os.path.exists(model_path) and model_path.startswith((".", "/", "~")):
        raise UsageError(f"Model path not found: {model_path}")
    return model_path


def load_processor(model_path: str, data_args, model_args):
    """The model's processor, with the recipe's image size bounds; `UsageError` if it cannot be loaded."""
    from transformers import AutoProcessor

    kwargs = {"padding_side": "left", "revision": model_args.model_revision}
    if data_args.min_pixels is not None:
        kwargs["min_pixels"] = data_args.min_pixels
    if data_args.max_pixels is not None:
        kwargs["max_pixels"] = data_args.max_pixels
    try:
        return AutoProcessor.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError) as error:
        raise UsageError(f"Cannot load the processor of {model_path!r}: {str(error).splitlines()[0]}") from None


