"""Resuming a run: which checkpoint to resume from, and our own state saved with every checkpoint.

Transformers' `Trainer` checkpoints the model, optimizer, scheduler, RNG states and `trainer_state.json`; TRL adds its
own controller state. What the trainer of this package adds lives outside them: reward-input providers and reward
functions that keep state across steps (running statistics, an RNG, ...; the built-in judge and CSRS providers
keep none, CSRS seeds its noise by step) and the run's non-finite counters. Any such component that implements

    state_dict() -> dict          # tensors, numbers, strings, None, and lists / tuples / dicts of them
    load_state_dict(state) -> None

is saved by `SelfEvolveGRPOTrainer` into each checkpoint (`self_evolve_state_rank{N}.pt`, one file per process,
since providers run on every process) and restored when training resumes from that checkpoint.

`resume_from_checkpoint` takes a checkpoint path, or `true` / `last` / `latest`: the latest complete checkpoint in
`output_dir`, or a fresh start when there is none yet (so a preempted job can be requeued with the same command).
A checkpoint is complete when its `trainer_state.json` reads as JSON and, for a checkpoint written by this package
(one with `self_evolve_state_rank{N}.pt` files), when it has `self_evolve_complete.json`: the marker that the main
process writes at the very end of the save, once every process has written all its files (TRL and transformers
write more after `trainer_state.json`, and the other processes write their own RNG state and shards). A checkpoint
cut short by a kill is skipped. A checkpoint of plain transformers/TRL (no state files of ours) counts as complete
when its `trainer_state.json` reads.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from typing import Any

import torch
from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger(__name__)

STATE_FILE = "self_evolve_state_rank{rank}.pt"
TRAINER_STATE_FILE = "trainer_state.json"
COMPLETE_FILE = "self_evolve_complete.json"
LATEST_CHECKPOINT = ("true", "last", "latest")
NO_CHECKPOINT = ("", "false", "none", "null", "no")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint to resume from that does not exist or is incomplete; the message names the path."""


def incomplete_reason(path: str) -> str | None:
    """Why checkpoint folder `path` is not complete (see the module's docstring), or None if it is."""
    try:
        with open(os.path.join(path, TRAINER_STATE_FILE)) as f:
            json.load(f)
    except FileNotFoundError:
        return f"no {TRAINER_STATE_FILE}"
    except (OSError, ValueError):  # cut off mid-write: not JSON (or not text)
        return f"its {TRAINER_STATE_FILE} does not read as JSON"
    if glob.glob(os.path.join(glob.escape(path), STATE_FILE.format(rank="*"))) and not os.path.isfile(
        os.path.join(path, COMPLETE_FILE)
    ):
        return f"no {COMPLETE_FILE}: its save did not finish"
    return None


def is_complete_checkpoint(path: str) -> bool:
    """Whether `path` is a checkpoint folder whose save finished (see the module's docstring)."""
    return incomplete_reason(path) is None


def unmark_checkpoint_complete(checkpoint_dir: str) -> None:
    """Remove the completion marker of a checkpoint about to be written again (the same step saved twice)."""
    try:
        os.remove(os.path.join(checkpoint_dir, COMPLETE_FILE))
    except FileNotFoundError:
        pass


def mark_checkpoint_complete(checkpoint_dir: str, global_step: int, world_size: int) -> str:
    """Write the completion marker of `checkpoint_dir` (atomically); call once every process has saved."""
    path = os.path.join(checkpoint_dir, COMPLETE_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump({"global_step": global_step, "world_size": world_size}, f)
    os.replace(path + ".tmp", path)
    return path


def latest_checkpoint(output_dir: str) -> str | None:
    """The latest complete `checkpoint-N` folder in `output_dir` (None if there is none).

    Transformers' `get_last_checkpoint` picks the highest step; a checkpoint that a kill cut short is skipped for
    the previous complete one.
    """
    if not os.path.isdir(output_dir):
        return None
    last = get_last_checkpoint(output_dir)
    if last is None or is_complete_checkpoint(last):
        return last
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := _CHECKPOINT_DIR.match(name)) and is_complete_checkpoint(os.path.join(output_dir, name))
    )
    if steps:
        logger.warning("Checkpoint %s is incomplete (the run was killed while saving it); using %s.", last, steps[-1][1])
        return os.path.join(output_dir, steps[-1][1])
    logger.warning("Checkpoint %s is incomplete and there is no earlier one.", last)
    return None


def resolve_resume_from_checkpoint(value: Any, output_dir: str) -> str | None:
    """The checkpoint folder to resume from, for the recipe's `resume_from_checkpoint` value.

    `None`/`false` -> None (start fresh); `true`/`last`/`latest` -> the latest complete checkpoint in `output_dir`,
    or None when there is none; a path -> that path, which must be a complete checkpoint (`CheckpointError`).
    """
    if value is None or value is False:
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in LATEST_CHECKPOINT):
        return latest_checkpoint(output_dir)
    if isinstance(value, str) and value.strip().lower() in NO_CHECKPOINT:
        return None
    path = str(value)
    if not os.path.isdir(path):
        raise CheckpointError(
            f"resume_from_checkpoint: checkpoint folder not found: {path} (use `last` for the latest in output_dir)."
        )
    reason = incomplete_reason(path)
    if reason is not None:
        raise CheckpointError(
            f"resume_from_checkpoint: {path} is not a complete checkpoint ({reason}); "
            f"use `last` to pick the latest complete one in output_dir."
        )
    return path


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def has_full_weights(checkpoint_dir: str) -> bool:
    return any(os.path.isfile(os.path.join(checkpoint_dir, name)) for name in WEIGHT_FILES)


def load_model_weights(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Load a full-model checkpoint into `model` the way `from_pretrained` reads it, strictly.

    Transformers' `Trainer._load_from_checkpoint` (5.17) calls `model.load_state_dict` on the saved file as is. But
    `save_pretrained` writes the original checkpoint layout of models with a weight conversion mapping (Qwen2.5-VL:
    `visual.*`, `model.layers.*`) while the model's own names are `model.visual.*`, `model.language_model.*`: no key
    matches, only a warning is logged, and the "resumed" run trains on from the initial weights (transformers issue
    #43701). Reading the checkpoint with `from_pretrained` applies the conversion; `strict=True` makes any remaining
    mismatch an error instead of a warning.
    """
    loaded = type(model).from_pretrained(checkpoint_dir, dtype="auto")
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded


_INDEXED_CPU = re.compile(r"cpu:\d+")
_indexed_cpu_registered = False


def _indexed_cpu_deserialize(storage, location: str):
    return storage if _INDEXED_CPU.fullmatch(location) else None


def accept_indexed_cpu_map_location() -> None:
    """Let `torch.load(..., map_location=torch.device("cpu", 0))` restore CPU tensors.

    In a multi-process CPU run (gloo) accelerate's device is `cpu:0`, and transformers loads the optimizer state with
    `map_location=args.device` whenever there is more than one process; torch restores only the location `"cpu"`
    and fails with "don't know how to restore data location ... (tagged with cpu:0)". This registers, once, a
    deserializer (torch's public `register_package`) that treats `cpu:N` as the CPU.
    """
    global _indexed_cpu_registered
    if not _indexed_cpu_registered:
        # priority 15: after torch's own CPU entry (10), before the accelerators (20+); a priority no torch entry uses
        torch.serialization.register_package(15, lambda storage: None, _indexed_cpu_deserialize)
        _indexed_cpu_registered = True


def stateful_components(trainer) -> dict[str, Any]:
    """The trainer's components with `state_dict`/`load_state_dict`, by a stable key."""
    candidates: dict[str, Any] = {"nonfinite_counter": getattr(trainer, "nonfinite_counter", None),
                                  "bad_rows": getattr(trainer, "bad_rows", None),
                                  "diagnostics_by_kind": getattr(trainer, "diagnostics_by_kind", None)}
    for name, provider in getattr(trainer, "reward_input_providers", {}).items():
        candidates[f"reward_input:{name}"] = provider
    for function in getattr(trainer, "reward_funcs", []):
        inner = getattr(function, "function", function)
        candidates[f"reward:{getattr(function, 'name', getattr(function, '__name__', repr(function)))}"] = inner
    return {
        key: component
        for key, component in candidates.items()
        if callable(getattr(component, "state_dict", None)) and callable(getattr(component, "load_state_dict", None))
        and not isinstance(component, torch.nn.Module)  # models are checkpointed by the Trainer itself
    }


def save_last_completed_step(trainer) -> str | None:
    """Save a checkpoint of the last completed step, for a run that stops in the middle of the next one (the step
    being generated is lost); return its folder, or None when no step has completed. Call on every process together."""
    step = trainer.state.global_step
    if step == 0:
        return None
    trainer._save_checkpoint(trainer.model_wrapped, trial=None)
    return f"{trainer._get_output_dir(trial=None)}/checkpoint-{step}"


def save_component_states(trainer, checkpoint_dir: str) -> str | None:
    """Write this process's stateful components to `checkpoint_dir` (atomically); return the file, if any."""
    components = stateful_components(trainer)
    if not components:
        return None
    rank = trainer.accelerator.process_index
    state = {
        "world_size": trainer.accelerator.num_processes,
        "components": {key: component.state_dict() for key, component in components.items()},
    }
    os.makedirs(checkpoint_dir, exist_ok=True)
    path = os.path.join(checkpoint_dir, STATE_FILE.format(rank=rank))
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # a kill mid-write leaves the previous file or none, never half of one
    return path


def load_component_states(trainer, checkpoint_dir: str) -> list[str]:
    """Restore the stateful components from `checkpoint_dir`; return the keys restored.

    Each process reads its own rank's file; after a change of process count, a rank without a file reads rank 0's.
    A component with no saved state (a checkpoint written before it existed) keeps its fresh state, with a warning.
    """
    components = stateful_components(trainer)
    if not components:
        return []
    rank = trainer.accelerator.process_index
    path = os.path.join(checkpoint_dir, STATE_FILE.format(rank=rank))
    if not os.path.isfile(path):
        fallback = os.path.join(checkpoint_dir, STATE_FILE.format(rank=0))
        if not os.path.isfile(fallback):
            logger.warning("Checkpoint %s has no saved state for %s; they start fresh.", checkpoint_dir, ", ".join(components))
            return []
        logger.warning("Checkpoint %s has no state file for process %d; using process 0's.", checkpoint_dir, rank)
        path = fallback
    saved = torch.load(path, map_location="cpu", weights_only=True)["components"]
    restored = []
    for key, component in components.items():
        if key in saved:
            component.load_state_dict(saved[key])
            restored.append(key)
        else:
            logger.warning("Checkpoint %s has no saved state for %s; it starts fresh.", checkpoint_dir, key)
    return restored
