"""TTRL: the G trained completions of a prompt are rewarded against the majority of a larger vote, G + M samples, the
M extra ones drawn with the same sampler and backend only to vote (see docs/math.md, section "TTRL"; Zuo et al.
2025, "TTRL: Test-Time Reinforcement Learning": 64 votes, 32 trained).

- `settings`: the `vote_samples` config field (M) and its checks.
- `provider`: `VoteSampleProvider`, which draws the extra samples during the rollout with the trainer's own
  generation backend and hands them to the reward as its `vote_completions` input. torch and TRL (import it from
  `self_evolve_trl.ttrl.provider`).
- `reward`: `ttrl_vote` (registered as "ttrl_vote"), the majority (or soft frequency) over the larger vote, and
  `larger_votes`, the vote itself.
- `diagnostics`: `larger_vote_metrics`, the `ttrl/*` metrics of the larger vote (its majority ratio, and with labels
  the accuracy of its pseudo-label).
"""

from __future__ import annotations

from .diagnostics import larger_vote_metrics
from .reward import larger_votes, ttrl_vote
from .settings import TTRLSettings, ttrl_setting_problems


# reward input -> "module:class" of its provider, built by the trainer when a reward function needs that input
PROVIDERS = {"vote_completions": "self_evolve_trl.ttrl.provider:VoteSampleProvider"}

__all__ = ["PROVIDERS", "TTRLSettings", "larger_vote_metrics", "larger_votes", "ttrl_setting_problems", "ttrl_vote"]
