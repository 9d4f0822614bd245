"""`JudgeScoreProvider`: the `judge_scores` reward input, one judge score per completion (or `None`).

The trainer builds it once (`JudgeScoreProvider(trainer)`) and calls it on every process with that process's rows.
For each completion it asks the judge `judge_repeats` times (the image, the question with its format instruction,
the whole completion, in the recipe's prompt template), parses every answer (`parse_judge_score`) and averages.
Every judgement has its own seed (`seeds.judge_seed`: the run's seed, the step, the generation batch, the
completion's index over all processes, the repeat), which the backend samples it with.

Failure policy (a judge will fail in long runs):
- a judgement that failed after the client's retries, or whose answer has no score, is counted; with
  `judge_on_failure: zero` a failed repeat counts as score 0 in the average, with `neutral` it is left out; a
  completion without any usable repeat gets `None`, which `judge_modulated` turns into s = 0 (`zero`) or gate 1
  (`neutral`);
- if more than `judge_max_failure_rate` of a step's judgements (over all processes) failed, or more than
  `judge_max_parse_failure_rate` of its answers could not be parsed, training stops: a checkpoint of the last
  completed step is saved first, and `JudgeUnavailableError` names the judge, what failed and the checkpoint. The
  same holds when the judge fails during evaluation (TRL's evaluation generates and scores too).

Metrics per step (over all processes): `judge/latency_s` (wall time of the step's judging), `judge/samples`,
`judge/request_failures`, `judge/request_failure_rate`, `judge/parse_failures`, `judge/parse_failure_rate` (of the
answers received), `judge/out_of_range_share` (of the parsed scores, those outside [0, 1] that were clamped, e.g. a
`\\boxed{3}` quoting the candidate's answer) and, for endpoints, `judge/request_latency_s` (mean per request). The
reward adds the score and gate statistics.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback

from ..seeds import generation_batch, judge_seed
from ..data.messages import prompt_images, prompt_text
from ..errors import JudgeUnavailableError
from .backends import JudgeOutput, build_backend
from .prompt import JudgeTemplate
from .scores import parse_judge_score


logger = logging.getLogger(__name__)


def row_images(row: dict) -> list[Any]:
    """The images of a dataset row (`images` list or single `image`), for prompts that do not embed them."""
    if row.get("images"):
        return list(row["images"])
    return [row["image"]] if row.get("image") is not None else []


def aggregate_repeats(scores: list[float | None], on_failure: str) -> float | None:
    """One judgement's score from its repeats: the mean, with failed repeats as 0 (`zero`) or left out (`neutral`);
    `None` when no repeat gave a score.

    Example:

    ```python
    >>> aggregate_repeats([0.9, None, 0.6], "zero"), aggregate_repeats([0.9, None, 0.6], "neutral")
    (0.5, 0.75)

    ```
    """
    parsed = [s for s in scores if s is not None]
    if not parsed:
        return None
    return sum(parsed) / (len(scores) if on_failure == "zero" else len(parsed))


# A step where more than this share of the judge's answers have no score is warned about (again every N steps).
UNPARSED_WARNING_RATE = 0.5
UNPARSED_WARNING_EVERY = 50


@dataclass(frozen=True)
class JudgeTotals:
    """A step's judgements over all processes: how many were asked (`samples`), failed, unparsed (answered without
    a score), out of range (parsed outside [0, 1]), the latency sum and count of timed requests, and the slowest
    process's wall time."""

    samples: float
    failed: float
    unparsed: float
    out_of_range: float
    latency_sum: float
    latency_count: float
    elapsed: float

    @property
    def answered(self) -> float:
        return self.samples - self.failed


class JudgeScoreProvider:
    """Computes the `judge_scores` reward input with the judge backend that the trainer's config names."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.args = trainer.args
        self.template = JudgeTemplate.load(self.args.judge_prompt_template)
        self.backend = build_backend(trainer)
        self._last_unparsed_warning: int | None = None
        trainer.add_callback(_CloseJudgeAtTrainEnd(self.backend))
        trainer.accelerator.print(f"Judge: {self.backend.describe()}, prompt template {self.template.path}")

    def requests(self, inputs: list[dict], prompts: list, completions: list):
        """The judge requests of a batch of completions, in order."""
        return [
            self.template.request(prompt_text(prompt), completion, prompt_images(prompt) or row_images(row))
            for row, prompt, completion in zip(inputs, prompts, completions, strict=True)
        ]

    def seeds(self, n: int) -> list[int]:
        """The seeds of the judgements of this process's `n` completions, `judge_repeats` per completion, in order.
        Call once per generation batch (it counts the batch)."""
        trainer = self.trainer
        batch = generation_batch(trainer, "judge")
        offset = trainer.accelerator.process_index * n
        step = trainer.state.global_step
        return [judge_seed(self.args.seed, step, offset + i, repeat, batch)
                for i in range(n) for repeat in range(self.args.judge_repeats)]

    def __call__(self, inputs, prompts, completions, completion_ids_list) -> list[float | None]:
        repeats = self.args.judge_repeats
        requests = self.requests(inputs, prompts, completions)
        seeds = self.seeds(len(requests))
        start = time.perf_counter()
        outputs = self.backend.judge([r for r in requests for _ in range(repeats)], seeds)
        elapsed = time.perf_counter() - start

        written = [None if o.text is None else parse_judge_score(o.text, clamp=False) for o in outputs]
        samples = [None if w is None else min(1.0, max(0.0, w)) for w in written]
        scores = [
            aggregate_repeats(samples[i * repeats : (i + 1) * repeats], self.args.judge_on_failure)
            for i in range(len(requests))
        ]
        totals = self.totals(outputs, written, samples, elapsed)
        self.log_metrics(totals)
        self.check_failure_limits(totals, outputs)
        self.warn_unparsed(totals)
        return [None if s is None or math.isnan(s) else s for s in scores]

    def totals(self, outputs: list[JudgeOutput], written: list[float | None], samples: list[float | None],
               elapsed: float) -> JudgeTotals:
        """This step's judgement counts summed over all processes (the wall time: the slowest process's)."""
        latencies = [o.latency for o in outputs if o.latency is not None]
        local = [
            len(outputs),
            sum(o.text is None for o in outputs),
            sum(o.text is not None and s is None for o, s in zip(outputs, samples)),
            sum(w is not None and not 0.0 <= w <= 1.0 for w in written),
            sum(latencies),
            len(latencies),
        ]
        accelerator = self.trainer.accelerator
        local = torch.tensor(local, dtype=torch.float64, device=accelerator.device)
        summed = accelerator.gather(local).view(-1, 6).sum(0).tolist()
        elapsed = accelerator.gather(torch.tensor([elapsed], device=accelerator.device)).max().item()
        return JudgeTotals(*summed, elapsed=elapsed)

    def log_metrics(self, totals: JudgeTotals) -> None:
        """The judge's metrics of this step, in the trainer's metrics of the current mode (train or eval)."""
        n, failed, unparsed, answered = totals.samples, totals.failed, totals.unparsed, totals.answered
        metrics = {
            "judge/latency_s": totals.elapsed,
            "judge/samples": n,
            "judge/request_failures": failed,
            "judge/request_failure_rate": failed / n if n else 0.0,
            "judge/parse_failures": unparsed,
        }
        if answered:
            metrics["judge/parse_failure_rate"] = unparsed / answered
        if answered > unparsed:
            metrics["judge/out_of_range_share"] = totals.out_of_range / (answered - unparsed)
        if totals.latency_count:
            metrics["judge/request_latency_s"] = totals.latency_sum / totals.latency_count
        mode = "train" if self.trainer.model.training else "eval"
        for name, value in metrics.items():
            self.trainer._metrics[mode][name].append(float(value))

    def check_failure_limits(self, totals: JudgeTotals, outputs: list[JudgeOutput]) -> None:
        """Stop training (`stop`) when more judgements failed, or more answers had no score, than the recipe allows.
        Called on every process together: the errors are gathered."""
        n, failed, unparsed, answered = totals.samples, totals.failed, totals.unparsed, totals.answered
        if n and failed / n > self.args.judge_max_failure_rate:
            errors = [e for e in gather_object([next((o.error for o in outputs if o.error), None)]) if e]
            self.stop(
                f"failed {int(failed)} of {int(n)} judgements after retries (judge_max_failure_rate "
                f"{self.args.judge_max_failure_rate}); last error: {errors[0] if errors else 'unknown'}"
            )
        limit = self.args.judge_max_parse_failure_rate
        if limit is not None and answered and unparsed / answered > limit:
            self.stop(
                f"answered {int(unparsed)} of {int(answered)} judgements without a score that could be parsed "
                f"(judge_max_parse_failure_rate {limit}; check the judge model and prompt template)"
            )

    def warn_unparsed(self, totals: JudgeTotals) -> None:
        """Warn when most of this step's answers had no score (again every `UNPARSED_WARNING_EVERY` steps)."""
        unparsed, answered = totals.unparsed, totals.answered
        step = self.trainer.state.global_step + 1
        if not answered or unparsed / answered <= UNPARSED_WARNING_RATE:
            return
        if self._last_unparsed_warning is not None and step - self._last_unparsed_warning < UNPARSED_WARNING_EVERY:
            return
        self._last_unparsed_warning = step
        limit = self.args.judge_max_parse_failure_rate
        logger.warning(
            "%d of the judge's %d answers at step %d had no score that could be parsed (a \\boxed{} number or a "
            "JSON overall_score); they count as judge_on_failure=%s. Check the judge model and prompt template%s "
            "(see judge/parse_failure_rate).",
            int(unparsed), int(answered), step, self.args.judge_on_failure,
            ", or set judge_max_parse_failure_rate to stop such a run" if limit is None
            else f"; more than judge_max_parse_failure_rate {limit} of a step's answers without one stop the run",
        )

    def stop(self, reason: str) -> None:
        """Save a checkpoint of the last completed step and raise `JudgeUnavailableError`.

        In training the step being generated is lost; in evaluation (which TRL runs between steps) the model is the
        one of the last completed step, saved all the same. Called on every process together (the decision uses
        totals over all processes), as saving needs."""
        trainer = self.trainer
        step = trainer.state.global_step
        when = f"while generating step {step + 1}" if trainer.model.training else f"while evaluating at step {step}"
        checkpoint = trainer.save_last_completed_step()
        if checkpoint is not None:
            saved = f"saved {checkpoint}; resume with --resume_from_checkpoint {checkpoint} once the judge works"
        else:
            saved = "no training step had completed, so there was nothing to save"
        self.backend.close()  # training ends here
        raise JudgeUnavailableError(f"The judge {self.backend.describe()} {reason}, {when}; {saved}.")


class _CloseJudgeAtTrainEnd(TrainerCallback):
    """Closes the judge backend (its request threads and connections) when training ends."""

    def __init__(self, backend):
        self.backend = backend

    def on_train_end(self, args, state, control, **kwargs):
        self.backend.close()
