"""Command line: `self-evolve-trl train RECIPE.yaml [--field value ...]` (the same as
`python -m self_evolve_trl.cli RECIPE.yaml [--field value ...]`); `self-evolve-trl --help` lists the commands
(train, check, eval, plot).

`python -m self_evolve_trl.cli check RECIPE.yaml [--num_processes N] [--field value ...]` (or `--dry-run` on the
training command) checks the recipe without training and lists every problem with its fix (see `check/`).

The recipe is a flat YAML file (TRL's `TrlParser` conventions: keys of `SelfEvolveConfig`, `DataArguments` and
TRL's `ModelConfig`); flags on the command line override it. A `--reward_funcs` flag also drops the recipe's
`reward_kwargs` entries and `reward_weights` that no longer fit the new list, and says so. Under `accelerate launch`
or `torchrun` every process runs this same command.

Bad input (an unknown reward or advantage, bad reward kwargs, a missing dataset column, a batch that cannot hold
whole groups, ...) stops the run before any model is loaded, with one line naming the problem and the valid
choices, and exit status 2; the output directory is not created (or, if the trainer had created it, removed again
while still empty). `resume_from_checkpoint: last` resumes from the latest complete checkpoint in output_dir.

torch, TRL and the training stack are imported inside the functions that run a command, so that `--help` and the
other commands start without them.
"""

from __future__ import annotations

import os
import sys

from .check import main as check_main
from .errors import JudgeUnavailableError, UsageError
from .recipe import load_processor, parse_recipe, resolve_model_path, user_error_types


def _remove_empty_dirs(path: str) -> None:
    """Remove `path` and its subfolders if they hold no file (never a file, never a folder with one)."""
    for root, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(root)
        except OSError:
            pass


def _raised_while_loading_a_model(error: BaseException) -> bool:
    """Whether `error` came from loading a model's weights (TRL's `create_model_from_path`, a `from_pretrained`),
    rather than from something else the trainer does as it starts (creating output_dir, ...)."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name in ("create_model_from_path", "from_pretrained"):
            return True
        frame = frame.tb_next
    return False


def add_before_summary(trainer, callback) -> None:
    """Register `callback` before the trainer's `SummaryCallback`, so the summary sees what it logs at the end."""
    from .training.summary import SummaryCallback

    callbacks = trainer.callback_handler.callbacks
    index = next((i for i, c in enumerate(callbacks) if isinstance(c, SummaryCallback)), len(callbacks))
    callbacks.insert(index, callback)


def _checked_inputs(data_args, training_args):
    """(reward functions, training dataset, eval dataset or None, checkpoint to resume from or None), each checked
    before any model is loaded: a file in the way of output_dir, bad reward names or kwargs, unreadable first rows."""
    from .check.environment import first_row_problems, output_dir_problems
    from .training.checkpoints import resolve_resume_from_checkpoint
    from .training.datasets import recipe_dataset
    from .training.heldout import load_heldout_dataset
    from .training.reward_setup import build_reward_functions

    bad_output = output_dir_problems(training_args.output_dir)  # a file in the way fails now, not in the trainer
    if bad_output:
        raise UsageError(" | ".join(str(problem) for problem in bad_output))
    reward_funcs = build_reward_functions(training_args)  # bad names or kwargs fail here, before any loading
    eval_dataset = load_heldout_dataset(data_args, training_args)  # None unless eval_dataset_name is set
    resume = resolve_resume_from_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    dataset = recipe_dataset(data_args, training_args.label_column)
    bad_rows = first_row_problems(dataset, rows=8)  # unreadable images fail now, not after the model is loaded
    if bad_rows:
        more = f" (and {len(bad_rows) - 1} more of the first rows)" if len(bad_rows) > 1 else ""
        raise UsageError(f"{bad_rows[0].area}: {bad_rows[0].message}{more}")
    return reward_funcs, dataset, eval_dataset, resume


def _set_model_init_kwargs(training_args, model_args) -> None:
    """The recipe's `model_revision`, `dtype` and `attn_implementation` as TRL's `model_init_kwargs` (those already
    there win)."""
    model_init_kwargs = dict(training_args.model_init_kwargs or {})
    model_init_kwargs.setdefault("revision", model_args.model_revision)
    if model_args.dtype is not None:
        model_init_kwargs.setdefault("dtype", model_args.dtype)
    if model_args.attn_implementation is not None:
        model_init_kwargs.setdefault("attn_implementation", model_args.attn_implementation)
    training_args.model_init_kwargs = model_init_kwargs


def _build_trainer(model_path: str, model_args, **kwargs):
    """The trainer (`kwargs`: SelfEvolveGRPOTrainer's); `UsageError` for model weights that cannot be loaded."""
    from safetensors import SafetensorError
    from trl import get_peft_config

    from .training.trainer import SelfEvolveGRPOTrainer

    try:
        return SelfEvolveGRPOTrainer(model=model_path, peft_config=get_peft_config(model_args), **kwargs)
    except (OSError, SafetensorError) as error:  # missing files; a corrupt or truncated weight file
        if not _raised_while_loading_a_model(error):
            raise
        raise UsageError(f"Cannot load model {model_path!r}: {str(error).splitlines()[0]}") from None


def train(data_args, training_args, model_args):
    """Build everything from the parsed recipe and train; returns the trainer."""
    from accelerate import PartialState

    from .training.before_after import BeforeAfterCallback
    from .training.console import use_console
    from .data import with_pixel_bounds
    from .data.images import processor_patch_size, processor_pixel_bounds

    reward_funcs, dataset, eval_dataset, resume = _checked_inputs(data_args, training_args)
    with PartialState().main_process_first():  # one process builds the tiny model, the others reuse it
        model_path = resolve_model_path(model_args.model_name_or_path)
    processor = load_processor(model_path, data_args, model_args)
    # Images resized within the processor's bounds (the recipe's where it sets them, else the model's own), which the
    # processor and a vLLM engine with the same bounds then leave unchanged.
    bounds = (*processor_pixel_bounds(processor), processor_patch_size(processor))  # 28- or 32-pixel units
    dataset = with_pixel_bounds(dataset, *bounds)
    eval_dataset = None if eval_dataset is None else with_pixel_bounds(eval_dataset, *bounds)
    _set_model_init_kwargs(training_args, model_args)

    created_output_dir = not os.path.exists(training_args.output_dir)
    trainer = None
    try:
        trainer = _build_trainer(model_path, model_args, reward_funcs=reward_funcs, args=training_args,
                                 train_dataset=dataset, eval_dataset=eval_dataset, processing_class=processor)
        use_console(trainer)
        if training_args.accuracy_before_after:
            add_before_summary(trainer, BeforeAfterCallback(eval_dataset, dataset, processor, training_args.label_column))
        if training_args.resume_from_checkpoint not in (None, False) and resume is None and trainer.accelerator.is_main_process:
            print(f"No checkpoint in {training_args.output_dir} yet: starting from step 0.")
        trainer.train(resume_from_checkpoint=resume)
    except user_error_types():
        for callback in trainer.callback_handler.callbacks if trainer is not None else []:
            if getattr(callback, "training_bar", None) is not None:  # end the progress line before the error line
                callback.training_bar.close()
        if created_output_dir:  # a failed start leaves nothing behind
            _remove_empty_dirs(training_args.output_dir)
        raise
    # The run summary (printed, and summary.txt / summary.json in output_dir) was written at the end of `train` by
    # the trainer's `SummaryCallback`.
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # output_dir/trainer_state.json: the whole log history, for `python -m self_evolve_trl.plot`
    trainer.accelerator.wait_for_everyone()  # every process is done before `main` ends the process group
    return trainer


# name -> (what it does, one example); `train` is also what a recipe path as the first argument runs.
COMMANDS = {
    "train": ("Train a model without labels from a recipe (YAML); flags override its fields.",
              "self-evolve-trl train recipes/tiny-cpu.yaml --max_steps 50"),
    "check": ("Check a recipe without training: every problem found, each with its fix.",
              "self-evolve-trl check recipes/geoqa.yaml --num_processes 8"),
    "eval": ("Evaluate a model or checkpoint on the papers' benchmarks (greedy pass@1, maj@k).",
             "self-evolve-trl eval --model outputs/tiny-cpu --benchmarks geo3k --data geo3k=PATH"),
    "plot": ("Draw a run's training curves (PNG) from its trainer_state.json.",
             "self-evolve-trl plot outputs/tiny-cpu"),
}


def usage() -> str:
    """The top-level help: the commands, one line each, and an example of each."""
    lines = ["usage: self-evolve-trl COMMAND [ARGS ...]",
             "       python -m self_evolve_trl.cli RECIPE.yaml [--field value ...]   (the same as: train RECIPE.yaml ...)",
             "", "Label-free (self-evolution) GRPO for vision-language models, on TRL.", "", "commands:"]
    lines += [f"  {name:<6} {what}" for name, (what, _) in COMMANDS.items()]
    lines += ["", "examples:"] + [f"  {example}" for _, example in COMMANDS.values()]
    lines += ["", "`self-evolve-trl COMMAND --help` for a command's arguments (`train --help`: every recipe field)."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    what, example = COMMANDS[name]
    return f"self-evolve-trl {name}: {what}\nexample: {example}\n"


def _train_help() -> int:
    from trl import ModelConfig, TrlParser

    from .data.arguments import DataArguments

    from .training.config import SelfEvolveConfig

    print(command_help("train"))
    print(__doc__.strip())
    print("\nFields (YAML keys or --flags):")
    TrlParser((DataArguments, SelfEvolveConfig, ModelConfig)).print_help()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, rest = (argv[0], argv[1:]) if argv[0] in COMMANDS else ("train", argv)
    asks_help = rest[:1] in (["-h"], ["--help"])
    if command == "eval":
        from .eval.__main__ import main as eval_main

        if asks_help:
            print(command_help("eval"))
        return eval_main(rest)
    if command == "plot":
        from .plot import main as plot_main

        if asks_help:
            print(command_help("plot"))
        return plot_main(rest)
    if command == "check" or "--dry-run" in rest or "--dry_run" in rest:
        if asks_help:
            print(command_help("check"))
        rest = [a for a in rest if a not in ("--dry-run", "--dry_run")]
        return check_main(rest[1:] if rest[:1] == ["--config"] else rest)
    if asks_help:
        return _train_help()
    return _train(rest)


def _train(argv: list[str]) -> int:
    try:
        data_args, training_args, model_args = parse_recipe(argv)
        train(data_args, training_args, model_args)
    except user_error_types() as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except JudgeUnavailableError as error:  # the judge failed too often; a checkpoint was saved
        print(f"error: {error}", file=sys.stderr)
        return 3
    finally:
        _destroy_process_group()
    return 0


def _destroy_process_group() -> None:
    """End a multi-process run's process group before the interpreter exits: left to the interpreter's finalization,
    gloo's worker threads can abort a process that has finished its work (SIGABRT, "terminate called without an
    active exception"; pytorch/pytorch#190489)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
