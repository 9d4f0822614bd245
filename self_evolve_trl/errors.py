"""The errors a user can fix, and `Problem`, one thing wrong with a recipe.

`ConfigError`, `UsageError` and `JudgeUnavailableError` are printed as one line, without a traceback (exit status 2); other modules' errors of
the same kind (`DataError`, `ImageError`, `RewardError`, `CheckpointError`) stay next to the code that raises them.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(ValueError):
    """A recipe value that cannot work; the message names the field and the valid choices."""


class UsageError(ValueError):
    """Input the user can fix; printed as one line, without a traceback."""


class JudgeUnavailableError(RuntimeError):
    """The judge failed more judgements than the recipe allows; training stopped (after saving a checkpoint)."""


DEFAULT_FIX = "change the field(s) the message names."


@dataclass
class Problem:
    """One thing wrong with a recipe: where (`area`, usually the field), what, and how to fix it. Warnings do not fail
    the check.

    The message either continues the area (`Problem("lse_tau", "must be > 0, got -1.0.")`) or is a sentence of its
    own, capitalised (`Problem("advantage", "Unknown advantage 'ppo'; valid choices: grpo, centered, lse.")`).

    Example:

    ```python
    >>> problem = Problem("lse_tau", "must be > 0, got -1.0.", "use 1.0.")
    >>> str(problem)
    'lse_tau: must be > 0, got -1.0. Fix: use 1.0.'
    >>> problem.line
    'lse_tau must be > 0, got -1.0.'

    ```
    """

    area: str
    message: str
    fix: str = DEFAULT_FIX
    warning: bool = False

    def __str__(self) -> str:
        message = self.message if self.message.endswith((".", "?", "!")) else f"{self.message}."
        return f"{self.area}: {message} Fix: {self.fix}"

    @property
    def line(self) -> str:
        """The problem as one sentence, as the config's `ConfigError` states it: the message, after its area unless
        it is a sentence of its own."""
        return self.message if self.message[:1].isupper() else f"{self.area} {self.message}"


def choice_problems(name: str, value, choices) -> list[Problem]:
    """A problem if `value` is not one of `choices` (a tuple, or a registry dict of names)."""
    choices = tuple(choices)
    if value in choices:
        return []
    names = ", ".join(choices)
    return [Problem(name, f"Unknown {name} {value!r}; valid choices: {names}.", f"use one of: {names}.")]
