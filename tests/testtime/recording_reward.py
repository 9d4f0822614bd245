"""A reward function that records what it is given (one JSON line per call, to `$TESTTIME_RECORD`) and rewards
nothing: the tests name it in `reward_funcs` to see what reaches a reward in a real training run."""

from __future__ import annotations

import json
import os


def record(completions, **kwargs):
    """Append the keyword arguments this call received (names, and every list, each value as text) and return 0.0 for
    each completion."""
    texts = {key: [str(v) for v in value] for key, value in kwargs.items() if isinstance(value, list)}
    with open(os.environ["TESTTIME_RECORD"], "a") as f:
        f.write(json.dumps({"keys": sorted(kwargs), "lists": texts}) + "\n")
    return [0.0] * len(completions)
