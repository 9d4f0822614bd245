"""`DataArguments`: which dataset a recipe trains on, its columns, the actor instruction, the image size bounds, the
synthetic task, and the labelled split evaluated during training; `data_setting_problems`, their one rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError, Problem, choice_problems
from . import BENCHMARK_PREFIX, DEFAULT_INSTRUCTION
from .synthetic import TASKS as SYNTHETIC_TASKS


@dataclass
class DataArguments:
    r"""
    Data arguments of a recipe: which dataset, which columns, the actor instruction and the image size bounds.

    Parameters:
        dataset_name (`str`, *optional*, defaults to `"synthetic"`):
            A preset (`geo3k`, `geoqa`, `mmr1`, `synthetic`), a hub dataset id, or a local parquet/jsonl/json/csv file
            or folder of them; or `eval:NAME`, the questions of a benchmark of the evaluation command (test-time RL:
            its answers go to the hidden label column, its prompts are the evaluation prompts).
        dataset_config (`str`, *optional*):
            Hub dataset configuration name.
        dataset_split (`str`, *optional*, defaults to `"train"`):
            Split to train on. For a benchmark (`eval:NAME`): its split(s), comma-separated, as the evaluation
            command's `--split` (`train`, which no benchmark has, reads the benchmark's own splits).
        question_column (`str`, *optional*):
            Column with the question text (default: the preset's, else `problem`).
        image_column (`str`, *optional*):
            Column with the image or list of images (default: the preset's, else `images` or `image`; `none`, or no
            such column, for a text-only dataset, whose prompts are plain text).
        answer_column (`str`, *optional*):
            Column with reference answers, moved to the hidden label column (default: the preset's; `none` for no
            labels).
        label_extractor (`str`, *optional*):
            How the reference answer is read from `answer_column`: `null` (the column is the answer, or what its
            `<answer>` tags hold when it has them), `answer_tag` (inside `<answer>` tags, as GeoQA's `solution`) or
            `boxed`.
        max_train_samples (`int`, *optional*):
            Keep only the first N examples (for a benchmark: the evaluation command's `--limit`).
        benchmark_data_dir (`str`, *optional*):
            For `eval:NAME`: the folder of local benchmark copies named after the benchmarks (`DIR/mathvision`, ...),
            as the evaluation command's `--data-dir`; the hub otherwise.
        instruction (`str`, *optional*):
            Actor instruction appended to every question.
        min_pixels (`int`, *optional*):
            Lower bound on image pixels (Qwen resizing); also set on the processor.
        max_pixels (`int`, *optional*):
            Upper bound on image pixels (Qwen resizing); also set on the processor.
        synthetic_task (`str`, *optional*, defaults to `"count"`):
            Task of the synthetic dataset: `count` (how many coloured cells), `count_color` (how many red cells),
            `count_two_colors` (how many red and blue cells in total: two counts, then a sum) or `add` (text only:
            "What is a + b?", for text-only models).
        synthetic_size (`int`, *optional*, defaults to `64`):
            Number of synthetic examples.
        synthetic_grid (`int`, *optional*, defaults to `2`):
            Cells per side of a synthetic image (each cell is one 28x28 Qwen patch group).
        synthetic_seed (`int`, *optional*, defaults to `0`):
            Seed of the synthetic dataset.

        > Held-out evaluation during training (with `eval_strategy: steps`, `eval_steps`, `num_generations_eval`)

        eval_dataset_name (`str`, *optional*):
            A labelled split to evaluate on during training: a preset, hub id or local file, as `dataset_name`
            (`synthetic`: drawn with `synthetic_seed + 1`). Logs `eval_labels/*` (sampled pass@1, maj@k, pass@k).
        eval_split (`str`, *optional*, defaults to `"test"`):
            Split of `eval_dataset_name`.
        eval_max_samples (`int`, *optional*):
            Evaluate on the first N examples only.
    """

    dataset_name: str = field(
        default="synthetic",
        metadata={"help": "Preset (geo3k, geoqa, mmr1, synthetic), hub id, or local parquet/jsonl/json/csv path."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    question_column: str | None = field(default=None, metadata={"help": "Column with the question text."})
    image_column: str | None = field(default=None, metadata={"help": "Column with the image(s); `none`: text only."})
    answer_column: str | None = field(
        default=None, metadata={"help": "Column with reference answers (hidden label); `none` for no labels."}
    )
    label_extractor: str | None = field(
        default=None, metadata={"help": "How the reference answer is read: null, `answer_tag` or `boxed`."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N examples."})
    benchmark_data_dir: str | None = field(
        default=None, metadata={"help": "For eval:NAME: folder of local benchmark copies (the eval command's --data-dir)."}
    )
    instruction: str = field(
        default=DEFAULT_INSTRUCTION, metadata={"help": "Actor instruction appended to every question."}
    )
    min_pixels: int | None = field(default=None, metadata={"help": "Lower bound on image pixels."})
    max_pixels: int | None = field(default=None, metadata={"help": "Upper bound on image pixels."})
    synthetic_task: str = field(
        default="count", metadata={"help": "Synthetic task.", "choices": list(SYNTHETIC_TASKS)}
    )
    synthetic_size: int = field(default=64, metadata={"help": "Number of synthetic examples."})
    synthetic_grid: int = field(default=2, metadata={"help": "Cells per side of a synthetic image."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic dataset."})

    # Held-out evaluation during training (self_evolve_trl.training.heldout)
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Labelled split to evaluate on during training (preset, hub id or local file); needs eval_strategy."},
    )
    eval_split: str = field(default="test", metadata={"help": "Split of eval_dataset_name."})
    eval_max_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples only."})

    def __post_init__(self):
        problems = data_setting_problems(self)
        if problems:
            raise ConfigError(" | ".join(problem.line for problem in problems))


def data_setting_problems(args) -> list[Problem]:
    """The problems of the data settings that can be judged without reading the data (the synthetic task's)."""
    problems = choice_problems("synthetic_task", args.synthetic_task, SYNTHETIC_TASKS)
    for name in ("synthetic_size", "synthetic_grid"):
        if getattr(args, name) < 1:
            problems.append(Problem(name, f"must be at least 1, got {getattr(args, name)}."))
    names = (args.dataset_name, getattr(args, "eval_dataset_name", None))
    if getattr(args, "benchmark_data_dir", None) and not any(str(name).startswith(BENCHMARK_PREFIX) for name in names if name):
        problems.append(Problem(
            "benchmark_data_dir", f"is set but no dataset is a benchmark ({BENCHMARK_PREFIX}NAME).",
            f"set dataset_name: {BENCHMARK_PREFIX}NAME (e.g. {BENCHMARK_PREFIX}mathvision), or remove benchmark_data_dir."))
    return problems
