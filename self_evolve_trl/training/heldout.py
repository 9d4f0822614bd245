"""Held-out evaluation during training: the labelled split that TRL's evaluation loop scores (`eval_strategy`).

TRL's GRPO evaluation generates `num_generations_eval` completions per prompt of the eval split (sampled with the
training sampler) and computes the rewards and the diagnostics in eval mode. With the labels of the split, three
label metrics are then the evaluation command's scores of those samples (`python -m self_evolve_trl.eval`: answers
read by its rules, `\\boxed{}` > `<answer>` > "the answer is ...", and scored as free-form answers with the
math-aware equivalence), so that a checkpoint chosen here is the one the evaluation command would choose:

    eval_labels/rollout_accuracy  sampled pass@1 (mean over the k = num_generations_eval samples of each prompt)
    eval_labels/maj_at_g          maj@k (the majority answer of the k samples is right)
    eval_labels/pass_at_g         pass@k (at least one of the k samples is right)

Scoring is free-form whatever the split holds: the training-set loaders carry no answer type or options, so a
multiple-choice split is scored by comparing the extracted answer with the reference letter (math-aware
equivalence), not by the benchmarks' choice rules (the evaluation command's job). The k samples use the training
sampler (`temperature`, `top_p`, `max_completion_length`).

The other eval metrics (`eval_labels/pseudo_label_accuracy`, `eval_labels/reward_accuracy` and the label-free
ones) describe the reward and so read answers with the recipe's `answer_extractor`, as in training. All are exact
over the whole split (one value per prompt, averaged by TRL); greedy pass@1 needs the evaluation command on the
saved checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from ..answers import completion_text

from ..errors import ConfigError
from ..data import PRESETS, DataError
from ..eval.extraction import extract_by_rules
from ..eval.scoring import score_samples
from .datasets import recipe_dataset


EVAL_COMMAND_METRICS = ("labels/rollout_accuracy", "labels/maj_at_g", "labels/pass_at_g")


def eval_requested(training_args) -> bool:
    return str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"


def load_heldout_dataset(data_args, training_args):
    """The labelled eval split named by `data_args.eval_dataset_name` (for `eval_strategy` or
    `accuracy_before_after`), prepared like the training set, or None.

    The instruction, pixel bounds and column settings are the training set's (a preset other than the training set
    uses its own columns). The synthetic set is drawn with the seed `synthetic_seed + 1` (`eval_max_samples`
    examples, else `synthetic_size`).

    Raises:
        ConfigError: an eval split without `eval_strategy`, or `eval_strategy` without an eval split.
        DataError: an eval split without reference answers.
    """
    name = data_args.eval_dataset_name
    if name is None and getattr(training_args, "accuracy_before_after", False):
        raise ConfigError(
            "accuracy_before_after is true but eval_dataset_name is not set: name a labelled split to score before "
            "and after training (e.g. eval_dataset_name: synthetic), or set accuracy_before_after: false."
        )
    if name is None:
        if eval_requested(training_args):
            raise ConfigError(
                f"eval_strategy is {training_args.eval_strategy.value!r} but eval_dataset_name is not set: name a "
                "labelled split to evaluate on (e.g. eval_dataset_name: geo3k, eval_split: test), or set "
                "eval_strategy: no."
            )
        return None
    if not eval_requested(training_args) and not getattr(training_args, "accuracy_before_after", False):
        raise ConfigError(
            f"eval_dataset_name is {name!r} but eval_strategy is 'no': set eval_strategy: steps and eval_steps: N "
            "to evaluate during training (or accuracy_before_after: true to score it before and after), or remove "
            "eval_dataset_name."
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
    dataset = recipe_dataset(eval_args, training_args.label_column)
    labels = dataset[training_args.label_column]
    if not any(label is not None and str(label).strip() for label in labels):
        raise DataError(
            f"The eval split {name!r} ({data_args.eval_split}) has no reference answers: held-out evaluation needs "
            "them (set answer_column for local files)."
        )
    return dataset


def eval_command_label_metrics(
    completions: Sequence[Any], group_labels: Sequence[Any], group_size: int
) -> dict[str, list[float]]:
    """Sampled pass@1, maj@k and pass@k of each group as the evaluation command scores them (NaN without a label).

    Example:

    ```python
    >>> group = ["The answer is 5.", "\\\\boxed{5}", "<answer>7</answer>", "5"]  # the last one: no rule reads it
    >>> eval_command_label_metrics(group, ["5"], 4)
    {'labels/rollout_accuracy': [0.5], 'labels/maj_at_g': [1.0], 'labels/pass_at_g': [1.0]}

    ```
    """
    metrics: dict[str, list[float]] = {name: [] for name in EVAL_COMMAND_METRICS}
    for g, label in enumerate(group_labels):
        label = None if label is None else str(label).strip()
        if not label:
            for name in EVAL_COMMAND_METRICS:
                metrics[name].append(math.nan)
            continue
        texts = completions[g * group_size : (g + 1) * group_size]
        answers = [extract_by_rules(completion_text(text))[0] for text in texts]
        right, _, majority_right = score_samples(answers, label, "free")
        metrics["labels/rollout_accuracy"].append(sum(right) / len(right))
        metrics["labels/maj_at_g"].append(float(majority_right))
        metrics["labels/pass_at_g"].append(float(any(right)))
    return metrics
