"""Token-level confidence rewards: self-certainty (Intuitor) and token entropy (RENT) (see docs/math.md, section
"Self-certainty and entropy").

Both rewards score a completion by how confident the policy was while writing it, from the policy's own next-token
distributions: no answer, label or vote is read.

- `stats`: the per-token statistics from logits (`token_stats_from_logits`: entropy and self-certainty, chunked).
  torch.
- `provider`: `TokenStatsProvider`, the `token_stats` reward input: one no-grad forward pass of the policy over
  prompt + completion, through TRL's own `_get_per_token_logps_and_entropies`. torch and TRL (import it from
  `self_evolve_trl.certainty.provider`).
- `reward`: `self_certainty` and `token_entropy` (registered under these names). Plain Python.
- `settings`: the `certainty_*` config fields and their checks.
"""

from __future__ import annotations

from .reward import self_certainty, token_entropy


# reward input -> "module:class" of its provider, built by the trainer when a reward function needs that input
PROVIDERS = {"token_stats": "self_evolve_trl.certainty.provider:TokenStatsProvider"}

__all__ = ["PROVIDERS", "self_certainty", "token_entropy"]
