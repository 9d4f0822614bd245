"""A partly taught tiny Qwen2.5-VL: the tiny model after a short supervised warm-up on the synthetic counting task.

Label-free training sharpens what a model can already do; from random weights there is nothing to sharpen (the
`tiny-cpu-collapse.yaml` recipe shows what then happens). The embedded default recipe starts instead from
`tiny:qwen2.5-vl-taught`: the tiny model (`self_evolve_trl.data.tiny_model`) trained with a plain supervised loop on correct
worked solutions of "How many red squares are there in the image?" on 3x3 boards (`self_evolve_trl.data.synthetic`),
written along three routes (row by row, column by column, or the answer at once), for a fixed short budget that
leaves it partly competent: its majority vote is right far more often than its single answers, the gap that
label-free training closes (BENCHMARKS.md, "Self-evolution in miniature", the same recipe with a judge task mixed
in).

The base is built offline once (about a minute on 2 CPU cores) into the cache folder and reused. It never sees the
boards of `SEEN_NEVER_SEEDS` (the synthetic set's seeds that the recipes' training and held-out splits draw from),
so a held-out split drawn from them is new to it.

Example:

```python
>>> from self_evolve_trl.data.tiny_base import build_taught_tiny
>>> path = build_taught_tiny("/tmp/tiny-taught")  # doctest: +SKIP
```
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Callable

from . import build_prompt
from .synthetic import draw_board, make_boards, worked_solution
from .tiny_model import build_tiny_model, build_tiny_processor, build_tiny_tokenizer

INSTRUCTION = "Answer in \\boxed{}."
TAUGHT_SPEC = {
    "task": "count_color", "grid": 3, "routes": ["rows", "cols", "direct"], "examples": 3000, "batch_size": 32,
    "lr": 2e-3, "steps": 600, "seed": 0, "builder_version": 1,
}
# Synthetic seeds (and how many boards of each) left out of the supervised data: the recipes draw their training
# split from `synthetic_seed` (0) and the held-out split from `synthetic_seed + 1`.
SEEN_NEVER_SEEDS = (0, 1, 2, 3)
SEEN_NEVER_SIZE = 1024


def encode_prompt(processor, messages) -> dict:
    """The prompt's tensors, as the trainer builds them: the processor's chat template with the images in the parts."""
    return processor.apply_chat_template(
        conversation=[messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def encode_example(processor, messages, target: str) -> dict:
    """Prompt + target tokens, with the loss on the target (and its end-of-turn token) only."""
    import torch  # torch is imported when the base is built: `tiny.cache_dir` stays light (start-up time)

    enc = encode_prompt(processor, messages)
    prompt_ids = enc["input_ids"][0]
    target_ids = torch.tensor(processor.tokenizer(target + "<|im_end|>", add_special_tokens=False)["input_ids"])
    out = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    out["input_ids"] = torch.cat([prompt_ids, target_ids])[None]
    out["attention_mask"] = torch.ones_like(out["input_ids"])
    out["labels"] = torch.cat([torch.full_like(prompt_ids, -100), target_ids])[None]
    if "mm_token_type_ids" in out:
        out["mm_token_type_ids"] = torch.cat([out["mm_token_type_ids"][0], torch.zeros_like(target_ids)])[None]
    return out


def collate(encoded: list[dict], pad_id: int, left: bool) -> dict:
    """One batch of `encode_prompt` / `encode_example` outputs, padded on the left (generation) or the right."""
    import torch  # start-up time, as in `encode_example`

    length = max(e["input_ids"].shape[1] for e in encoded)
    fills = {"input_ids": pad_id, "attention_mask": 0, "labels": -100, "mm_token_type_ids": 0}
    batch = {}
    for key, fill in fills.items():
        if key not in encoded[0]:
            continue
        rows = []
        for e in encoded:
            x = e[key][0]
            pad = torch.full((length - x.shape[0],), fill, dtype=x.dtype)
            rows.append(torch.cat([pad, x]) if left else torch.cat([x, pad]))
        batch[key] = torch.stack(rows)
    batch["pixel_values"] = torch.cat([e["pixel_values"] for e in encoded])
    batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in encoded])
    return batch


def supervised_boards(spec: dict[str, Any]) -> list:
    """The supervised boards: drawn with seed 10,000 + `seed`, none of them among the `SEEN_NEVER_SEEDS` boards."""
    task, grid = spec["task"], spec["grid"]
    reserved = {b.key() for s in SEEN_NEVER_SEEDS for b in make_boards(SEEN_NEVER_SIZE, task, grid, seed=s)}
    boards, seed = [], 10_000 + spec["seed"]
    while len(boards) < spec["examples"]:
        boards += [b for b in make_boards(spec["examples"], task, grid, seed=seed) if b.key() not in reserved]
        seed += 1
    return boards[: spec["examples"]]


def supervised_examples(boards, spec: dict[str, Any], processor) -> list[dict]:
    """One tokenized worked solution per board, along a route drawn at random."""
    rng = random.Random(spec["seed"])
    examples = []
    for board in boards:
        messages = build_prompt(board.question, 1, INSTRUCTION)
        messages[0]["content"][0]["image"] = draw_board(board.cells, spec["grid"])
        target = worked_solution(board, spec["grid"], rng.choice(spec["routes"]))
        examples.append(encode_example(processor, messages, target))
    return examples


def _print(line: str) -> None:
    print(line, flush=True)


def train_supervised(model, examples: list[dict], spec: dict[str, Any], pad_id: int,
                     log: Callable[[str], None] = _print) -> float:
    """AdamW on random batches, the learning rate warming up for 5 % of the steps then decaying linearly to 10 %;
    returns the last batch's loss."""
    import torch  # start-up time, as in `encode_example`

    steps = spec["steps"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min((i + 1) / warmup, 1.0 - 0.9 * i / steps))
    rng = random.Random(spec["seed"] + 1)
    model.train()
    for step in range(1, steps + 1):
        loss = model(**collate(rng.sample(examples, min(spec["batch_size"], len(examples))), pad_id, left=False)).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps:
            log(f"  supervised step {step}/{steps}, loss {loss.item():.3f}")
    model.eval()
    return loss.item()


def build_taught_tiny(output_dir: str | Path, log: Callable[[str], None] = _print, **overrides) -> str:
    """Build the partly taught tiny Qwen2.5-VL into `output_dir` (model + processor), or reuse the one there if it
    was built with the same settings (`TAUGHT_SPEC`, with `overrides`). Returns the directory."""
    import torch  # start-up time, as in `encode_example`

    spec = {**TAUGHT_SPEC, **overrides}
    output_dir = Path(output_dir)
    marker = output_dir / "taught_model.json"
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return str(output_dir)
    log(f"Teaching the tiny model its task first (once; cached in {output_dir}): {spec['steps']} supervised steps "
        f"on {spec['examples']} worked solutions ({spec['task']}, {spec['grid']}x{spec['grid']} boards).")
    started = time.time()
    torch.manual_seed(spec["seed"])
    tokenizer = build_tiny_tokenizer()
    processor = build_tiny_processor(tokenizer)
    model = build_tiny_model(tokenizer, seed=spec["seed"])
    examples = supervised_examples(supervised_boards(spec), spec, processor)
    loss = train_supervised(model, examples, spec, tokenizer.pad_token_id, log)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    seconds = time.time() - started
    marker.write_text(json.dumps({"spec": spec, "final_loss": loss, "seconds": seconds}))
    log(f"  supervised base ready in {seconds:.0f}s: {output_dir}")
    return str(output_dir)
