"""A benchmark's questions as a training set, for test-time RL (training on a benchmark's own questions, without
their answers, and then scoring the model on the same benchmark).

The benchmark is read exactly as the evaluation command reads it (`load_benchmark`: the hub or a local copy, its
splits, `limit`, MathVerse's problem version), and each item becomes one training row of `data.prepare_dataset`'s
shape:

- `prompt`: the evaluation command's prompt (`runner.build_conversation`): the question, the choice hint of its answer
  type and the instruction;
- `images`: the item's images, read and resized when the row is read, as for any training set;
- the label column: the benchmark's reference answer, which only the diagnostics read;
- `uid`: the item's id. No other column of the benchmark is kept, so no reward sees its answers or solutions.

The training command reaches this module through `training.datasets` (`dataset_name: eval:NAME`); the data layer
below knows nothing of the benchmarks.
"""

from __future__ import annotations

from ..data import DEFAULT_INSTRUCTION, LABEL_COLUMN, prepare_dataset
from .benchmarks import get_benchmark
from .config import EvalConfig, check_data
from .runner import load_benchmarks, question_with_hint

# The columns that hold a row's question (with its choice hint) and reference while the training rows are built.
QUESTION_COLUMN = "__question"
REFERENCE_COLUMN = "__reference"


def benchmark_training_set(config: EvalConfig, label_column: str = LABEL_COLUMN):
    """The training rows of the one benchmark of `config` (a `datasets.Dataset` with its images transform).

    `config` holds what the evaluation command would be given: the benchmark, its local copy (`data` / `data_dir`;
    the hub otherwise), `splits`, `limit`, `mathverse_version`, the instruction, the choice hints and the pixel
    bounds. The prompts are then the very prompts that `python -m self_evolve_trl.eval` shows for the same flags.

    Raises:
        EvalError: an unknown benchmark, a missing local copy or split, a copy without the benchmark's columns.
    """
    if len(config.benchmarks) != 1:
        raise ValueError(f"benchmark_training_set reads one benchmark, got {config.benchmarks}.")
    bench = get_benchmark(config.benchmarks[0])
    check_data(config, [bench])
    (loaded,) = load_benchmarks(config, [bench])
    instruction = DEFAULT_INSTRUCTION if config.instruction is None else config.instruction
    items = loaded.items
    columns = {QUESTION_COLUMN: [question_with_hint(item, config.choice_hint, config.choices_hint) for item in items],
               REFERENCE_COLUMN: [item.reference for item in items], "uid": [item.id for item in items]}
    if loaded.image_column is None:  # a text benchmark: the rows are its items' texts
        raw = type(loaded.dataset).from_dict(columns)
    else:
        raw = loaded.dataset.select([item.row for item in items]).select_columns([loaded.image_column])
        for name, values in columns.items():
            raw = raw.add_column(name, values)
    return prepare_dataset(
        raw,
        question_column=QUESTION_COLUMN,
        image_column=loaded.image_column,
        answer_column=REFERENCE_COLUMN,
        instruction=instruction,
        label_column=label_column,
        min_pixels=config.min_pixels,
        max_pixels=config.max_pixels,
        base_dir=loaded.base_dir,
        source=f"{bench.title} ({loaded.source})",
    )
