"""Non-finite guards: no inf or NaN reward or advantage reaches the loss, and every one is counted.

A reward function may return inf or NaN (a judge that divides by zero, a log of 0, ...). The trainer turns such a
value into NaN, TRL's "not scored" (a reward of None), which leaves the completion out of its group's statistics
and gives it advantage 0; the advantages themselves pass through `finite_or_zero` (an overflow such as a reward of
1e308 can still make an advantage inf). Both are counted per generation round (`rewards/nonfinite_count`,
`advantages/nonfinite_count` in the logs) and over the run (`NonfiniteCounter`, saved with every checkpoint and
reported in the run summary).
"""

from __future__ import annotations

import torch


def count_nonfinite(values: torch.Tensor) -> int:
    """How many entries are inf or NaN.

    ```python
    >>> count_nonfinite(torch.tensor([1.0, float("inf"), float("nan"), -2.0]))
    2

    ```
    """
    return int((~torch.isfinite(values)).sum().item())


def finite_or_zero(values: torch.Tensor) -> torch.Tensor:
    """`values` with every inf and NaN replaced by 0 (the advantage of a completion that teaches nothing).

    ```python
    >>> finite_or_zero(torch.tensor([0.5, float("inf"), float("-inf"), float("nan")])).tolist()
    [0.5, 0.0, 0.0, 0.0]

    ```
    """
    return torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


class NonfiniteCounter:
    """Run totals of non-finite rewards and advantages (training only), kept across a resume.

    ```python
    >>> counter = NonfiniteCounter()
    >>> counter.add(rewards=2, advantages=1)
    >>> counter.add(rewards=1)
    >>> counter.state_dict()
    {'rewards': 3, 'advantages': 1}

    ```
    """

    def __init__(self):
        self.rewards = 0
        self.advantages = 0

    def add(self, rewards: int = 0, advantages: int = 0) -> None:
        self.rewards += int(rewards)
        self.advantages += int(advantages)

    def state_dict(self) -> dict[str, int]:
        return {"rewards": self.rewards, "advantages": self.advantages}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.rewards = int(state.get("rewards", 0))
        self.advantages = int(state.get("advantages", 0))
