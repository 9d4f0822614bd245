"""The batch geometry of a recipe for a number of processes, and what TRL and transformers reject in the config as
the trainer will build it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import Problem


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


def _values(obj) -> dict[str, Any]:
    """The init fields of a dataclass instance, by name."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}



def config_build_problems(args, num_processes: int, batch_reported: bool = False) -> list[Problem]:
    """What TRL and transformers reject in the config, built as the trainer will (this package's own validation,
    `SelfEvolveConfig.validation_problems`, is left out).

    The process count is the one checked (not this process's); device checks are left out where this machine has no
    accelerator (a recipe is often checked on a login node). With `batch_reported` (the batch geometry is wrong and
    `batch_problems` said so), TRL's other checks run on a geometry that holds.
    """
    import torch

    from ..training.config import SelfEvolveConfig

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
