"""Held-out evaluation: greedy pass@1, sampled pass@1, maj@k, pass@k, lengths and routes; the judge's accuracy."""

from __future__ import annotations

import random
from collections import Counter

import torch

from self_evolve_trl.answers import extract_answer
from self_evolve_trl.data.synthetic import SOLUTION_ROUTES, Board, draw_board
from self_evolve_trl.data.tiny_base import collate, encode_prompt
from self_evolve_trl.voting import vote

from .data import candidate, correct, judge_messages, prompt_messages, route_of


def _encode_batch(processor, boards: list[Board], grid: int) -> dict:
    encoded = [encode_prompt(processor, prompt_messages(b, grid, draw_board(b.cells, grid))) for b in boards]
    return collate(encoded, processor.tokenizer.pad_token_id, left=True)


def _score_groups(totals: Counter, routes: Counter, chunk: list[Board], texts: list[str], lengths: list[int],
                  k: int) -> None:
    for i, board in enumerate(chunk):
        group = texts[i * k : (i + 1) * k]
        answers = [extract_answer(t) for t in group]
        right = [correct(a, board) for a in answers]
        group_vote = vote(answers, match="normalized")
        totals["sampled"] += sum(right) / k
        totals["maj"] += correct(group_vote.majority_answer, board)
        totals["pass"] += any(right)
        totals["sampled_length"] += sum(lengths[i * k : (i + 1) * k]) / k
        totals["abstention"] += sum(a is None for a in answers) / k
        totals["p_max"] += group_vote.p_max
        routes.update(route_of(t) for t in group)


@torch.no_grad()
def evaluate(model, processor, boards: list[Board], grid: int, k: int, max_new_tokens: int, temperature: float,
             batch_size: int = 50, seed: int = 0, greedy_only: bool = False) -> dict[str, float]:
    """Greedy pass@1, sampled pass@1, maj@k, pass@k, lengths and route shares on labelled boards."""
    was_training = model.training
    model.eval()
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id
    totals: Counter = Counter()
    routes: Counter = Counter()
    examples: list[dict] = []
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for start in range(0, len(boards), batch_size):
        chunk = boards[start : start + batch_size]
        batch = _encode_batch(processor, chunk, grid)
        width = batch["input_ids"].shape[1]
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_id)
        greedy_texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for board, text, n in zip(chunk, greedy_texts, (out[:, width:] != pad_id).sum(1).tolist()):
            totals["greedy"] += correct(extract_answer(text), board)
            totals["greedy_length"] += n
        if greedy_only:
            continue
        out = model.generate(
            **batch, do_sample=True, temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=k,
            max_new_tokens=max_new_tokens, pad_token_id=pad_id,
        )
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        if start == 0:
            examples = [{"answer": b.answer, "question": b.question, "greedy": greedy_texts[i],
                         "samples": texts[i * k : i * k + 4]} for i, b in enumerate(chunk[:4])]
        _score_groups(totals, routes, chunk, texts, (out[:, width:] != pad_id).sum(1).tolist(), k)
    torch.random.set_rng_state(generator_state)
    model.train(was_training)
    n = len(boards)
    result = {"greedy_pass1": totals["greedy"] / n, "greedy_length": totals["greedy_length"] / n}
    if not greedy_only:
        result.update(
            sampled_pass1=totals["sampled"] / n, maj_at_k=totals["maj"] / n, pass_at_k=totals["pass"] / n,
            sampled_length=totals["sampled_length"] / n, abstention=totals["abstention"] / n,
            p_max=totals["p_max"] / n, **{f"route_{r}": routes[r] / (n * k) for r in (*SOLUTION_ROUTES, "other")},
            examples=examples,
        )
    return result


@torch.no_grad()
def judge_accuracy(model, processor, boards: list[Board], grid: int, template, routes: list[str], max_tokens: int,
                   seed: int = 0, batch_size: int = 50) -> float:
    """Greedy accuracy of the model as a judge of half-right, half-wrong candidate solutions of `boards`."""
    rng = random.Random(seed)
    pad_id = processor.tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    right = 0
    for start in range(0, len(boards), batch_size):
        chunk = boards[start : start + batch_size]
        encoded, truth = [], []
        for b in chunk:
            text, good = candidate(b, grid, rng.choice(routes), rng)
            encoded.append(encode_prompt(processor, judge_messages(b, text, draw_board(b.cells, grid), template)))
            truth.append(good)
        batch = collate(encoded, pad_id, left=True)
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_tokens, pad_token_id=pad_id)
        texts = processor.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        right += sum((extract_answer(t) == "1") == good for t, good in zip(texts, truth))
    model.train(was_training)
    return right / len(boards)
