"""The consistency filter (SRT, EMPO): groups whose answers agree too little, or too much, do not train (see
docs/math.md, section "Consistency filter").

A group's majority ratio is the share of its completions in its largest answer class, by the vote the diagnostics
take (`self_consistency/majority_ratio`). A group whose ratio is below `min_consistency` or above `max_consistency`
gets advantage 0 and its completions leave the loss's token count (their `completion_mask` becomes 0), so a filtered
group neither pulls the policy nor dilutes the kept groups' gradient. The trainer applies it after the advantages
(training steps only) and logs `consistency_filter/filtered_share`.

- `settings`: the `min_consistency` / `max_consistency` config fields and their checks (`FILTER_LOSS_TYPES`: the
  loss types whose normaliser counts only kept tokens).
- `filter`: `kept_groups` (which groups stay; plain Python) and `filter_batch` (the advantages and the loss
  inputs of one generation batch; torch).
"""

from __future__ import annotations

from .filter import FILTERED_SHARE, filter_batch, kept_groups
from .settings import (
    FILTER_LOSS_TYPES,
    ConsistencyFilterSettings,
    consistency_filter_setting_problems,
    filters_groups,
)

__all__ = [
    "FILTERED_SHARE",
    "FILTER_LOSS_TYPES",
    "ConsistencyFilterSettings",
    "consistency_filter_setting_problems",
    "filter_batch",
    "filters_groups",
    "kept_groups",
]
