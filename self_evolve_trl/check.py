"""Check a recipe before spending GPU hours:

    python -m self_evolve_trl.cli check RECIPE.yaml [--num_processes N] [--rows N|all] [--timeout S] [--field value ...]

(or `--dry-run` on the training command).

Every problem is reported at once, each with its fix; nothing is trained and no weights are loaded. Checked:

- fields: unknown keys (with the nearest valid name), values of the wrong type, values outside a field's choices;
  a command-line flag that cannot be parsed is reported and left out, the other flags keep their values;
- rewards: names, keyword arguments, weights, and a provider for every extra input a reward needs;
- the batch geometry: per-device batch × processes × steps per generation must hold whole groups of
  `num_generations` (for the process count given with `--num_processes`, default `$WORLD_SIZE` or 1);
- every problem that the config's own validation finds (`SelfEvolveConfig.validation_problems`: the advantage
  settings and which of them combine, CSRS and judge settings too), each reported from the config's own rule, then
  the whole config as the trainer will build it (whatever TRL and transformers reject);
- the dataset: its columns, enough rows for one generation round, and the first rows read and their images decoded
  (`--rows all`: every row, in parallel with a progress bar; each unreadable row listed, a warning where
  `on_bad_row: skip` would skip it in training);
- the model: its config and processor load (not the weights), and a local model folder has weight files;
- the vLLM server (`use_vllm` with `vllm_mode: server`) and the judge endpoint, when configured, answer an HTTP GET;
- `resume_from_checkpoint` and `output_dir`.

The exit status is 0 when the recipe is clean (warnings allowed), 2 when there is any problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any


# Fields whose YAML value may also be a boolean although the dataclass says `str`.
BOOL_ALSO = {"resume_from_checkpoint", "scale_rewards"}  # TRL reads scale_rewards true / false as group / none
# `--rows all`: every row of the dataset is read; the first FIRST_ROWS are read by training before it starts.
ALL_ROWS = -1
FIRST_ROWS = 8
# Keys of a recipe that are not dataclass fields but that TRL's parser understands.
PARSER_KEYS = {"env"}


@dataclass
class Problem:
    """One thing wrong with a recipe: where, what, and how to fix it. Warnings do not fail the check."""

    area: str
    message: str
    fix: str
    warning: bool = False

    def __str__(self) -> str:
        message = self.message if self.message.endswith((".", "?", "!")) else f"{self.message}."
        return f"{self.area}: {message} Fix: {self.fix}"


# ----------------------------------------------------------------------------------------------------------------
# Fields: names and types


def _recipe_types():
    from trl import ModelConfig

    from .config import DataArguments, SelfEvolveConfig

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


# ----------------------------------------------------------------------------------------------------------------
# Parsing without the configs' own validation (so that every problem can be found, not only the first)


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


def _values(obj) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


# ----------------------------------------------------------------------------------------------------------------
# Rewards, advantages, batch geometry


def reward_problems(args) -> list[Problem]:
    from .diagnostics import vote_settings_note
    from .rewards import RewardError, RewardValueError, available_rewards, get_reward_function, is_reward_model
    from .reward_setup import answer_settings
    from .trainer import REWARD_INPUT_PROVIDERS, _import

    problems = []
    reward_funcs = [args.reward_funcs] if isinstance(args.reward_funcs, str) else list(args.reward_funcs or [])
    if not reward_funcs:
        problems.append(Problem("reward_funcs", "no reward function.", f"name at least one of: {', '.join(available_rewards())}."))
    kwargs = args.reward_kwargs
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as error:
            problems.append(Problem("reward_kwargs", f"not valid JSON ({error}).", "write it as a YAML mapping."))
            kwargs = {}
    kwargs = dict(kwargs or {})
    for name, value in kwargs.items():
        if name not in reward_funcs:
            problems.append(Problem(
                "reward_kwargs", f"has an entry for {name!r}, which is not in reward_funcs.",
                f"key it by one of: {', '.join(reward_funcs) or 'the reward_funcs entries'}, or remove it."))
        elif not isinstance(value, dict):
            problems.append(Problem(f"reward_kwargs[{name!r}]", f"must be a mapping, got {value!r}.", "write `{arg: value}`."))
    needed_inputs, built = {}, []
    for name in reward_funcs:
        if is_reward_model(name):  # TRL loads it (a local folder or hub id of a sequence classification model)
            if kwargs.get(name):
                problems.append(Problem(f"reward_kwargs[{name!r}]", "a reward model takes no keyword arguments.",
                                        "remove the entry."))
            continue
        try:
            function = get_reward_function(name)
        except RewardError as error:
            problems.append(Problem(
                f"reward {name!r}", str(error),
                f"use one of: {', '.join(available_rewards())}, or an importable `module:function`."))
            continue
        bound = kwargs.get(name) if isinstance(kwargs.get(name), dict) else {}
        try:
            built.append(get_reward_function(name, **bound))
        except RewardValueError as error:
            problems.append(Problem(f"reward_kwargs[{name!r}]", str(error), "give each argument a value of its type and choices."))
        except RewardError as error:
            accepted = sorted(function.parameters - {"completions", "group_size", "prompts", "completion_ids"})
            problems.append(Problem(
                f"reward_kwargs[{name!r}]", str(error), f"set only: {', '.join(accepted) or 'nothing'}."))
        for needed in function.required_inputs:
            needed_inputs.setdefault(needed, name)
    for needed, name in needed_inputs.items():
        if needed not in REWARD_INPUT_PROVIDERS:
            problems.append(Problem(
                f"reward {name!r}", f"needs the input {needed!r}, which has no provider.",
                f"register one before training: `REWARD_INPUT_PROVIDERS[{needed!r}] = 'module:Class'` "
                "(e.g. in the module that defines the reward)."))
            continue
        try:
            _import(REWARD_INPUT_PROVIDERS[needed])
        except (ImportError, AttributeError, ValueError) as error:
            problems.append(Problem(
                f"provider {needed!r}", f"cannot import {REWARD_INPUT_PROVIDERS[needed]!r}: {error}.",
                "install its module or fix the `module:Class` path."))
    note = vote_settings_note(built, answer_settings(args))
    if note:
        problems.append(Problem("reward_kwargs", note, "bind the same answer settings to every voting reward, if the "
                                "diagnostics should describe each one's vote.", warning=True))
    weights = args.reward_weights
    if weights is not None:
        if len(weights) != len(reward_funcs):
            problems.append(Problem(
                "reward_weights", f"has {len(weights)} entries for {len(reward_funcs)} reward functions.",
                f"give one weight per reward function ({', '.join(reward_funcs)})."))
        bad = [w for w in weights if not isinstance(w, (int, float)) or not math.isfinite(w)]
        if bad:
            problems.append(Problem("reward_weights", f"non-finite weights {bad}.", "use finite numbers."))
    return problems


@dataclass
class Geometry:
    """How many completions and prompts one generation round holds, for a number of processes."""

    num_processes: int
    steps_per_generation: int
    generation_batch_size: int
    num_generations: int

    @property
    def prompts_per_round(self) -> int:
        return self.generation_batch_size // self.num_generations


def batch_problems(args, num_processes: int) -> tuple[Geometry | None, list[Problem]]:
    """Whether the batch holds whole groups: per-device batch × processes × steps per generation vs num_generations."""
    problems = []
    G, per, n = args.num_generations, args.per_device_train_batch_size, num_processes
    spg, gbs = args.steps_per_generation, args.generation_batch_size
    if not all(isinstance(v, int) for v in (G, per, args.gradient_accumulation_steps)):
        return None, problems  # wrong types are reported by field_problems
    if G < 2:
        problems.append(Problem("num_generations", f"is {G}; GRPO needs at least 2 completions per prompt.", "set num_generations: 2 or more (the papers use 8-10)."))
        return None, problems
    if spg is not None and gbs is not None:
        problems.append(Problem(
            "generation_batch_size", "and steps_per_generation are both set.", "set only one of them."))
        return None, problems
    global_batch = per * n
    if gbs is None:
        spg = spg or args.gradient_accumulation_steps
        gbs = global_batch * spg
    elif gbs % global_batch:
        problems.append(Problem(
            "generation_batch_size", f"({gbs}) is not a multiple of per_device_train_batch_size ({per}) × {n} processes.",
            f"use a multiple of {global_batch}."))
        return None, problems
    else:
        spg = gbs // global_batch
    if gbs % G:
        step = G // math.gcd(G, n * spg)
        problems.append(Problem(
            "batch",
            f"per_device_train_batch_size ({per}) × {n} process(es) × steps_per_generation ({spg}) = {gbs} completions "
            f"per generation round, not a whole number of groups of num_generations ({G}).",
            f"make per_device_train_batch_size a multiple of {step} (or change steps_per_generation, the process "
            f"count, or num_generations)."))
    do_eval = getattr(args, "do_eval", False) and str(getattr(args, "eval_strategy", "no")) not in ("no", "IntervalStrategy.NO")
    eval_G = args.num_generations_eval or G
    if do_eval and (args.per_device_eval_batch_size * n) % eval_G:
        problems.append(Problem(
            "per_device_eval_batch_size",
            f"({args.per_device_eval_batch_size}) × {n} process(es) is not a multiple of the evaluation group size ({eval_G}).",
            f"make it a multiple of {eval_G // math.gcd(eval_G, n)}."))
    geometry = Geometry(n, spg, gbs, G)
    iterations = args.num_iterations if isinstance(args.num_iterations, int) else 1
    save_steps = args.save_steps
    if (str(args.save_strategy) in ("steps", "SaveStrategy.STEPS") and isinstance(save_steps, int) and save_steps >= 1
            and (save_steps * args.gradient_accumulation_steps) % (spg * iterations)):
        problems.append(Problem(
            "save_steps",
            f"checkpoints ({save_steps} optimizer steps apart) fall inside a generation round of {spg * iterations} "
            f"micro-batches; a run resumed from one regenerates that round.",
            "make save_steps × gradient_accumulation_steps a multiple of steps_per_generation × num_iterations.",
            warning=True))
    return geometry, problems


def config_field_problems(args, reported: list[Problem]) -> list[Problem]:
    """What `SelfEvolveConfig`'s own validation finds, every problem as its own `Problem`.

    A problem on a field that the more specific checks above already reported (the same area: `advantage`,
    `reward_weights`, ...) is not repeated.
    """
    from .config import SelfEvolveConfig

    names = {f.name for f in dataclasses.fields(SelfEvolveConfig)}
    seen = {p.area for p in reported}
    problems = []
    for message in SelfEvolveConfig.validation_problems(args):
        area = _field_named_in(message, names)
        if area not in seen:
            message = message[len(area) + 1 :] if message.startswith(f"{area} ") else message  # `area: message`
            problems.append(Problem(area, message, "change the field(s) the message names."))
    return problems


def _field_named_in(message: str, names: set[str]) -> str:
    """The first field that `message` names (`reward_kwargs['x']` with its key; paths and URLs aside), or "config"."""
    text = re.sub(r"\S*/\S*", " ", message)
    for word in re.findall(r"[A-Za-z_]\w*(?:\[[^\]]*\])?", text):
        if word.split("[", 1)[0] in names:
            return word
    return "config"


def config_build_problems(args, num_processes: int, batch_reported: bool = False) -> list[Problem]:
    """What TRL and transformers reject in the config, built as the trainer will (this package's own validation,
    reported by `config_field_problems`, is left out).

    The process count is the one checked (not this process's); device checks are left out where this machine has no
    accelerator (a recipe is often checked on a login node). With `batch_reported` (the batch geometry is wrong and
    `batch_problems` said so), TRL's other checks run on a geometry that holds.
    """
    import torch

    from .config import SelfEvolveConfig

    values = _values(args)
    if batch_reported:
        values.update(num_generations=2, num_generations_eval=None, per_device_train_batch_size=2,
                      per_device_eval_batch_size=2, generation_batch_size=None, steps_per_generation=None)
    if num_processes != 1 and values.get("generation_batch_size") is None:
        spg = values.get("steps_per_generation") or values.get("gradient_accumulation_steps")
        values["generation_batch_size"] = values["per_device_train_batch_size"] * num_processes * spg
        values["steps_per_generation"] = None
    if not torch.cuda.is_available():
        values["use_cpu"] = True
    trl_checks_only = type("SelfEvolveConfig", (SelfEvolveConfig,), {"validation_problems": lambda self: [],
                                                                      "__module__": SelfEvolveConfig.__module__})
    try:
        trl_checks_only(**values)
    except Exception as error:  # any rejection by TRL or transformers is a problem of the recipe
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [Problem("config", message, "change the field(s) the message names.")]
    return []


# ----------------------------------------------------------------------------------------------------------------
# Dataset, model, endpoints, output


def first_row_problems(dataset, rows: int) -> list[Problem]:
    """Read the first `rows` rows (decoding and resizing their images); one problem per row that cannot be read.

    (In training such a row would be skipped; unreadable first rows rather mean a wrong image_column or folder.)"""
    from .data import SKIPPED_COLUMN

    problems = []
    for i in range(min(rows, len(dataset))):
        try:
            row = dataset[i]
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            problems.append(Problem(f"dataset row {i}", message, "fix or remove that row (and its image file)."))
            continue
        for index, reason in row.get(SKIPPED_COLUMN) or []:
            if index == i:
                problems.append(Problem(f"dataset row {i}", reason, "fix or remove that row (and its image file)."))
    return problems


def all_row_problems(dataset, args) -> list[Problem]:
    """Every row read (`--rows all`); one problem per unreadable row. With `on_bad_row: skip`, rows beyond the first
    8 (which training reads before it starts) are warnings, unless more than `max_bad_row_share` of them are bad."""
    from .badrows import scan_rows

    bad = scan_rows(dataset)
    policy, limit = getattr(args, "on_bad_row", "stop"), getattr(args, "max_bad_row_share", 0.0)
    too_many = len(bad) > limit * len(dataset)
    problems = [
        Problem(f"dataset row {index}", reason, "fix or remove that row (and its image file).",
                warning=policy == "skip" and index >= FIRST_ROWS and not too_many)
        for index, reason in sorted(bad.items())
    ]
    if bad and policy == "skip" and too_many:
        problems.append(Problem("dataset", f"{len(bad)} of {len(dataset)} rows cannot be read, more than "
                                f"max_bad_row_share {limit}: training would stop.", "fix or remove those rows."))
    return problems


def dataset_problems(data_args, args, geometry: Geometry | None, rows: int) -> list[Problem]:
    from .config import ConfigError, DataArguments
    from .data import DataError, load_training_dataset
    from .images import ImageError

    try:
        DataArguments.__post_init__(data_args)  # the data settings' own validation (the raw recipe skipped it)
    except ConfigError as error:
        from .synthetic import TASKS

        return [Problem("dataset", str(error),
                        f"give synthetic_task one of: {', '.join(TASKS)}, and synthetic_size / synthetic_grid >= 1.")]
    try:
        dataset = load_training_dataset(data_args, args.label_column)
    except (DataError, ImageError) as error:
        return [Problem("dataset", str(error), "point dataset_name at a readable dataset and set question_column / "
                        "image_column / answer_column to its columns.")]
    problems = []
    if geometry is not None and len(dataset) < geometry.prompts_per_round:
        problems.append(Problem(
            "dataset", f"has {len(dataset)} rows; one generation round needs {geometry.prompts_per_round} prompts "
            f"({geometry.generation_batch_size} completions / num_generations {geometry.num_generations}).",
            "use more data or a smaller per_device_train_batch_size / steps_per_generation."))
    return problems + (all_row_problems(dataset, args) if rows == ALL_ROWS else first_row_problems(dataset, rows))


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
                "adapter_model.safetensors", "adapter_model.bin")


def model_problems(model_args, data_args) -> list[Problem]:
    from transformers import AutoConfig

    from .cli import UsageError, load_processor, resolve_model_path

    name = model_args.model_name_or_path
    if not name:
        return [Problem("model_name_or_path", "is not set.", "give a model folder, a hub id, or `tiny:qwen2.5-vl`.")]
    try:
        path = resolve_model_path(name)
    except (UsageError, ValueError) as error:
        return [Problem("model_name_or_path", str(error), "give an existing model folder, a hub id, or `tiny:qwen2.5-vl`.")]
    problems = []
    offline_fix = ("check the name; without network, download the model first (`hf download ...`) and give its folder.")
    try:
        config = AutoConfig.from_pretrained(
            path, revision=model_args.model_revision, trust_remote_code=getattr(model_args, "trust_remote_code", False)
        )
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [Problem("model", f"cannot load the config of {path!r}: {message}", offline_fix)]
    if getattr(config, "vision_config", None) is None:
        problems.append(Problem(
            "model", f"{path!r} ({config.model_type}) has no vision config; the data has images.",
            "use a vision-language model such as Qwen/Qwen2.5-VL-7B-Instruct.", warning=True))
    try:
        load_processor(path, data_args, model_args)
    except UsageError as error:
        problems.append(Problem("processor", str(error), offline_fix))
    if os.path.isdir(path) and not any(os.path.exists(os.path.join(path, f)) for f in WEIGHT_FILES):
        problems.append(Problem("model", f"folder {path} has no weight files ({', '.join(WEIGHT_FILES[:2])}, ...).",
                                "point model_name_or_path at a complete model folder."))
    elif os.path.isdir(path):
        problems += safetensors_problems(path)
    return problems


def safetensors_problems(folder: str) -> list[Problem]:
    """Weight files whose header cannot be read or that are shorter than it says (a cut-off download or copy).

    Only the headers are read, not the weights."""
    from safetensors import SafetensorError, safe_open

    problems = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        try:
            with safe_open(os.path.join(folder, name), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            problems.append(Problem("model", f"weight file {os.path.join(folder, name)} is unreadable ({error}).",
                                    "download or copy the model again."))
    return problems


def http_problem(area: str, url: str, timeout: float, healthy_only: bool, fix: str, shown=str) -> Problem | None:
    """None if `url` answers a GET within `timeout` seconds (any status, or only 2xx when `healthy_only`); the
    problem shows the URL as `shown` writes it."""
    import requests

    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as error:
        return Problem(area, f"{shown(url)} is not reachable ({type(error).__name__}).", fix)
    if response.status_code >= (300 if healthy_only else 500):
        return Problem(area, f"{shown(url)} answered HTTP {response.status_code}.", fix)
    return None


def _join_url(base: str, path: str) -> str:
    """`base` with `/path` added to its path (its query string kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + path))


def endpoint_problems(args, timeout: float) -> list[Problem]:
    problems = []
    if args.use_vllm and args.vllm_mode == "server":
        base = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
        problem = http_problem(
            "vllm server", f"{base.rstrip('/')}/health", timeout, healthy_only=True,
            fix=f"start it first (`trl vllm-serve --model MODEL --port {args.vllm_server_port}` on its own GPUs) or "
                "fix vllm_server_host / vllm_server_port / vllm_server_base_url.")
        if problem:
            problems.append(problem)
        if args.vllm_weight_sync == "nccl" and args.use_cpu:  # (`check` may run on a node without the GPUs)
            problems.append(Problem(
                "vllm_weight_sync", "'nccl' streams the weights to the server over NCCL, which needs CUDA on the "
                "trainer; this trainer runs on the CPU.", "set vllm_weight_sync: disk (the server reloads the weights "
                "from vllm_weight_sync_dir)."))
    judge_url = getattr(args, "judge_base_url", None)  # fields of the judge, where that feature is installed
    if judge_url and getattr(args, "judge_backend", None) == "openai":  # the `reference` judge has no endpoint
        from .judge.backends import redacted_url

        problem = http_problem(
            "judge (openai)", _join_url(judge_url, "models"), timeout, healthy_only=False, shown=redacted_url,
            fix="start the judge server (an OpenAI-compatible endpoint, e.g. `vllm serve JUDGE_MODEL`) or fix judge_base_url.")
        if problem:
            problems.append(problem)
    return problems


def output_dir_problems(output_dir: str) -> list[Problem]:
    """Whether `output_dir` can be made and written: the folder, or the nearest one above it that exists."""
    existing = os.path.abspath(os.path.expanduser(output_dir or "."))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return [Problem("output_dir", f"{existing} is a file, not a folder.", "choose another output_dir.")]
    if not os.access(existing, os.W_OK):
        return [Problem("output_dir", f"{existing} is not writable.", "choose an output_dir you can write to.")]
    return []


def output_problems(args) -> list[Problem]:
    from .checkpoints import CheckpointError, latest_checkpoint, resolve_resume_from_checkpoint

    output_dir = str(args.output_dir or "")
    problems = output_dir_problems(output_dir)
    try:
        resume = resolve_resume_from_checkpoint(args.resume_from_checkpoint, output_dir)
    except CheckpointError as error:
        problems.append(Problem("resume_from_checkpoint", str(error).split(": ", 1)[-1], "give a checkpoint folder, or `last`."))
        return problems
    if resume is None and args.resume_from_checkpoint in (None, False) and output_dir and latest_checkpoint(output_dir):
        problems.append(Problem(
            "output_dir", f"already holds {os.path.basename(latest_checkpoint(output_dir))}; a fresh run writes next to it.",
            "set resume_from_checkpoint: last to continue it, or choose a new output_dir.", warning=True))
    return problems


# ----------------------------------------------------------------------------------------------------------------
# The whole check


@dataclass
class CheckReport:
    recipe: str
    num_processes: int
    problems: list[Problem]
    checked: list[str]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    def format(self) -> str:
        lines = [f"Checked {self.recipe} for {self.num_processes} process(es): {', '.join(self.checked)}."]
        for problem in self.problems:
            lines.append(f"  {'warning' if problem.warning else 'problem'}: {problem}")
        errors = len(self.errors)
        lines.append(f"{errors} problem(s)." if errors else "No problems: the recipe is ready to train.")
        return "\n".join(lines)


def load_recipe(path: str) -> dict[str, Any]:
    """The recipe's YAML mapping; `ValueError` with one line for a missing file or malformed YAML."""
    import yaml

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


def check_recipe(recipe: str, overrides: list[str] = (), num_processes: int | None = None, rows: int = 8,
                 timeout: float = 3.0) -> CheckReport:
    """Check a recipe (and command-line overrides) without training; return every problem found."""
    import datasets

    datasets.disable_progress_bars()
    num_processes = num_processes or int(os.environ.get("WORLD_SIZE", "1"))
    try:
        content = load_recipe(recipe)
    except ValueError as error:
        return CheckReport(recipe, num_processes, [Problem("recipe", str(error), "fix the YAML syntax there.")], ["YAML"])
    from .cli import without_stale_reward_settings

    content, dropped = without_stale_reward_settings(content, list(overrides))  # as training reads --reward_funcs
    problems = field_problems(content)
    if dropped:
        problems.append(Problem("reward_funcs", dropped, "nothing, if that is what you meant.", warning=True))
    bad_keys = {p.area for p in problems}
    (data_args, args, model_args), parse_problems = parse_raw(
        {k: v for k, v in content.items() if k not in bad_keys and k not in PARSER_KEYS}, list(overrides)
    )
    problems += parse_problems
    problems += reward_problems(args)
    problems += config_field_problems(args, problems)
    geometry, batch = batch_problems(args, num_processes)
    problems += batch
    problems += config_build_problems(args, num_processes, batch_reported=any(not p.warning for p in batch))
    problems += dataset_problems(data_args, args, geometry, rows)
    problems += model_problems(model_args, data_args)
    problems += endpoint_problems(args, timeout)
    problems += output_problems(args)
    read = "every row" if rows == ALL_ROWS else f"first {rows} rows"
    checked = ["fields", "rewards", "advantages", "batch geometry", "config", f"dataset ({read})",
               "model config and processor", "endpoints", "output_dir"]
    return CheckReport(recipe, num_processes, problems, checked)


def main(argv: list[str]) -> int:
    """`check RECIPE.yaml [--num_processes N] [--rows N|all] [--timeout S] [--field value ...]`; exit 0 clean, 2 otherwise."""
    argv = list(argv)
    options = {"--num_processes": None, "--rows": 8, "--timeout": 3.0}
    for option, default in list(options.items()):
        for spelling in (option, option.replace("_", "-")):
            if spelling in argv:
                i = argv.index(spelling)
                try:
                    value = argv[i + 1]
                    all_rows = option == "--rows" and value == "all"
                    options[option] = ALL_ROWS if all_rows else type(default or 1)(value)
                except (IndexError, ValueError):
                    print(f"error: {spelling} needs a number{' or all' if option == '--rows' else ''}.", file=sys.stderr)
                    return 2
                del argv[i : i + 2]
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if not argv or argv[0].startswith("-"):
        print("error: usage: python -m self_evolve_trl.cli check RECIPE.yaml [--num_processes N] [--field value ...]",
              file=sys.stderr)
        return 2
    report = check_recipe(argv[0], argv[1:], options["--num_processes"], options["--rows"], options["--timeout"])
    print(report.format())
    return 2 if report.errors else 0
