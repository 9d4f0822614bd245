"""Settings of the consistency filter: the `ConsistencyFilterSettings` fields of `SelfEvolveConfig`
(`min_consistency`, `max_consistency`) and their problems (`consistency_filter_setting_problems`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem

# TRL loss types whose normaliser is a count of the tokens the completion mask keeps: `bnpo` (the micro-batch's
# mask), `dapo`, `cispo`, `vespo` (`num_items_in_batch`, the generation batch's mask, recounted after the filter).
# `grpo` and `sapo` (a mean over the micro-batch's rows), `luspo` (a mean over rows) and `dr_grpo` (rows x
# `max_completion_length`) count a filtered completion in their denominator, so the filter refuses them
# (docs/math.md#consistency-filter).
FILTER_LOSS_TYPES = ("bnpo", "dapo", "cispo", "vespo")


@dataclass
class ConsistencyFilterSettings:
    r"""
    The consistency filter (SRT, EMPO); a part of [`SelfEvolveConfig`].

    A group is filtered when its majority ratio (the share of its completions in its largest answer class, logged as
    `self_consistency/majority_ratio`) is below `min_consistency` or above `max_consistency`: its completions get
    advantage 0 and leave the loss's token count. The vote is the diagnostics' (the answer settings of the first
    voting reward, else `answer_extractor`, `answer_match`, `abstain_as_answer`, `tie`). Training steps only.

    Parameters:

        min_consistency (`float`, *optional*):
            Keep a group only when its majority ratio is >= this fraction in [0, 1]. Default: no lower bound.
        max_consistency (`float`, *optional*):
            Keep a group only when its majority ratio is <= this fraction in [0, 1]. Default: no upper bound.
    """

    min_consistency: float | None = field(
        default=None,
        metadata={"help": "Consistency filter: groups whose majority ratio is below this fraction get advantage 0 "
                          "and leave the loss normalisation (default: no lower bound)."},
    )
    max_consistency: float | None = field(
        default=None,
        metadata={"help": "Consistency filter: groups whose majority ratio is above this fraction get advantage 0 "
                          "and leave the loss normalisation (default: no upper bound)."},
    )


def filters_groups(config) -> bool:
    """Whether the config sets either bound of the consistency filter."""
    return config.min_consistency is not None or config.max_consistency is not None


def consistency_filter_setting_problems(config) -> list[Problem]:
    """The problems of the consistency filter's settings: fractions in [0, 1], `min_consistency <= max_consistency`,
    and a `loss_type` whose normaliser leaves the filtered completions out. Normalises the bounds into floats."""
    problems = []
    for name in ("min_consistency", "max_consistency"):
        value = getattr(config, name)
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            problems.append(Problem(name, f"must be a fraction in [0, 1] or null, got {value!r}."))
            continue
        setattr(config, name, value)
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            problems.append(Problem(name, f"must be a fraction in [0, 1] or null, got {value}."))
    low, high = config.min_consistency, config.max_consistency
    if not problems and low is not None and high is not None and low > high:
        problems.append(Problem("min_consistency", f"must be <= max_consistency ({high}), got {low}.",
                                "lower min_consistency or raise max_consistency."))
    if filters_groups(config) and config.loss_type not in FILTER_LOSS_TYPES:
        problems.append(Problem(
            "loss_type",
            f"{config.loss_type!r} counts the completions of filtered groups in its normaliser, so the consistency "
            f"filter (min_consistency / max_consistency) cannot take them out of the loss.",
            f"set loss_type to one of {', '.join(FILTER_LOSS_TYPES)} (dapo: TRL's default), or unset the filter."))
    return problems
