"""Settings of the token-level confidence rewards' input: the `CertaintySettings` fields of `SelfEvolveConfig`
(`certainty_*`) and their problems (`certainty_setting_problems`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem


@dataclass
class CertaintySettings:
    r"""
    The `token_stats` reward input of `self_certainty` and `token_entropy`; a part of [`SelfEvolveConfig`].

    Parameters:

        certainty_batch_size (`int`, *optional*):
            Completions per forward pass when the policy scores its own completions for `token_stats` (the logits of
            one pass are held, in the model's dtype, for its completion tokens). Default: the per-device batch size,
            as TRL's own log-probability pass.
        certainty_chunk_tokens (`int`, *optional*, defaults to `1024`):
            Positions whose float32 logits are reduced to entropy and self-certainty at once.
    """

    certainty_batch_size: int | None = field(
        default=None,
        metadata={"help": "token_stats: completions per no-grad forward pass (default: the per-device batch size)."},
    )
    certainty_chunk_tokens: int = field(
        default=1024, metadata={"help": "token_stats: positions reduced at once in float32 (memory bound)."}
    )


CERTAINTY_REWARDS = ("self_certainty", "token_entropy")  # the rewards that read `token_stats`


def certainty_setting_problems(config) -> list[Problem]:
    """The problems of the `certainty_*` settings (positive sizes) and of the `last_tokens` / `last_fraction` keyword
    arguments of `self_certainty` and `token_entropy` (at most one; a positive count, a fraction in (0, 1])."""
    problems = []
    for name in CERTAINTY_REWARDS:
        kwargs = (config.reward_kwargs or {}).get(name)
        if isinstance(kwargs, dict):
            problems += last_part_problems(name, kwargs.get("last_tokens"), kwargs.get("last_fraction"))
    if config.certainty_batch_size is not None and config.certainty_batch_size < 1:
        problems.append(Problem("certainty_batch_size", f"must be >= 1 or null, got {config.certainty_batch_size}."))
    if config.certainty_chunk_tokens < 1:
        problems.append(Problem("certainty_chunk_tokens", f"must be >= 1, got {config.certainty_chunk_tokens}."))
    return problems


def last_part_problems(name: str, last_tokens, last_fraction) -> list[Problem]:
    """Which tokens a confidence reward averages over: all (neither set), the last `last_tokens`, or the last
    `last_fraction` of them."""
    area = f"reward_kwargs[{name!r}]"
    if last_tokens is not None and last_fraction is not None:
        return [Problem(area, "sets both last_tokens and last_fraction.", "set at most one of them.")]
    if last_tokens is not None and (isinstance(last_tokens, bool) or not isinstance(last_tokens, int) or last_tokens < 1):
        return [Problem(area, f"last_tokens must be an integer >= 1 or null, got {last_tokens!r}.")]
    if last_fraction is not None and (isinstance(last_fraction, bool) or not isinstance(last_fraction, (int, float))
                                      or not 0 < last_fraction <= 1):
        return [Problem(area, f"last_fraction must be in (0, 1] or null, got {last_fraction!r}.")]
    return []
