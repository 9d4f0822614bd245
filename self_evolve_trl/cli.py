"""Command line: `python -m self_evolve_trl.cli RECIPE.yaml [--field value ...]`.

The recipe is a flat YAML file (TRL's `TrlParser` conventions: keys of `SelfEvolveConfig`, `DataArguments` and
TRL's `ModelConfig`); flags on the command line override it. Under `accelerate launch` or `torchrun` every process
runs this same command.

Bad input (an unknown reward or advantage, bad reward kwargs, a missing dataset column, a batch that cannot hold
whole groups, ...) stops the run before any model is loaded, with one line naming the problem and the valid
choices, and exit status 2.
"""

from __future__ import annotations

import os
import sys


class UsageError(ValueError):
    """Input the user can fix; printed as one line, without a traceback."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    from .config import ConfigError
    from .data import DataError
    from .images import ImageError
    from .rewards import RewardError

    return (UsageError, ConfigError, DataError, ImageError, RewardError)


def _judge_error_type() -> type[BaseException]:
    from .judge import JudgeUnavailableError

    return JudgeUnavailableError


def _recipe_argv(argv: list[str]) -> list[str]:
    """Accept the recipe as the first positional argument (TRL's parser wants `--config PATH`)."""
    if argv and not argv[0].startswith("-"):
        path = argv[0]
        if not os.path.isfile(path):
            raise UsageError(f"Recipe file not found: {path}")
        return ["--config", path, *argv[1:]]
    return argv


def parse_recipe(argv: list[str]):
    """(DataArguments, SelfEvolveConfig, ModelConfig) from a recipe path and command-line overrides."""
    import yaml
    from trl import ModelConfig, TrlParser

    from .config import DataArguments, SelfEvolveConfig

    class RecipeParser(TrlParser):
        def error(self, message):  # argparse would print the usage of hundreds of fields first
            raise UsageError(message)

    argv = _recipe_argv(argv)
    if "--config" in argv:
        path = argv[argv.index("--config") + 1]
        try:
            with open(path) as f:
                content = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise UsageError(f"Recipe {path} is not valid YAML: {str(error).splitlines()[0]} ({getattr(error, 'problem_mark', '')})".strip()) from None
        if not isinstance(content, dict):
            raise UsageError(f"Recipe {path} must be a YAML mapping of field: value.")
    parser = RecipeParser((DataArguments, SelfEvolveConfig, ModelConfig))
    try:
        data_args, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as error:
        if isinstance(error, _user_error_types()):
            raise
        message = str(error)
        if message.startswith("Unknown arguments from config file"):
            keys = [k[2:] for k in str(error).split("[", 1)[1].split("]")[0].replace("'", "").split(", ") if k.startswith("--")]
            message = f"Unknown recipe field(s): {', '.join(keys)}. See `python -m self_evolve_trl.cli --help` for the valid fields."
        raise UsageError(message.splitlines()[0] if message else repr(error)) from None
    if not model_args.model_name_or_path:
        raise UsageError("model_name_or_path is not set: give a model path, hub id, or 'tiny:qwen2.5-vl'.")
    return data_args, training_args, model_args


def cache_dir() -> str:
    return os.environ.get("SELF_EVOLVE_TRL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "self_evolve_trl"))


def load_processor(model_path: str, data_args, model_args):
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


def train(data_args, training_args, model_args):
    """Build everything from the parsed recipe and train; returns the trainer."""
    from accelerate import PartialState
    from trl import get_peft_config

    from .data import load_training_dataset
    from .heldout import load_heldout_dataset
    from .summary import write_summary
    from .tiny import resolve_tiny_model
    from .trainer import SelfEvolveGRPOTrainer, build_reward_functions

    reward_funcs = build_reward_functions(training_args)  # bad names or kwargs fail here, before any loading
    eval_dataset = load_heldout_dataset(data_args, training_args)  # None unless eval_dataset_name is set
    dataset = load_training_dataset(data_args, training_args.label_column)

    with PartialState().main_process_first():  # one process builds the tiny model, the others reuse it
        try:
            model_path = resolve_tiny_model(model_args.model_name_or_path, cache_dir())
        except ValueError as error:
            raise UsageError(str(error)) from None
    if not os.path.exists(model_path) and model_path.startswith((".", "/", "~")):
        raise UsageError(f"Model path not found: {model_path}")
    processor = load_processor(model_path, data_args, model_args)

    model_init_kwargs = dict(training_args.model_init_kwargs or {})
    model_init_kwargs.setdefault("revision", model_args.model_revision)
    if model_args.dtype is not None:
        model_init_kwargs.setdefault("dtype", model_args.dtype)
    if model_args.attn_implementation is not None:
        model_init_kwargs.setdefault("attn_implementation", model_args.attn_implementation)
    training_args.model_init_kwargs = model_init_kwargs

    try:
        trainer = SelfEvolveGRPOTrainer(
            model=model_path,
            reward_funcs=reward_funcs,
            args=training_args,
            train_dataset=dataset,
            eval_dataset=eval_dataset,
            processing_class=processor,
            peft_config=get_peft_config(model_args),
        )
    except OSError as error:
        raise UsageError(f"Cannot load model {model_path!r}: {str(error).splitlines()[0]}") from None

    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # output_dir/trainer_state.json: the whole log history, for `python -m self_evolve_trl.plot`
    if trainer.accelerator.is_main_process:
        print(write_summary(training_args.output_dir, trainer.state.log_history))
    return trainer


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(__doc__.strip())
        print("\nFields (YAML keys or --flags):")
        from trl import ModelConfig, TrlParser

        from .config import DataArguments, SelfEvolveConfig

        TrlParser((DataArguments, SelfEvolveConfig, ModelConfig)).print_help()
        return 0
    try:
        data_args, training_args, model_args = parse_recipe(argv)
        train(data_args, training_args, model_args)
    except _user_error_types() as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except _judge_error_type() as error:  # the judge failed too often; a checkpoint was saved (Actor–Judge)
        print(f"error: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
