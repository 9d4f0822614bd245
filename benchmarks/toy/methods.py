"""The method table: each method's own reward and advantage (and its own knobs); everything else is shared.

Names are `reward+advantage`, with a parenthesised variant where one reward and advantage run twice; the README's
methods table gives the released settings these follow (recipes/tiny-cpu-*.yaml the tiny ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .data import BOXED_PATTERN, MAX_COMPLETION_LENGTH, judge_max_tokens

# The chance judge: the reference judge's outputs shuffled within each step; the expert judge: another model, taught
# for longer, whose folder `--expert-judge` names (`judges.py`).
CHANCE_JUDGE = "benchmarks.toy.judges:ShuffledJudge"
EXPERT_JUDGE = "benchmarks.toy.judges:ExpertJudge"
EXPERT_METHOD = "judge_modulated+lse (expert judge)"


@dataclass(frozen=True)
class Method:
    name: str
    reward: str  # registry name; a method whose reward is not installed is skipped
    config: dict[str, Any]
    # a run's time relative to a plain reward's (measured: BENCHMARKS.md); the slowest runs are started first, so
    # that no worker is left with a long run while the other idles
    cost: float = 1.0


def _plain(reward: str, advantage: str, cost: float = 1.0, **kwargs) -> Method:
    return Method(f"{reward}+{advantage}", reward, dict(reward_funcs=[reward], advantage=advantage, **kwargs), cost)


def _soft(advantage: str, soft: dict) -> Method:
    return _plain("soft_frequency", advantage, reward_kwargs={"soft_frequency": soft})


def judge_config(soft: dict, judge_template: str, max_tokens: int, backend: str = "reference",
                 advantage: str = "lse") -> dict:
    """Self-Judge: the consistency prior modulated by the frozen base's verdict (short template, one sample)."""
    return dict(
        reward_funcs=["judge_modulated"],
        reward_kwargs={"judge_modulated": {"base_reward": "soft_frequency", "base_kwargs": soft,
                                           "format_pattern": None}},
        advantage=advantage,
        judge_backend=backend,
        judge_prompt_template=judge_template,
        judge_temperature=1.0,
        judge_top_p=0.9,
        judge_max_tokens=max_tokens,
        judge_repeats=1,
        judge_on_failure="zero",
        # The run reports judge/parse_failure_rate; a miniature run's barely trained base (tests) writes no score,
        # which must not stop it.
        judge_max_parse_failure_rate=None,
    )


def csrs_config(anchor: float, mode: str) -> dict:
    """CSRS as released (GRPO advantages, K = 3, visual perturbation), the anchor on the actual length."""
    return dict(
        reward_funcs=["retrace_frequency"],
        reward_kwargs={"retrace_frequency": {"beta": 1.2, "weight": 0.9, "format_pattern": BOXED_PATTERN}},
        advantage="grpo",
        retrace_anchors=[anchor],
        retrace_anchor_base="actual_length",
        retrace_mode=mode,
        retrace_samples_per_anchor=3,
        retrace_visual_perturbation=True,
        retrace_noise_max_level=40,
    )


def methods(hard_threshold: float | None, judge_template: str, csrs_anchor: float = 0.7,
            num_generations: int = 8,
            judge_tokens: int = judge_max_tokens(MAX_COMPLETION_LENGTH)) -> dict[str, Method]:
    """Every method of the comparison, by name (`judge_tokens`: the judge's token budget, `data.judge_max_tokens` of
    the completion length)."""
    soft = {"hard_threshold": hard_threshold}
    table = [
        _plain("majority_vote", "grpo"),  # MM-UPT
        _soft("centered", soft),  # Self-Judge's prior as released
        _soft("lse", soft),
        Method("judge_modulated+lse", "judge_modulated",
               judge_config(soft, judge_template, judge_tokens), cost=1.6),
        # the same judge with its scores shuffled within each step: what the judge's information adds
        Method("judge_modulated+lse (chance judge)", "judge_modulated",
               judge_config(soft, judge_template, judge_tokens, backend=CHANCE_JUDGE), cost=1.6),
        # a better judge than the base (`--expert-judge DIR`): what a judge that can judge adds
        Method(EXPERT_METHOD, "judge_modulated",
               judge_config(soft, judge_template, judge_tokens, backend=EXPERT_JUDGE), cost=1.6),
        # CSRS re-inferring in a new assistant turn (released) and in the same turn (SCS)
        Method("csrs", "retrace_frequency", csrs_config(csrs_anchor, "new_turn"), cost=2.4),
        Method("csrs_continuation", "retrace_frequency", csrs_config(csrs_anchor, "continuation"), cost=2.2),
        # TTRL: the majority of twice as many votes as trained samples (released: 64 votes, 32 trained)
        _plain("ttrl_vote", "grpo", cost=1.7, vote_samples=2 * num_generations),
        _plain("self_certainty", "grpo", cost=1.2),  # Intuitor
        _plain("token_entropy", "grpo", cost=1.2),  # RENT, the whole response
        # the consistency filter on majority vote: groups where fewer than half agree leave the loss (EMPO keeps
        # 0.3-1.0 of G = 16; at 0.3 of G = 8 this base's groups, p_max 0.6-0.7, were never filtered)
        Method("majority_vote+grpo (filter)", "majority_vote",
               dict(reward_funcs=["majority_vote"], advantage="grpo", min_consistency=0.5, max_consistency=1.0)),
        # crossed pairs, to tell the reward's part from the advantage's
        _plain("majority_vote", "centered"),
        _soft("grpo", soft),
        # CSRS without its visual perturbation: re-inference on the clean images (isolates what VSP does)
        Method("csrs_no_vsp", "retrace_frequency",
               dict(csrs_config(csrs_anchor, "new_turn"), retrace_visual_perturbation=False), cost=2.4),
    ]
    return {m.name: m for m in table}


DEFAULT_METHODS = (
    "majority_vote+grpo", "soft_frequency+centered", "soft_frequency+lse", "judge_modulated+lse",
    "judge_modulated+lse (chance judge)", "csrs", "csrs_continuation", "ttrl_vote+grpo", "self_certainty+grpo",
    "token_entropy+grpo", "majority_vote+grpo (filter)", "majority_vote+centered", "soft_frequency+grpo",
)


def installed(method: Method) -> bool:
    from self_evolve_trl.rewards import REWARD_REGISTRY

    return method.reward in REWARD_REGISTRY
