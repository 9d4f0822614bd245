"""The consistency filter: which groups are kept (`kept_groups`, plain Python) and what the filter does to the batch
TRL's loss receives (`filter_batch`, torch). See docs/math.md#consistency-filter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

FILTERED_SHARE = "consistency_filter/filtered_share"  # the metric: share of a step's groups that the filter drops


def kept_groups(ratios: Sequence[float], min_consistency: float | None = None,
                max_consistency: float | None = None) -> list[bool]:
    """Whether each group is kept: `min_consistency <= ratio <= max_consistency` (a bound that is None does not
    bound). `ratios` are the groups' majority ratios (`GroupVote.p_max`: the share of the group in its largest
    answer class, 0 when every completion abstains). Both bounds are inclusive.

    Example:

    ```python
    >>> kept_groups([0.25, 0.5, 0.75, 1.0], min_consistency=0.5, max_consistency=0.75)
    [False, True, True, False]
    >>> kept_groups([0.0, 1.0])
    [True, True]

    ```
    """
    low = -float("inf") if min_consistency is None else min_consistency
    high = float("inf") if max_consistency is None else max_consistency
    return [low <= ratio <= high for ratio in ratios]


def filter_batch(output: dict[str, Any], advantages: torch.Tensor, kept: Sequence[bool], group_size: int,
                 start: int, gather: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply the filter to one generation batch: returns `advantages` (the whole batch's, every process's rows in
    group order) with the filtered groups' set to 0, and edits this process's `output` (TRL's dict for `_compute_loss`,
    rows `start .. start + len(output["completion_mask"])` of the batch): the filtered rows' `completion_mask` becomes
    0, and `num_items_in_batch` is recounted over every process with `gather` (a collective: call it on every
    process).

    Example:

    ```python
    >>> output = {"completion_mask": torch.ones(2, 3, dtype=torch.long), "num_items_in_batch": torch.tensor(12)}
    >>> filter_batch(output, torch.tensor([1.0, -1.0, 0.5, -0.5]), [True, False], 2, 2, gather=lambda x: x)
    tensor([ 1., -1.,  0.,  0.])
    >>> output["completion_mask"].tolist(), int(output["num_items_in_batch"])
    ([[0, 0, 0], [0, 0, 0]], 0)

    ```
    """
    filtered = torch.tensor(kept, dtype=torch.bool).logical_not().repeat_interleave(group_size)
    if filtered.numel() != advantages.numel():
        raise ValueError(f"{len(kept)} groups of {group_size} for {advantages.numel()} advantages.")
    advantages = advantages.masked_fill(filtered.to(advantages.device), 0.0)
    mask = output["completion_mask"]
    local = filtered[start : start + mask.size(0)].to(mask.device)
    output["completion_mask"] = mask.masked_fill(local.unsqueeze(1), 0)
    output["num_items_in_batch"] = gather(output["completion_mask"].sum()).sum()
    return advantages
