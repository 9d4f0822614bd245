"""The dataset a recipe names, for training, held-out evaluation and `check`: a benchmark of the evaluation command
(`dataset_name: eval:NAME`, test-time RL: `eval.as_training`) or any other dataset (`data.load_training_dataset`).

The data layer sits below eval and cannot read a benchmark, so the choice is made here, the first layer that sees
both.
"""

from __future__ import annotations

from ..data import BENCHMARK_PREFIX, LABEL_COLUMN, DataError, load_training_dataset
from ..eval import EvalConfig, EvalError
from ..eval.as_training import benchmark_training_set

# `dataset_split`'s default: no benchmark has a split of that name, so it reads the benchmark's own splits.
DEFAULT_SPLIT = "train"


def benchmark_name(dataset_name: str | None) -> str | None:
    """The benchmark that `dataset_name` names (`eval:mathvision` -> `mathvision`), or None for any other dataset.

    Example:

    ```python
    >>> benchmark_name("eval:mathvision"), benchmark_name("geoqa")
    ('mathvision', None)

    ```
    """
    if dataset_name and dataset_name.startswith(BENCHMARK_PREFIX):
        return dataset_name[len(BENCHMARK_PREFIX):].strip()
    return None


def benchmark_eval_config(data_args, name: str) -> EvalConfig:
    """The evaluation command's settings that read benchmark `name` as the recipe's data settings say: its local copy
    (`benchmark_data_dir`), splits (`dataset_split`), `limit` (`max_train_samples`), instruction and pixel bounds.
    `python -m self_evolve_trl.eval` with the same flags shows the same prompts."""
    split = data_args.dataset_split
    return EvalConfig(
        benchmarks=[name],
        data_dir=data_args.benchmark_data_dir,
        splits={name: split} if split and split != DEFAULT_SPLIT else {},
        limit=data_args.max_train_samples,
        instruction=data_args.instruction,
        min_pixels=data_args.min_pixels,
        max_pixels=data_args.max_pixels,
    )


def recipe_dataset(data_args, label_column: str = LABEL_COLUMN):
    """The dataset of `data_args.dataset_name`, prepared for the trainer (`prompt`, `images`, the hidden label, ...).

    Raises:
        DataError: a dataset or benchmark that cannot be read (an unknown benchmark, a missing local copy or split).
    """
    name = benchmark_name(data_args.dataset_name)
    if name is None:
        return load_training_dataset(data_args, label_column)
    if not name:
        raise DataError(f"dataset_name {data_args.dataset_name!r} names no benchmark: use {BENCHMARK_PREFIX}NAME.")
    try:
        return benchmark_training_set(benchmark_eval_config(data_args, name), label_column)
    except EvalError as error:
        raise DataError(f"{data_args.dataset_name}: {error}") from None

