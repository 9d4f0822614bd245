"""Per-token confidence statistics from logits: entropy and self-certainty (docs/math.md, #certainty).

For the temperature-scaled logits z ∈ R^V of one position, with p = softmax(z):

    H(p)        = logsumexp(z) − Σ_j p_j z_j
    KL(U ‖ p)   = −log V − (1/V) Σ_j log p_j = logsumexp(z) − mean_j z_j − log V     (self-certainty)

Computed in float32, a few positions at a time, so that no more than `chunk_tokens` × V float32 values are held at
once; `token_stats_from_hidden` also projects the hidden states through the LM head a chunk at a time, so the logits
of a whole sequence are never held.
"""

from __future__ import annotations

import math

import torch

CHUNK_TOKENS = 1024  # positions per float32 chunk


def token_stats_from_logits(
    logits: torch.Tensor, temperature: float = 1.0, chunk_tokens: int = CHUNK_TOKENS
) -> tuple[torch.Tensor, torch.Tensor]:
    """(entropy, self_certainty), each of the shape of `logits` without its last (vocabulary) dimension.

    Example:

    ```python
    >>> entropy, certainty = token_stats_from_logits(torch.zeros(1, 4))   # uniform over V = 4
    >>> round(entropy.item(), 6) == round(math.log(4), 6), round(certainty.item(), 6)
    (True, 0.0)

    ```
    """
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.size(-1))
    log_v = math.log(flat.size(-1))
    entropies, certainties = [], []
    for start in range(0, flat.size(0), chunk_tokens):
        z = flat[start : start + chunk_tokens].float() / temperature
        lse = torch.logsumexp(z, dim=-1)
        p = torch.softmax(z, dim=-1)
        entropies.append(lse - (p * z).sum(dim=-1))
        certainties.append(lse - z.mean(dim=-1) - log_v)
    entropy = torch.cat(entropies) if entropies else flat.new_zeros(0, dtype=torch.float32)
    certainty = torch.cat(certainties) if certainties else flat.new_zeros(0, dtype=torch.float32)
    return entropy.view(shape), certainty.view(shape)


def token_stats_from_hidden(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, temperature: float = 1.0,
    chunk_tokens: int = CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(entropy, self_certainty) of the logits `hidden @ weight.T + bias`, projected `chunk_tokens` positions at a
    time; each of the shape of `hidden` without its last dimension."""
    shape = hidden.shape[:-1]
    flat = hidden.reshape(-1, hidden.size(-1)).to(weight.device)
    parts = [
        token_stats_from_logits(torch.nn.functional.linear(flat[start : start + chunk_tokens], weight, bias),
                                temperature, chunk_tokens)
        for start in range(0, flat.size(0), chunk_tokens)
    ]
    if not parts:
        empty = flat.new_zeros(shape, dtype=torch.float32)
        return empty, empty.clone()
    return torch.cat([e for e, _ in parts]).view(shape), torch.cat([c for _, c in parts]).view(shape)
