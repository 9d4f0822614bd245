"""The resumable per-sample cache of the evaluation runs.

Cache: `<output_dir>/samples/<benchmark>.jsonl`, one line per item and generation mode (greedy, or k samples),
keyed by the item id and a hash of everything that changes the outputs (model and its weights' fingerprint, how
an adapter is served, backend, dtype, instruction, hints, pixel bounds, splits, decoding settings); a line whose
question text differs (another copy of the data with the same ids) is not reused. Lines are appended and flushed
batch by batch, so an interrupted evaluation loses at most the batch in flight and resumes where it stopped; a run
with other settings adds its own lines beside them. Scoring is recomputed from the cached outputs on every run, so
changing the scoring rules never needs new generations.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from .benchmarks import EvalItem


def question_hash(item: EvalItem) -> str:
    """A short hash of the question text, kept with each record to tell copies of the data apart."""
    return hashlib.sha256(item.question.encode()).hexdigest()[:12]


def settings_hash(value: Any) -> str:
    """The cache key of a JSON-able description of the settings."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


class SampleCache:
    """Append-only jsonl of generated outputs for one benchmark, keyed by `(item id, settings hash)`."""

    def __init__(self, path: str):
        self.path = path
        self.records: dict[tuple[str, str], dict] = {}
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # the last line of a run that was killed mid-write
                        continue
                    self.records[(record["id"], record["settings"])] = record

    def get(self, item: EvalItem, settings: str) -> dict | None:
        record = self.records.get((item.id, settings))
        if record is not None and record.get("question") != question_hash(item):
            return None  # same id, other question (another copy of the data): generate again
        return record

    def add(self, records: list[dict]) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a") as f:
            f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
            f.flush()
            os.fsync(f.fileno())
        for record in records:
            self.records[(record["id"], record["settings"])] = record

