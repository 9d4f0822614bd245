"""Settings of CSRS re-inference, which the `retrace_frequency` reward uses: the `CSRSSettings` fields of
`SelfEvolveConfig` (`retrace_*`, after CSRS's re-inference step) and their problems (`csrs_setting_problems`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem, choice_problems
from .prefix import ANCHOR_BASES, RETRACE_MODES


@dataclass
class CSRSSettings:
    r"""
    CSRS re-inference, used by the `retrace_frequency` reward; a part of [`SelfEvolveConfig`].

    Parameters:

        retrace_anchors (`list[float]`, *optional*, defaults to `[0.7]`):
            Anchor points, as fractions in [0, 1]: each completion is cut after this share of its tokens and the
            policy re-infers the rest.
        retrace_anchor_base (`str`, *optional*, defaults to `"actual_length"`):
            What the fraction is of: `actual_length` (the completion's own length) or `max_length`
            (`max_completion_length`, released CSRS: completions shorter than the cut are kept whole).
        retrace_mode (`str`, *optional*, defaults to `"new_turn"`):
            `new_turn` (released CSRS: the prefix becomes a finished assistant turn and the model answers in a new
            one) or `continuation` (SCS: the model continues the prefix in the same turn).
        retrace_samples_per_anchor (`int`, *optional*, defaults to `3`):
            K, re-inferences sampled from each prefix, with the training sampler and backend. With
            `reproducible_generation`, each is sampled on its own seed (layout-independent, like the rollouts).
        retrace_visual_perturbation (`bool`, *optional*, defaults to `False`):
            VSP: Gaussian noise on the images of the re-inference prompts only (never on the trained rollouts).
        retrace_noise_max_level (`int`, *optional*, defaults to `40`):
            VSP noise level k is drawn uniformly from {1..max}; σ = k·255/100.
        retrace_generation_batch_size (`int`, *optional*):
            Re-inference rows (prefixes × K samples) per generation call, rounded down to whole K-blocks. Default:
            all of a process's re-inferences in one call, the fastest. Set it (e.g. to the rollout batch) when K times
            the rollout batch does not fit in memory with transformers generation.
    """

    retrace_anchors: list[float] = field(
        default_factory=lambda: [0.7],
        metadata={"help": "CSRS anchor points: fractions in [0, 1] of the completion kept as the re-inference prefix."},
    )
    retrace_anchor_base: str = field(
        default="actual_length",
        metadata={"help": "CSRS: anchors are fractions of `actual_length` or `max_length`.", "choices": list(ANCHOR_BASES)},
    )
    retrace_mode: str = field(
        default="new_turn",
        metadata={"help": "CSRS re-inference prompt: `new_turn` or `continuation`.", "choices": list(RETRACE_MODES)},
    )
    retrace_samples_per_anchor: int = field(
        default=3, metadata={"help": "CSRS: re-inferences sampled from each prefix (K)."}
    )
    retrace_visual_perturbation: bool = field(
        default=False, metadata={"help": "CSRS VSP: Gaussian noise on the re-inference images only."}
    )
    retrace_noise_max_level: int = field(
        default=40, metadata={"help": "CSRS VSP: noise level k uniform in {1..max}; sigma = k*255/100."}
    )
    retrace_generation_batch_size: int | None = field(
        default=None, metadata={"help": "CSRS: re-inference rows per generation call (default: all in one call)."}
    )


def csrs_setting_problems(config) -> list[Problem]:
    """The problems of the CSRS settings: valid choices and ranges. Normalises `retrace_anchors` into a list of
    floats, as training reads it."""
    problems = choice_problems("retrace_anchor_base", config.retrace_anchor_base, ANCHOR_BASES)
    problems += choice_problems("retrace_mode", config.retrace_mode, RETRACE_MODES)
    if isinstance(config.retrace_anchors, (int, float)):
        config.retrace_anchors = [config.retrace_anchors]
    config.retrace_anchors = [float(a) for a in config.retrace_anchors or []]
    if not config.retrace_anchors or not all(0.0 <= a <= 1.0 for a in config.retrace_anchors):
        problems.append(Problem(
            "retrace_anchors", f"must be a non-empty list of fractions in [0, 1], got {config.retrace_anchors}."))
    if config.retrace_samples_per_anchor < 1:
        problems.append(Problem("retrace_samples_per_anchor", f"must be >= 1, got {config.retrace_samples_per_anchor}."))
    if config.retrace_generation_batch_size is not None and config.retrace_generation_batch_size < 1:
        problems.append(Problem("retrace_generation_batch_size",
                                f"must be >= 1 or null, got {config.retrace_generation_batch_size}."))
    if not 1 <= config.retrace_noise_max_level <= 100:
        problems.append(Problem("retrace_noise_max_level", f"must be in 1..100, got {config.retrace_noise_max_level}."))
    return problems
