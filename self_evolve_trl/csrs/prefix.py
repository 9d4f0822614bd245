"""Where a completion is cut for its re-inference: the anchor bases, the prompt modes and the prefix length.

Plain Python (no torch), so that the config can read the choices without importing the re-inference machinery.
"""

from __future__ import annotations

import math


RETRACE_MODES = ("new_turn", "continuation")
ANCHOR_BASES = ("actual_length", "max_length")

NEW_TURN_NEEDS_CONVERSATIONS = (
    "retrace_mode 'new_turn' needs conversational prompts (lists of messages), got plain-text prompts; "
    "use retrace_mode 'continuation'."
)


def prefix_length(length: int, anchor: float, base: str = "actual_length", max_length: int | None = None) -> int:
    """Tokens kept from a completion of `length` tokens (its end-of-sequence token not counted).

    Example:

    ```python
    >>> prefix_length(10, 0.7)                                       # ⌊0.7·10⌋
    7
    >>> prefix_length(10, 0.7, base="max_length", max_length=100)    # ⌊0.7·100⌋ = 70 > 10: kept whole
    10
    >>> prefix_length(90, 0.7, base="max_length", max_length=100)
    70

    ```
    """
    if base == "actual_length":
        reference = length
    elif base == "max_length":
        if max_length is None:
            raise ValueError("anchor base 'max_length' needs max_length.")
        reference = max_length
    else:
        raise ValueError(f"Unknown anchor base {base!r}; valid bases: {', '.join(ANCHOR_BASES)}.")
    cut = math.floor(anchor * reference + 1e-9)  # 0.7·10 is 7.000000000000001 in floating point, 0.29·100 28.99...
    return max(0, min(length, cut))


def strip_trailing(ids: list[int], tokens: list[int] | set[int]) -> list[int]:
    """`ids` without its trailing end-of-sequence / padding tokens.

    Example:

    ```python
    >>> strip_trailing([5, 6, 0, 0], {0})
    [5, 6]

    ```
    """
    end = len(ids)
    while end and ids[end - 1] in tokens:
        end -= 1
    return list(ids[:end])


# Reasoning tags kept in re-inference text even where a tokenizer marks them special: the prefix of a `new_turn`
# prompt and the re-inferred texts must keep the completion's `<think>` block as it was written.
REASONING_TAGS = ("<think>", "</think>")


def dropped_token_ids(tokenizer) -> set[int]:
    """The ids that `decode_text` leaves out: every special token (end of turn, padding, vision placeholders, and
    added tokens marked special) except the `REASONING_TAGS`."""
    special = set(tokenizer.all_special_ids)
    special |= {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    kept = {i for i, token in tokenizer.added_tokens_decoder.items() if token.content in REASONING_TAGS}
    return special - kept


def decode_text(tokenizer, ids: list[int], dropped: set[int]) -> str:
    """`ids` as text without the `dropped` ids (`dropped_token_ids`): `decode(skip_special_tokens=True)`, except
    that `<think>`/`</think>` survive where the tokenizer marks them special."""
    return tokenizer.decode([i for i in ids if i not in dropped], skip_special_tokens=False)
