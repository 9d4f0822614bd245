"""Held-out accuracy before and after training (`accuracy_before_after: true`): did label-free training help?

The labelled eval split (`eval_dataset_name`) is scored twice with the model being trained, before the first step
and after the last: greedy pass@1 (one greedy answer per question) and, with k = `num_generations_eval` (else
`num_generations`) samples at the training sampler's temperature and top-p, sampled pass@1 and maj@k. Answers are
read and scored as the evaluation command does (`self_evolve_trl.training.heldout.eval_command_label_metrics`). Questions
whose prompt and images also occur in the training split are left out, so every scored question is new to the
training. The results go to the log history as `heldout/*` entries (step 0 and the last step) and so to the
summary's first lines; the labels are read for this score only.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from transformers import TrainerCallback

from .heldout import eval_command_label_metrics

HELDOUT_PREFIX = "heldout/"


def row_fingerprint(row: dict[str, Any]) -> str:
    """A hash of a prepared row's prompt text and image pixels (the same question on the same image: same hash)."""
    digest = hashlib.sha1(repr(row["prompt"]).encode())
    for image in row.get("images") or []:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


def unseen_rows(eval_dataset, train_dataset) -> list[int]:
    """Indexes of the eval rows whose prompt and images occur nowhere in the training split."""
    seen = {row_fingerprint(row) for row in train_dataset}
    return [i for i, row in enumerate(eval_dataset) if row_fingerprint(row) not in seen]


def _generate(model, processor, rows: list[dict], k: int, **sampling) -> list[str]:
    """k completions per row (greedy if `sampling` is empty), decoded, in row order."""
    texts = [processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False) for row in rows]
    images = [list(row["images"]) for row in rows] if rows[0].get("images") else None
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt").to(model.device)
    pad_id = processor.tokenizer.pad_token_id
    with torch.no_grad():
        out = model.generate(**inputs, num_return_sequences=k, pad_token_id=pad_id, **sampling)
    return processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def heldout_accuracy(model, processor, rows: list[dict], labels: list[str], k: int, temperature: float,
                     top_p: float, max_new_tokens: int, batch_size: int = 32, seed: int = 0) -> dict[str, float]:
    """Greedy pass@1, sampled pass@1 and maj@k of `model` on `rows` (prepared dataset rows) against `labels`.

    The torch random state is restored afterwards, so scoring does not change the training run's sampling."""
    was_training = model.training
    model.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    scores: dict[str, list[float]] = {"greedy": [], "sampled": [], "maj": []}
    try:
        for start in range(0, len(rows), batch_size):
            chunk, chunk_labels = rows[start : start + batch_size], labels[start : start + batch_size]
            greedy = _generate(model, processor, chunk, 1, do_sample=False, max_new_tokens=max_new_tokens,
                               temperature=None, top_p=None, top_k=None)
            sampled = _generate(model, processor, chunk, k, do_sample=True, temperature=temperature, top_p=top_p,
                                top_k=0, max_new_tokens=max_new_tokens)
            scores["greedy"] += eval_command_label_metrics(greedy, chunk_labels, 1)["labels/rollout_accuracy"]
            metrics = eval_command_label_metrics(sampled, chunk_labels, k)
            scores["sampled"] += metrics["labels/rollout_accuracy"]
            scores["maj"] += metrics["labels/maj_at_g"]
    finally:
        torch.random.set_rng_state(state)
        model.train(was_training)

    def mean(values):
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    return {
        f"{HELDOUT_PREFIX}greedy_pass1": mean(scores["greedy"]),
        f"{HELDOUT_PREFIX}sampled_pass1": mean(scores["sampled"]),
        f"{HELDOUT_PREFIX}maj_at_k": mean(scores["maj"]),
        f"{HELDOUT_PREFIX}k": float(k),
        f"{HELDOUT_PREFIX}questions": float(len(rows)),
    }


class BeforeAfterCallback(TrainerCallback):
    """Score the held-out rows at the start of training (not on resume: the log history has it) and at the end,
    and append the scores to the log history. Register it before `SummaryCallback`, which reads them."""

    def __init__(self, eval_dataset, train_dataset, processor, label_column: str):
        keep = unseen_rows(eval_dataset, train_dataset)
        self.rows = [eval_dataset[i] for i in keep]
        self.labels = [row[label_column] for row in self.rows]
        self.left_out = len(eval_dataset) - len(keep)
        self.processor = processor

    def _score(self, args, state, model) -> None:
        scores = heldout_accuracy(
            model, self.processor, self.rows, self.labels, args.num_generations_eval or args.num_generations,
            args.temperature, args.top_p, args.max_completion_length,
            batch_size=max(1, args.per_device_eval_batch_size), seed=args.seed,
        )
        scores[f"{HELDOUT_PREFIX}left_out_seen_in_training"] = float(self.left_out)
        if state.is_world_process_zero:
            state.log_history.append({"step": state.global_step, **scores})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0 and self.rows:
            self._score(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.rows:
            self._score(args, state, model)
