"""Group advantages from group rewards (the equations: `docs/math.md`, "Advantages").

`group_advantages(rewards, group_size, mode)` works on a flat reward vector made of whole groups in order:

- `grpo`: TRL's own, (r_i - mean(r)) / (std(r) + 1e-4), std unbiased; `scale` chooses the std of the group
  (`group`), of the whole batch (`batch`) or none (`none`: mean-centred only).
- `centered`: A_i = r_i - mean(r) (what the released Self-Judge trainer effectively does).
- `lse`: A_i = r_i/τ - log Σ_j exp(r_j/τ) + o, the log of the group's energy-based distribution q = softmax(r/τ);
  o = log G (`offset="log_group_size"`, default: equal rewards give exactly 0) or 0 (`offset="none"`, every A_i ≤ 0).

Each mode is one function `fn(rewards, valid, settings) -> advantages` in the registry `ADVANTAGES`: `rewards` is
the (groups, group_size) float matrix, `valid` its mask of scorable rewards, `settings` an `AdvantageSettings`.
`register_advantage(name, fn)` adds a mode. Rewards that are NaN (unscorable: every reward function returned None)
are left out of their group's statistics and get advantage 0 whatever the mode returns for them. `clip` clamps
advantages to [-clip, clip].

Which settings combine (`advantage_setting_problems`, the one rule that the config, `cli check` and
`group_advantages` apply): `scale` and TRL's `multi_objective_aggregation: normalize_then_sum` go with `grpo` only,
`tau` and `offset` (other than their defaults) with `lse` only, `clip` with all of them; `normalize_then_sum`
normalises each reward within its group and then the sum over the batch, with no `scale` choice of its own
(`group`). An unset `scale` (None) is `group` for `grpo` and `none` for the others (`resolved_scale`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import Problem, choice_problems
from .plugins import import_object

LSE_OFFSETS = ("log_group_size", "none")
SCALE_MODES = ("group", "batch", "none")
AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")  # TRL's `multi_objective_aggregation`
DEFAULT_LSE_TAU = 1.0
DEFAULT_LSE_OFFSET = "log_group_size"


@dataclass(frozen=True)
class AdvantageSettings:
    """The settings of one advantage computation (checked by `advantage_setting_problems` before use).

    Attributes:
        mode: the name of the advantage in `ADVANTAGES`.
        tau: `lse`'s temperature τ.
        offset: `lse`'s offset, `log_group_size` or `none`.
        scale: `grpo`'s std, resolved (`group`, `batch` or `none`; see `resolved_scale`).
        clip: advantages are clamped to [-clip, clip]; None for no clamp.
    """

    mode: str = "lse"
    tau: float = DEFAULT_LSE_TAU
    offset: str = DEFAULT_LSE_OFFSET
    scale: str = "none"
    clip: float | None = None


AdvantageFunction = Callable[[torch.Tensor, torch.Tensor, AdvantageSettings], torch.Tensor]


def _nan_std(x: torch.Tensor, valid: torch.Tensor, dim=None) -> torch.Tensor:
    """Unbiased std over valid entries (as TRL's `nanstd`); NaN where fewer than two are valid."""
    count = valid.sum(dim=dim, keepdim=dim is not None)
    mean = torch.where(valid, x, 0).sum(dim=dim, keepdim=dim is not None) / count
    squares = torch.where(valid, (x - mean) ** 2, 0).sum(dim=dim, keepdim=dim is not None)
    return torch.sqrt(squares / (count - 1))


def centered_rewards(rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """r_i - mean(r) per group (rows), the mean over the valid rewards.

    The mean is taken around a member of the group, so that a group of equal rewards is centred to exactly 0 (a
    plain float32 mean of eight 0.3s is not exactly 0.3).
    """
    count = valid.sum(dim=1, keepdim=True)
    reference = torch.where(valid, rewards, -torch.inf).max(dim=1, keepdim=True).values
    reference = torch.where(torch.isfinite(reference), reference, torch.zeros_like(reference))
    mean = reference + torch.where(valid, rewards - reference, 0).sum(dim=1, keepdim=True) / count.clamp(min=1)
    return (rewards - reference) - (mean - reference)


def centered_advantages(rewards: torch.Tensor, valid: torch.Tensor, settings: AdvantageSettings) -> torch.Tensor:
    """`centered`: A_i = r_i - mean(r).

    Example:

    ```python
    >>> r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    >>> centered_advantages(r, ~r.isnan(), AdvantageSettings("centered")).tolist()
    [[0.75, -0.25, -0.25, -0.25]]

    ```
    """
    return centered_rewards(rewards, valid)


def grpo_advantages(rewards: torch.Tensor, valid: torch.Tensor, settings: AdvantageSettings) -> torch.Tensor:
    """`grpo`: (r_i - mean(r)) / (std + 1e-4), std of the group, of the batch, or none (`settings.scale`).

    Example:

    ```python
    >>> r = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    >>> grpo_advantages(r, ~r.isnan(), AdvantageSettings("grpo", scale="none")).tolist()
    [[0.5, -0.5], [0.0, 0.0]]

    ```
    """
    advantages = centered_rewards(rewards, valid)
    if settings.scale == "none":
        return advantages
    if settings.scale == "group":
        std = _nan_std(rewards, valid, dim=1)
    else:
        std = _nan_std(rewards, valid).expand(rewards.size(0), 1)
    return advantages / (torch.nan_to_num(std, nan=0.0) + 1e-4)


def lse_advantages(rewards: torch.Tensor, valid: torch.Tensor, settings: AdvantageSettings) -> torch.Tensor:
    """`lse`: A_i = r_i/τ - log Σ_j exp(r_j/τ) + o, o = log G (`offset="log_group_size"`) or 0 (`"none"`).

    Example:

    ```python
    >>> r = torch.tensor([[0.5, 0.5]])
    >>> lse_advantages(r, ~r.isnan(), AdvantageSettings("lse")).tolist()
    [[0.0, 0.0]]

    ```
    """
    z = torch.where(valid, rewards / settings.tau, -torch.inf)
    z_max = z.max(dim=1, keepdim=True).values
    z_max = torch.where(torch.isfinite(z_max), z_max, torch.zeros_like(z_max))
    shifted = z - z_max  # exactly 0 for every member of an equal-reward group
    log_partition = torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    advantages = shifted - log_partition
    if settings.offset == "log_group_size":
        advantages = advantages + torch.log(valid.sum(dim=1, keepdim=True).to(rewards.dtype))
    return advantages


ADVANTAGES: dict[str, AdvantageFunction] = {
    "grpo": grpo_advantages,
    "centered": centered_advantages,
    "lse": lse_advantages,
}
ADVANTAGE_MODES = ADVANTAGES.keys()  # the valid `advantage` names: a live view, so registered modes are in it


def register_advantage(name: str, fn: AdvantageFunction) -> None:
    """Add an advantage mode: `fn(rewards, valid, settings)` gets the (groups, group_size) rewards, their mask of
    valid (non-NaN) entries and the `AdvantageSettings`, and returns advantages of the same shape. A new mode takes
    `clip` (applied after it), not `scale`, `tau` or `offset`, which belong to `grpo` and `lse`.

    Example:

    ```python
    >>> register_advantage("ranked", lambda r, valid, settings: r.argsort(dim=1).argsort(dim=1).float())
    >>> group_advantages(torch.tensor([0.2, 0.9, 0.5]), 3, mode="ranked").tolist()
    [0.0, 2.0, 1.0]
    >>> del ADVANTAGES["ranked"]

    ```
    """
    if name in ADVANTAGES:
        raise ValueError(f"Advantage {name!r} is already registered.")
    ADVANTAGES[name] = fn


def advantage_function(name: str) -> AdvantageFunction:
    """The advantage mode registered as `name`. A `module:function` path is imported and registered under that name
    the first time, so that a recipe can name its own mode (`advantage: my_advantages:rank_advantages`). Raises
    `KeyError` for an unknown name, `ImportError` or `AttributeError` for a path that does not import."""
    if name not in ADVANTAGES and isinstance(name, str) and ":" in name:
        ADVANTAGES[name] = import_object(name)
    return ADVANTAGES[name]


def scale_name(scale_rewards):
    """TRL's `scale_rewards` as a name: `True` is `group` and `False` is `none`, as TRL reads them; None stays None."""
    return {True: "group", False: "none"}[scale_rewards] if isinstance(scale_rewards, bool) else scale_rewards


def _value_problems(advantage, aggregation, scale, lse_tau, lse_offset, clip_advantage) -> list[Problem]:
    """Unknown names and out-of-range numbers."""
    try:
        advantage_function(advantage)
        problems = []
    except KeyError:
        problems = choice_problems("advantage", advantage, ADVANTAGE_MODES)
    except (ImportError, AttributeError) as error:
        problems = [Problem("advantage", f"{advantage!r} cannot be imported ({error}).",
                            "give an importable `module:function`.")]
    problems += choice_problems("multi_objective_aggregation", aggregation, AGGREGATIONS)
    if scale is not None:
        problems += choice_problems("scale_rewards", scale, SCALE_MODES)
    problems += choice_problems("lse_offset", lse_offset, LSE_OFFSETS)
    if isinstance(lse_tau, (int, float)) and lse_tau <= 0:
        problems.append(Problem("lse_tau", f"must be > 0, got {lse_tau}."))
    if isinstance(clip_advantage, (int, float)) and clip_advantage <= 0:
        problems.append(Problem("clip_advantage", f"must be > 0 or null, got {clip_advantage}."))
    return problems


def _combination_problems(advantage, aggregation, scale, lse_tau, lse_offset) -> list[Problem]:
    """Settings that `advantage` would ignore, between valid values."""
    problems = []
    if advantage != "grpo":
        if aggregation == "normalize_then_sum":
            problems.append(Problem(
                "multi_objective_aggregation",
                f"'normalize_then_sum' works with advantage 'grpo' only; with advantage {advantage!r} the valid "
                "choice is sum_then_normalize."))
        if scale in ("group", "batch"):
            problems.append(Problem(
                "scale_rewards",
                f"{scale!r} applies to advantage 'grpo' only; advantage {advantage!r} is not scaled: the valid choice "
                "is none (or leave scale_rewards out)."))
    elif aggregation == "normalize_then_sum" and scale in ("batch", "none"):
        problems.append(Problem(
            "scale_rewards",
            f"{scale!r} does not apply with multi_objective_aggregation 'normalize_then_sum' (each reward is "
            "normalised within its group, then their sum over the batch); valid choices: group (or leave "
            "scale_rewards out), or multi_objective_aggregation sum_then_normalize."))
    if advantage != "lse":
        lse_settings = (("lse_tau", lse_tau, DEFAULT_LSE_TAU), ("lse_offset", lse_offset, DEFAULT_LSE_OFFSET))
        for name, value, default in lse_settings:
            if value != default:
                problems.append(Problem(
                    name,
                    f"{value!r} applies to advantage 'lse' only, not {advantage!r}: leave it out (default "
                    f"{default!r}), or set advantage: lse."))
    return problems


def advantage_problems(
    advantage: str,
    aggregation: str = "sum_then_normalize",
    scale_rewards=None,
    lse_tau: float = DEFAULT_LSE_TAU,
    lse_offset: str = DEFAULT_LSE_OFFSET,
    clip_advantage: float | None = None,
) -> list[Problem]:
    """Every problem of a combination of advantage settings, each naming its field: what is wrong and the valid
    choices. The one rule that the config, `check` and `group_advantages` apply.

    `scale_rewards` None means "not set". A setting that the advantage would ignore is a problem (for `lse_tau` and
    `lse_offset`: a value other than their default), so that every accepted combination is applied as written.

    Example:

    ```python
    >>> [p.area for p in advantage_problems("lse", "normalize_then_sum", lse_tau=-1.0)]
    ['lse_tau']
    >>> advantage_problems("grpo", "normalize_then_sum", scale_rewards="group", clip_advantage=0.1)
    []

    ```
    """
    scale = scale_name(scale_rewards)
    problems = _value_problems(advantage, aggregation, scale, lse_tau, lse_offset, clip_advantage)
    if problems:
        return problems  # the combinations are only judged between valid values
    return _combination_problems(advantage, aggregation, scale, lse_tau, lse_offset)


def advantage_setting_problems(
    advantage: str,
    aggregation: str = "sum_then_normalize",
    scale_rewards=None,
    lse_tau: float = DEFAULT_LSE_TAU,
    lse_offset: str = DEFAULT_LSE_OFFSET,
    clip_advantage: float | None = None,
) -> list[str]:
    """`advantage_problems` as sentences, one per problem.

    Example:

    ```python
    >>> advantage_setting_problems("lse", "normalize_then_sum")[0].split(";")[0]
    "multi_objective_aggregation 'normalize_then_sum' works with advantage 'grpo' only"

    ```
    """
    return [p.line for p in advantage_problems(advantage, aggregation, scale_rewards, lse_tau, lse_offset,
                                               clip_advantage)]


def resolved_scale(advantage: str, scale_rewards=None) -> str:
    """The `scale_rewards` name that `advantage` applies: an unset one (None) is `group` for `grpo` (TRL's default)
    and `none` for the advantages that are not scaled."""
    scale = scale_name(scale_rewards)
    if scale is None:
        scale = "group" if advantage == "grpo" else "none"
    return scale


def clip_advantages(advantages: torch.Tensor, clip: float | None) -> torch.Tensor:
    """Advantages clamped to [-clip, clip]; unchanged when `clip` is None."""
    return advantages if clip is None else advantages.clamp(-clip, clip)


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    mode: str = "lse",
    tau: float = DEFAULT_LSE_TAU,
    offset: str = DEFAULT_LSE_OFFSET,
    scale: str | None = None,
    clip: float | None = None,
) -> torch.Tensor:
    """Advantages for a flat vector of rewards made of consecutive groups of `group_size`.

    `tau` and `offset` are `lse`'s, `scale` (unset: `group`) is `grpo`'s; giving one to another advantage raises
    `ValueError`, as does any combination that `advantage_setting_problems` refuses.

    Example:

    ```python
    >>> r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    >>> group_advantages(r, 4, mode="centered").tolist()
    [0.75, -0.25, -0.25, -0.25, 0.0, 0.0, 0.0, 0.0]
    >>> [round(a, 4) for a in group_advantages(r, 4, mode="lse").tolist()]
    [0.6426, -0.3574, -0.3574, -0.3574, 0.0, 0.0, 0.0, 0.0]

    ```
    """
    problems = advantage_setting_problems(mode, "sum_then_normalize", scale, tau, offset, clip)
    if problems:
        raise ValueError(" ".join(problems))
    settings = AdvantageSettings(mode, tau, offset, resolved_scale(mode, scale), clip)
    if rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be a flat vector of whole groups of {group_size}, got shape {tuple(rewards.shape)}.")
    grouped = rewards.float().view(-1, group_size)
    valid = ~torch.isnan(grouped)
    advantages = advantage_function(settings.mode)(grouped, valid, settings)
    advantages = torch.where(valid, advantages, torch.zeros_like(advantages))
    advantages = clip_advantages(advantages, settings.clip)
    return advantages.reshape(-1).to(rewards.dtype if rewards.is_floating_point() else torch.float32)
