"""The bounded gate g(s) of the Actor–Judge reward, on the judge's scores (docs/math.md, "Actor–Judge")."""

from __future__ import annotations

from typing import Any

import torch


# A gate within this distance of 1 counts as neither amplifying nor suppressing in the logged shares: the gate is
# flat (|g - 1| < 0.005) for scores in about [0.55, 0.88].
GATE_TOLERANCE = 0.01


def judge_gate(
    scores: torch.Tensor | Any,
    t_high: float = 0.95,
    tau_high: float = 0.02,
    lam_pos: float = 0.2,
    t_low: float = 0.40,
    tau_low: float = 0.05,
    lam_neg: float = 0.2,
    g_min: float = 0.8,
    g_max: float = 1.2,
) -> torch.Tensor:
    """The bounded gate g(s) of Self-Judge, elementwise on judge scores s ∈ [0, 1].

    g(s) = clip(1 + lam_pos·σ((s − t_high)/tau_high) − lam_neg·σ((t_low − s)/tau_low), g_min, g_max), σ the logistic
    function. With the released defaults g is ≈ 1 for s in about [0.55, 0.88], rises towards 1 + lam_pos for scores
    near 1 and falls towards 1 − lam_neg for scores below t_low.

    Example:

    ```python
    >>> [round(g, 3) for g in judge_gate(torch.tensor([0.0, 0.4, 0.8, 0.95, 1.0])).tolist()]
    [0.8, 0.9, 1.0, 1.1, 1.185]

    ```
    """
    scores = torch.as_tensor(scores)
    if not scores.is_floating_point():
        scores = scores.float()
    amplify = lam_pos * torch.sigmoid((scores - t_high) / tau_high)
    suppress = lam_neg * torch.sigmoid((t_low - scores) / tau_low)
    return (1 + amplify - suppress).clamp(g_min, g_max)
