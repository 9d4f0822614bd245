"""Unreadable dataset rows: a bad row never costs work.

A row whose image cannot be read or decoded is replaced by the next readable row when the row is read (`data.py`);
the replacement row names the rows it stands in for. The trainer hands every generation batch to `BadRows.observe`
on every process together, which gathers the new bad rows of all processes and applies `on_bad_row`:

- `skip` (default): a warning once per row (its index and the reason), the run's count in the `data/skipped_rows`
  metric and in the run summary; training goes on. More than `max_bad_row_share` of the training rows skipped stops
  the run as `stop` does;
- `stop`: a checkpoint of the last completed step is saved and `BadRowError` names the row, the reason and the resume
  command (the judge's failure policy does the same).

`scan_rows` reads every row of a dataset (in parallel, with a progress bar) and lists the bad ones, for
`check --rows all`.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .checkpoints import save_last_completed_step
from ..data import ROW_COLUMN, SKIPPED_COLUMN, DataError, QwenImages

logger = logging.getLogger(__name__)

BAD_ROW_POLICIES = ("skip", "stop")
SHOWN_ROWS = 10  # row indices quoted in a message or the summary


class BadRowError(DataError):
    """Training stopped at an unreadable dataset row (after saving a checkpoint of the last completed step)."""


def rows_text(rows) -> str:
    """`3, 40` or `3, 40, ... (25 in all)`.

    ```python
    >>> rows_text([40, 3])
    '3, 40'

    ```
    """
    rows = sorted(rows)
    shown = ", ".join(str(i) for i in rows[:SHOWN_ROWS])
    return shown if len(rows) <= SHOWN_ROWS else f"{shown}, ... ({len(rows)} in all)"


class BadRows:
    """The training rows skipped over the run (row index -> reason), saved with every checkpoint.

    ```python
    >>> bad = BadRows()
    >>> bad.add([[40, "Cannot read image 40.png"], [3, "Image file not found: 3.png"], [40, "again"]])
    [40, 3]
    >>> bad.state_dict()
    {'rows': [[3, 'Image file not found: 3.png'], [40, 'Cannot read image 40.png']]}

    ```
    """

    def __init__(self, policy: str = "skip", max_share: float = 0.05):
        self.policy = policy
        self.max_share = max_share
        self.rows: dict[int, str] = {}
        self.eval_rows: dict[int, str] = {}

    def add(self, pairs, rows: dict[int, str] | None = None) -> list[int]:
        """Record `[index, reason]` pairs; return the indices not seen before, in order."""
        rows = self.rows if rows is None else rows
        new = []
        for index, reason in pairs:
            if int(index) not in rows:
                rows[int(index)] = str(reason)
                new.append(int(index))
        return new

    def state_dict(self) -> dict:
        return {"rows": [[index, self.rows[index]] for index in sorted(self.rows)]}

    def load_state_dict(self, state: dict) -> None:
        self.rows = {int(index): str(reason) for index, reason in state.get("rows", [])}

    def observe(self, trainer, inputs: list[dict]) -> None:
        """Take the skipped-row markers out of a generation batch (every process, together), warn once per new bad
        row, log `data/skipped_rows` and stop the run where the policy says so."""
        local = [pair for row in inputs for pair in (row.pop(SKIPPED_COLUMN, None) or [])]
        pairs = [pair for process in gather_object([local]) for pair in process]
        training = trainer.model.training
        seen = self.rows if training else self.eval_rows
        new = {int(index): str(reason) for index, reason in pairs if int(index) not in seen}
        if training and new:
            # A stop loses the step being generated, so the checkpoint saved keeps the rows skipped before it only.
            first = next(iter(new))
            size, total = len(trainer.train_dataset), len(self.rows) + len(new)
            if self.policy == "stop":
                self.stop(trainer, f"dataset row {first}: {new[first]} (on_bad_row: stop)")
            if total > self.max_share * size:
                self.stop(trainer, f"{total} of the {size} dataset rows could not be read, more than max_bad_row_share "
                                   f"{self.max_share} (rows {rows_text([*self.rows, *new])}; row {first}: {new[first]})")
        self.add(new.items(), seen)
        if new and trainer.accelerator.is_main_process:
            for index in new:
                logger.warning(
                    "Skipped %sdataset row %d: %s; the next readable row is used in its place (on_bad_row: %s; %d "
                    "row(s) skipped so far).", "" if training else "evaluation ", index, seen[index], self.policy,
                    len(seen))
        if training:
            trainer._metrics["train"]["data/skipped_rows"].append(float(len(self.rows)))

    def stop(self, trainer, reason: str) -> None:
        """Save a checkpoint of the last completed step and raise `BadRowError` (on every process together)."""
        step = trainer.state.global_step
        checkpoint = save_last_completed_step(trainer)
        if checkpoint is None:
            saved = "no training step had completed, so there was nothing to save"
        else:
            saved = (f"saved {checkpoint}; fix or remove the row, then resume with --resume_from_checkpoint "
                     f"{checkpoint} (or resume with --on_bad_row skip to skip it)")
        raise BadRowError(f"{reason}; stopped while generating step {step + 1}; {saved}.")


def scan_rows(dataset, workers: int | None = None, progress: bool = True) -> dict[int, str]:
    """Read every row of a dataset of `load_training_dataset` (its images decoded and resized, in parallel threads,
    with a progress bar); return the unreadable rows, index -> reason."""
    transform = dataset.format["format_kwargs"].get("transform")
    if not isinstance(transform, QwenImages) or transform.source is None:
        raise TypeError("scan_rows needs a dataset prepared by load_training_dataset (its images transform).")
    source = transform.source.select_columns([ROW_COLUMN, "images"])

    def read(row: dict) -> tuple[int, str | None]:
        try:
            transform.read_images(row["images"])
        except Exception as error:
            return row[ROW_COLUMN], str(error)
        return row[ROW_COLUMN], None

    bad = {}
    workers = workers or min(32, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(source), desc="Reading rows", unit="row",
                                                   disable=not progress) as bar:
        for start in range(0, len(source), 256):
            for index, reason in pool.map(read, source.select(range(start, min(start + 256, len(source))))):
                if reason is not None:
                    bad[index] = reason
                bar.update(1)
    return bad
