"""Seeds of reproducible generation: a generation batch's draws are seeded by (seed, step, batch number, row).

Rollouts (`rollout_seed`), CSRS re-inferences and the judge's judgements (`judge_seed`) each draw from their own
seeds, so that none depends on how rows are spread over processes or batched together.

TRL generates once per optimizer step by default (`steps_per_generation == gradient_accumulation_steps`), but
several times within one step when `steps_per_generation` is smaller, and once per batch in evaluation, all at the
same `global_step`. The step alone would give those batches the same seeds. `generation_batch` numbers them.
"""

from __future__ import annotations

import numpy as np


_MODE_CODES = {"train": 1, "eval": 2}


def batch_entropy(mode: str, index: int) -> tuple[int, ...]:
    """The seed components that tell generation batch `index` of its (mode, step) apart from the others.

    None for the first training batch of a step, so that with one generation batch per step (TRL's default) the
    seeds are those of (seed, step, row) alone, as they were before batches were numbered. Else (index, mode code):
    the last component is never 0, since numpy's `SeedSequence` pads its entropy with zeros ([a, b] and [a, b, 0]
    give the same seeds).

    Example:

    ```python
    >>> batch_entropy("train", 0), batch_entropy("train", 1), batch_entropy("eval", 0)
    ((), (1, 1), (0, 2))

    ```
    """
    if mode not in _MODE_CODES:
        raise ValueError(f"Unknown mode {mode!r}; valid modes: {', '.join(_MODE_CODES)}.")
    return () if (mode, index) == ("train", 0) else (index, _MODE_CODES[mode])


def generation_batch(trainer, consumer: str) -> tuple[int, ...]:
    """Counts one generation batch of `consumer` (e.g. "rollout") and returns its `batch_entropy`.

    Call it once per generation batch, on every process (each process counts the same batches). The count restarts
    whenever the mode (training or evaluation) or `global_step` changes; it lives on the trainer, one per consumer,
    and needs no checkpoint: a resumed run starts at a step boundary, where the count restarts anyway.
    """
    mode = "train" if trainer.model.training else "eval"
    key = (mode, trainer.state.global_step)
    counters = trainer.__dict__.setdefault("_generation_batches", {})
    last_key, index = counters.get(consumer, (None, -1))
    index = index + 1 if key == last_key else 0
    counters[consumer] = (key, index)
    return batch_entropy(mode, index)


def rollout_seed(seed: int, step: int, index: int, batch: tuple[int, ...] = ()) -> int:
    """The torch seed of rollout row `index` (over all processes) of a generation batch (its `batch_entropy`).

    Example:

    ```python
    >>> rollout_seed(0, 3, 5)                      # (seed·P + step)·P + index, P = 1 000 003
    3000014
    >>> rollout_seed(0, 3, 5, (1, 1)) == rollout_seed(0, 3, 5)
    False

    ```
    """
    if not batch:
        return ((seed * 1_000_003 + step) * 1_000_003 + index) % 2**63
    return torch_seed([seed, step, index, *batch])


# Marks the judge's seeds apart from the rollouts' and re-inferences' (never 0: see `batch_entropy`).
_JUDGE_STREAM = 3


def judge_seed(seed: int, step: int, index: int, repeat: int, batch: tuple[int, ...] = ()) -> int:
    """The seed of judgement `repeat` (of `judge_repeats`) of completion `index` (over all processes) of a
    generation batch (its `batch_entropy`): a `torch.manual_seed` value, and the `seed` of a chat-completions request.

    Example:

    ```python
    >>> judge_seed(0, 3, 5, 0) == judge_seed(0, 3, 5, 0) != judge_seed(0, 3, 5, 1)
    True
    >>> judge_seed(0, 3, 5, 0) != judge_seed(0, 3, 5, 0, (1, 1))
    True

    ```
    """
    return torch_seed([seed, step, index, repeat, _JUDGE_STREAM, *batch])


def torch_seed(entropy: list[int]) -> int:
    """A `torch.manual_seed` value drawn from the integers `entropy` (numpy's `SeedSequence`).

    Example:

    ```python
    >>> torch_seed([0, 3, 5]) == torch_seed([0, 3, 5]) != torch_seed([0, 3, 6])
    True

    ```
    """
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) % 2**63
