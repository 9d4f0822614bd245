"""Held-out evaluation during training: the labelled split that TRL's evaluation loop scores (`eval_strategy`).

TRL's GRPO evaluation generates `num_generations_eval` completions per prompt of the eval split (sampled with the
training sampler) and computes the rewards and the diagnostics in eval mode; with the labels of the split, the
trainer's label metrics are then the evaluation command's scores of those samples (rule-based answer extraction
and `answers.is_equivalent`), logged with TRL's `eval_` prefix:

    eval_labels/rollout_accuracy  sampled pass@1 (mean over the k = num_generations_eval samples of each prompt)
    eval_labels/maj_at_g          maj@k (the majority answer of the k samples is right)
    eval_labels/pass_at_g         pass@k (at least one of the k samples is right)

They are exact over the whole split (one value per prompt, averaged by TRL), so checkpoints can be compared and
chosen; greedy pass@1 needs the evaluation command on the saved checkpoint.
"""

from __future__ import annotations

import dataclasses

from .config import ConfigError
from .data import PRESETS, DataError, load_training_dataset


def eval_requested(training_args) -> bool:
    return str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"


def load_heldout_dataset(data_args, training_args):
    """The labelled eval split named by `data_args.eval_dataset_name`, prepared like the training set, or None.

    The instruction, pixel bounds and column settings are the training set's (a preset other than the training set
    uses its own columns). The synthetic set is drawn with the seed `synthetic_seed + 1` (`eval_max_samples`
    examples, else `synthetic_size`).

    Raises:
        ConfigError: an eval split without `eval_strategy`, or `eval_strategy` without an eval split.
        DataError: an eval split without reference answers.
    """
    name = data_args.eval_dataset_name
    if name is None:
        if eval_requested(training_args):
            raise ConfigError(
                f"eval_strategy is {training_args.eval_strategy.value!r} but eval_dataset_name is not set: name a "
                "labelled split to evaluate on (e.g. eval_dataset_name: geo3k, eval_split: test), or set "
                "eval_strategy: no."
            )
        return None
    if not eval_requested(training_args):
        raise ConfigError(
            f"eval_dataset_name is {name!r} but eval_strategy is 'no': set eval_strategy: steps and eval_steps: N "
            "to evaluate during training, or remove eval_dataset_name."
        )
    same_dataset = name == data_args.dataset_name
    eval_args = dataclasses.replace(
        data_args,
        dataset_name=name,
        dataset_config=data_args.dataset_config if same_dataset else None,
        dataset_split=data_args.eval_split,
        max_train_samples=data_args.eval_max_samples,
        synthetic_size=data_args.eval_max_samples or data_args.synthetic_size,
        synthetic_seed=data_args.synthetic_seed + 1,
    )
    if not same_dataset and name in PRESETS:  # a preset brings its own columns; other files share the training set's
        eval_args = dataclasses.replace(
            eval_args, question_column=None, image_column=None, answer_column=None, label_extractor=None
        )
    dataset = load_training_dataset(eval_args, training_args.label_column)
    labels = dataset[training_args.label_column]
    if not any(label is not None and str(label).strip() for label in labels):
        raise DataError(
            f"The eval split {name!r} ({data_args.eval_split}) has no reference answers: held-out evaluation needs "
            "them (set answer_column for local files)."
        )
    return dataset
