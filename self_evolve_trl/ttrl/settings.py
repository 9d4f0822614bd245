"""Settings of TTRL's larger vote, which the `ttrl_vote` reward uses: the `TTRLSettings` field of `SelfEvolveConfig`
(`vote_samples`) and its problems (`ttrl_setting_problems`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem


@dataclass
class TTRLSettings:
    r"""
    TTRL's larger vote, used by the `ttrl_vote` reward; a part of [`SelfEvolveConfig`].

    Parameters:

        vote_samples (`int`, *optional*, defaults to `0`):
            M, extra samples drawn per prompt only to vote (with the training sampler and backend): the G trained
            completions are rewarded against the majority of all G + M answers. Released TTRL: 64 votes for 32 trained
            completions, M = 32 with G = 32. A multiple of `num_generations` (and of `num_generations_eval`): each
            completion draws M / G of its prompt's extra samples, so every process draws as many as the others.
            With `reproducible_generation`, each is sampled on its own seed (layout-independent, like the rollouts).
    """

    vote_samples: int = field(
        default=0,
        metadata={"help": "TTRL: extra samples per prompt drawn only to vote (M); the trained G are rewarded against "
                          "the majority of G + M. A multiple of num_generations."},
    )


def ttrl_setting_problems(config) -> list[Problem]:
    """The problems of the TTRL settings: `vote_samples` is a non-negative multiple of the group sizes of training
    and evaluation."""
    m = config.vote_samples
    if not isinstance(m, int) or isinstance(m, bool) or m < 0:
        return [Problem("vote_samples", f"must be an integer >= 0, got {m!r}.")]
    problems = []
    sizes = {"num_generations": config.num_generations,
             "num_generations_eval": getattr(config, "num_generations_eval", None)}
    for name, size in sizes.items():
        if size and m % size:
            problems.append(Problem(
                "vote_samples", f"({m}) must be a multiple of {name} ({size}): each completion draws M / G of its "
                "prompt's extra samples.", f"use vote_samples: {max(1, round(m / size)) * size}."))
    return problems
