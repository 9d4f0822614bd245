"""The supervised base: worked solutions along several routes, verification (judge) examples and two-turn
continuations, a fixed short budget; then, optionally, more verification until the frozen base judges well."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from self_evolve_trl.data.synthetic import Board, draw_board, worked_solution
from self_evolve_trl.data.tiny_base import collate, encode_example

from .data import (
    Splits, candidate, judge_max_tokens, judge_messages, judge_solution, new_turn_target, prompt_messages,
    split_solution, two_turn_messages,
)
from .evaluation import evaluate, judge_accuracy

# The arguments that decide the supervised base (a base trained with the same ones can be reused).
BASE_ARGS = ("task", "grid", "routes", "preset", "data_seed", "sft_examples", "sft_batch_size", "sft_lr", "sft_steps",
             "sft_eval_every", "val_size", "verify_share", "two_turn_share", "judge_target", "verify_steps",
             "verify_eval_every", "verify_lr", "verify_mix", "rl_prompts", "eval_size", "max_completion_length",
             "temperature", "eval_batch_size")


def verification_example(board: Board, grid: int, processor, template, rng: random.Random, route: str) -> dict:
    """The judge's prompt with a right or plausibly wrong candidate; target: recount, compare, `\\boxed{1 or 0}`."""
    text, _ = candidate(board, grid, route, rng)
    messages = judge_messages(board, text, draw_board(board.cells, grid), template)
    return encode_example(processor, messages, judge_solution(board, grid, text))


def two_turn_example(board: Board, args, processor, rng: random.Random, route: str) -> dict:
    """A partial solution as a finished assistant turn, then a new turn that finishes it (CSRS `new_turn`)."""
    solution = worked_solution(board, args.grid, route)
    prefix, _ = split_solution(processor.tokenizer, solution, rng.uniform(0.2, 0.9))
    messages = two_turn_messages(board, args.grid, draw_board(board.cells, args.grid), prefix)
    return encode_example(processor, messages, new_turn_target(solution, prefix, board.answer))


def supervised_examples(splits: Splits, args, processor, template) -> list[dict]:
    """One example per supervised board: verification (`--verify-share`), two-turn (`--two-turn-share`), or a worked
    solution along a random route."""
    rng = random.Random(args.data_seed)
    examples = []
    for board in splits.sft:
        route = rng.choice(args.routes)
        if rng.random() < args.verify_share:
            examples.append(verification_example(board, args.grid, processor, template, rng, route))
        elif args.two_turn_share and rng.random() < args.two_turn_share:
            examples.append(two_turn_example(board, args, processor, rng, route))
        else:
            image = draw_board(board.cells, args.grid)
            target = worked_solution(board, args.grid, route)
            examples.append(encode_example(processor, prompt_messages(board, args.grid, image), target))
    return examples


def _step(model, optimizer, batch, schedule=None) -> float:
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    if schedule is not None:
        schedule.step()
    optimizer.zero_grad()
    return loss.item()


def train_base(args, splits: Splits, base_dir: str, template, log=print) -> dict[str, Any]:
    """Build the tiny model, train it for `--sft-steps` on the supervised mix, then (`--judge-target`) on more
    verification until its validation judge accuracy reaches the target; save it to `base_dir`."""
    from self_evolve_trl.data.tiny_model import build_tiny_model, build_tiny_processor, build_tiny_tokenizer

    torch.manual_seed(args.data_seed)
    tokenizer = build_tiny_tokenizer()
    processor = build_tiny_processor(tokenizer)
    model = build_tiny_model(tokenizer, preset=args.preset, seed=args.data_seed)
    start = time.time()
    examples = supervised_examples(splits, args, processor, template)
    encode_s = time.time() - start
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.sft_lr, weight_decay=0.0)
    warmup = max(1, args.sft_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min((i + 1) / warmup, 1.0 - 0.9 * i / max(1, args.sft_steps))
    )
    rng = random.Random(args.data_seed + 1)
    history = []
    model.train()
    for step in range(1, args.sft_steps + 1):
        loss = _step(model, optimizer, collate(rng.sample(examples, min(args.sft_batch_size, len(examples))),
                                               tokenizer.pad_token_id, left=False), schedule)
        if step % args.sft_eval_every == 0 or step == args.sft_steps:
            val = evaluate(model, processor, splits.val, args.grid, 1, args.max_completion_length, args.temperature,
                           args.eval_batch_size, greedy_only=True)["greedy_pass1"]
            history.append({"step": step, "loss": loss, "val_greedy_pass1": val})
            log(f"  sft step {step:4d}  loss {loss:.3f}  validation greedy pass@1 {val:.3f}")
    train_s = time.time() - start - encode_s
    verification = teach_verification(model, processor, args, splits, examples, template, log)
    model.eval()
    model.save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    return {"steps": args.sft_steps, "history": history, "encode_s": encode_s, "train_s": train_s,
            "verification": verification}


def teach_verification(model, processor, args, splits: Splits, examples: list[dict], template,
                       log=print) -> dict[str, Any]:
    """More supervised steps (constant `--verify-lr`), each batch `--verify-mix` fresh verification examples and the
    rest from the first phase's mix, until the validation judge accuracy reaches `--judge-target` (checked every
    `--verify-eval-every` steps, and before the first) or `--verify-steps` run out. The held-out boards are never
    used to decide."""
    history: list[dict] = []
    if args.judge_target <= 0 or args.verify_steps <= 0:
        return {"steps": 0, "history": history, "seconds": 0.0, "reached": None}
    start = time.time()
    rng = random.Random(args.data_seed + 2)
    verify = [verification_example(b, args.grid, processor, template, rng, rng.choice(args.routes))
              for b in splits.sft]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.verify_lr, weight_decay=0.0)
    per_batch = round(args.sft_batch_size * args.verify_mix)
    step, reached = 0, False
    while True:
        if step % args.verify_eval_every == 0 or step == args.verify_steps:
            accuracy = judge_accuracy(model, processor, splits.val, args.grid, template, args.routes, seed=1,
                                      max_tokens=judge_max_tokens(args.max_completion_length),
                                      batch_size=args.eval_batch_size)
            history.append({"step": step, "val_judge_accuracy": accuracy})
            log(f"  verification step {step:4d}  validation judge accuracy {accuracy:.3f}")
            reached = accuracy >= args.judge_target
            if reached or step == args.verify_steps:
                break
        model.train()
        batch = rng.sample(verify, min(per_batch, len(verify)))
        batch += rng.sample(examples, min(args.sft_batch_size - per_batch, len(examples)))
        _step(model, optimizer, collate(batch, processor.tokenizer.pad_token_id, left=False))
        step += 1
    return {"steps": step, "history": history, "seconds": time.time() - start, "reached": reached}


def prepare_base(args, splits: Splits, base_dir: str, template, log=print) -> dict[str, Any]:
    """Train the base into `base_dir`, or reuse the one there (`--reuse-base`) if it was trained with the same
    `BASE_ARGS`; the supervised log either way."""
    key = {k: getattr(args, k) for k in BASE_ARGS}
    marker = Path(base_dir) / "sft.json"
    if args.reuse_base and marker.exists() and json.loads(marker.read_text())["args"] == key:
        log(f"  reusing the base in {base_dir} (same supervised settings)")
        return json.loads(marker.read_text())["sft"]
    sft = train_base(args, splits, base_dir, template, log)
    marker.write_text(json.dumps({"args": key, "sft": sft}))
    return sft
