"""What a training run prints: one progress bar and, every `logging_steps`, one short line of the numbers that tell
how label-free training is going, instead of the trainer's whole metric dictionary (that still goes to
trainer_state.json and the trackers of `report_to`).

    step  10/100 | reward 0.512 | majority 0.61 | high-conf. 25% | pseudo-label acc. 73%

`majority` is the mean share of a group's answers that agree with its majority (p_max), `high-conf.` the share of
groups with p_max >= 0.8, and `pseudo-label acc.` how often the majority answer is right (shown only when the data
has hidden labels). Warnings stand out (`WARNING` lines in bold red on a terminal): judge answers without a
parseable score, failed judge requests, and non-finite rewards or advantages set to zero.

`ConsoleCallback` replaces transformers' `ProgressCallback` / `PrinterCallback` (`use_console(trainer)`).
"""

from __future__ import annotations

import math
import sys
from typing import Any

from transformers.trainer_callback import PrinterCallback, ProgressCallback

# (log key, label, format) of the step line, in order; a key the run does not log is left out.
STEP_LINE = (
    ("reward", "reward", "{:.3f}"),
    ("self_consistency/majority_ratio", "majority", "{:.2f}"),
    ("self_consistency/high_confidence_share", "high-conf.", "{:.0%}"),
    ("labels/pseudo_label_accuracy", "pseudo-label acc.", "{:.0%}"),
)
EVAL_LINE = (
    ("eval_labels/rollout_accuracy", "pass@1 (sampled)", "{:.0%}"),
    ("eval_labels/maj_at_g", "maj@k", "{:.0%}"),
    ("eval_self_consistency/high_confidence_share", "high-conf.", "{:.0%}"),
)
# (log key, what it means): a warning whenever the logged value is above zero.
WARN_IF_POSITIVE = (
    ("judge/parse_failure_rate", "judge answers without a parseable score"),
    ("judge/request_failure_rate", "judge requests failed"),
    ("rewards/nonfinite_count", "non-finite rewards set to 0"),
    ("advantages/nonfinite_count", "non-finite advantages set to 0"),
)
RED_BOLD, RESET = "\033[1;31m", "\033[0m"


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _fields(logs: dict[str, Any], spec) -> str:
    parts = []
    for key, label, fmt in spec:
        value = _number(logs.get(key))
        if value is not None:
            parts.append(f"{label} {fmt.format(value)}")
    return " | ".join(parts)


def step_line(logs: dict[str, Any], step: int, max_steps: int) -> str | None:
    """The one line of a training or evaluation log (None for the other logs, e.g. the end-of-run totals).

    Example:

    ```python
    >>> step_line({"reward": 0.5123, "self_consistency/majority_ratio": 0.61, "loss": 0.0,
    ...            "self_consistency/high_confidence_share": 0.25, "labels/pseudo_label_accuracy": 0.734}, 10, 100)
    'step  10/100 | reward 0.512 | majority 0.61 | high-conf. 25% | pseudo-label acc. 73%'
    >>> step_line({"eval_labels/maj_at_g": 0.5}, 20, 100)
    'eval at step 20 | maj@k 50%'
    >>> step_line({"train_runtime": 12.0}, 100, 100) is None
    True

    ```
    """
    width = len(str(max_steps))
    if "reward" in logs:
        return f"step {step:>{width}}/{max_steps} | {_fields(logs, STEP_LINE)}"
    evaluated = _fields(logs, EVAL_LINE)
    if evaluated:
        return f"eval at step {step} | {evaluated}"
    return None


def warning_lines(logs: dict[str, Any], step: int) -> list[str]:
    """`WARNING` lines for the logged values that should be zero and are not.

    ```python
    >>> warning_lines({"judge/parse_failure_rate": 0.125, "judge/request_failure_rate": 0.0}, 30)
    ['WARNING: step 30: judge answers without a parseable score: 0.125']

    ```
    """
    lines = []
    for key, meaning in WARN_IF_POSITIVE:
        value = _number(logs.get(key))
        if value is not None and value > 0:
            lines.append(f"WARNING: step {step}: {meaning}: {value:.3g}")
    return lines


def emphasize(text: str, stream=None) -> str:
    """`text` with its `WARNING` lines (and their wrapped continuations) in bold red when `stream` (default: stdout)
    is a terminal; unchanged otherwise."""
    stream = stream or sys.stdout
    if not getattr(stream, "isatty", lambda: False)():
        return text
    lines, in_warning = [], False
    for line in text.splitlines():
        continued = in_warning and line.startswith("  ") and not line.strip()[:1].isupper()
        in_warning = line.startswith("WARNING") or continued
        lines.append(f"{RED_BOLD}{line}{RESET}" if in_warning else line)
    return "\n".join(lines)


class ConsoleCallback(ProgressCallback):
    """transformers' progress bar, with one short line per log instead of the whole metric dictionary."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        lines = [step_line(logs, state.global_step, state.max_steps)] + warning_lines(logs, state.global_step)
        for line in filter(None, lines):
            line = emphasize(line)
            if self.training_bar is not None:
                self.training_bar.write(line)
            else:
                print(line, flush=True)


class ConsolePrinterCallback(ConsoleCallback):
    """The short lines without the progress bar (`disable_tqdm: true`)."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.current_step = 0

    def on_step_end(self, args, state, control, **kwargs):
        pass

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_train_end(self, args, state, control, **kwargs):
        pass


def use_console(trainer) -> None:
    """Replace the trainer's progress/printer callback by the short-line console (`ConsoleCallback`), in its place:
    before the callbacks the trainer registers after it, so that at the end of training the progress bar is closed
    before the run summary prints (closed after it, the bar drew itself again below the summary)."""
    callbacks = trainer.callback_handler.callbacks
    replaced = [i for i, c in enumerate(callbacks) if isinstance(c, (ProgressCallback, PrinterCallback))]
    index = replaced[0] if replaced else len(callbacks)
    callbacks[:] = [c for c in callbacks if not isinstance(c, (ProgressCallback, PrinterCallback))]
    callbacks.insert(index, ConsolePrinterCallback() if trainer.args.disable_tqdm else ConsoleCallback())
