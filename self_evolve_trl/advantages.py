"""Group advantages from group rewards (SPEC §3).

`group_advantages(rewards, group_size, mode)` works on a flat reward vector made of whole groups in order:

- `grpo`: TRL's own, (r_i - mean(r)) / (std(r) + 1e-4), std unbiased; `scale` chooses the std of the group
  (`group`), of the whole batch (`batch`) or none (`none`: mean-centred only).
- `centered`: A_i = r_i - mean(r) (what the released Self-Judge trainer effectively does).
- `lse`: A_i = r_i/τ - log Σ_j exp(r_j/τ) + o, the log of the group's energy-based distribution q = softmax(r/τ);
  o = log G (`offset="log_group_size"`, default: equal rewards give exactly 0) or 0 (`offset="none"`, every A_i ≤ 0).

Rewards that are NaN (unscorable: every reward function returned None) are left out of their group's statistics
and get advantage 0. `clip` clamps advantages to [-clip, clip].
"""

from __future__ import annotations

import torch


ADVANTAGE_MODES = ("grpo", "centered", "lse")
LSE_OFFSETS = ("log_group_size", "none")
SCALE_MODES = ("group", "batch", "none")


def _nan_std(x: torch.Tensor, valid: torch.Tensor, dim=None) -> torch.Tensor:
    """Unbiased std over valid entries (as TRL's `nanstd`); NaN where fewer than two are valid."""
    count = valid.sum(dim=dim, keepdim=dim is not None)
    mean = torch.where(valid, x, 0).sum(dim=dim, keepdim=dim is not None) / count
    squares = torch.where(valid, (x - mean) ** 2, 0).sum(dim=dim, keepdim=dim is not None)
    return torch.sqrt(squares / (count - 1))


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    mode: str = "lse",
    tau: float = 1.0,
    offset: str = "log_group_size",
    scale: str = "group",
    clip: float | None = None,
) -> torch.Tensor:
    """Advantages for a flat vector of rewards made of consecutive groups of `group_size`.

    Example:

    ```python
    >>> import torch
    >>> r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    >>> group_advantages(r, 4, mode="centered").tolist()
    [0.75, -0.25, -0.25, -0.25, 0.0, 0.0, 0.0, 0.0]
    >>> [round(a, 4) for a in group_advantages(r, 4, mode="lse").tolist()]
    [0.6426, -0.3574, -0.3574, -0.3574, 0.0, 0.0, 0.0, 0.0]

    ```
    """
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"Unknown advantage {mode!r}; valid advantages: {', '.join(ADVANTAGE_MODES)}.")
    if offset not in LSE_OFFSETS:
        raise ValueError(f"Unknown lse offset {offset!r}; valid offsets: {', '.join(LSE_OFFSETS)}.")
    if scale not in SCALE_MODES:
        raise ValueError(f"Unknown reward scaling {scale!r}; valid values: {', '.join(SCALE_MODES)}.")
    if tau <= 0:
        raise ValueError(f"lse temperature tau must be > 0, got {tau}.")
    if rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be a flat vector of whole groups of {group_size}, got shape {tuple(rewards.shape)}.")

    r = rewards.float().view(-1, group_size)
    valid = ~torch.isnan(r)
    count = valid.sum(dim=1, keepdim=True)
    # The mean is taken around a member of the group, so that a group of equal rewards is centred to exactly 0
    # (a plain float32 mean of eight 0.3s is not exactly 0.3).
    reference = torch.where(valid, r, -torch.inf).max(dim=1, keepdim=True).values
    reference = torch.where(torch.isfinite(reference), reference, torch.zeros_like(reference))
    mean = reference + torch.where(valid, r - reference, 0).sum(dim=1, keepdim=True) / count.clamp(min=1)

    if mode == "lse":
        z = torch.where(valid, r / tau, -torch.inf)
        z_max = z.max(dim=1, keepdim=True).values
        z_max = torch.where(torch.isfinite(z_max), z_max, torch.zeros_like(z_max))
        shifted = z - z_max  # exactly 0 for every member of an equal-reward group
        log_partition = torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
        advantages = shifted - log_partition
        if offset == "log_group_size":
            advantages = advantages + torch.log(count.to(r.dtype))
    else:
        advantages = (r - reference) - (mean - reference)
        if mode == "grpo" and scale != "none":
            if scale == "group":
                std = _nan_std(r, valid, dim=1)
            else:
                std = _nan_std(r, valid).expand_as(mean)
            advantages = advantages / (torch.nan_to_num(std, nan=0.0) + 1e-4)

    advantages = torch.where(valid, advantages, torch.zeros_like(advantages))
    if clip is not None:
        advantages = advantages.clamp(-clip, clip)
    return advantages.reshape(-1).to(rewards.dtype if rewards.is_floating_point() else torch.float32)
