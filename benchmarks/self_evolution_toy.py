"""Label-free training in miniature: the papers' comparison on CPU, end to end through `SelfEvolveGRPOTrainer`.

    python benchmarks/self_evolution_toy.py --figures-dir benchmarks/figures     # about 15-20 minutes on 2 cores

1. Base model. A tiny Qwen2.5-VL (`self_evolve_trl.data.tiny`) is taught a synthetic visual task (how many cells of a
   colour on a 3x3 grid whose cells are Qwen's 28-px merged patches, `self_evolve_trl.data.synthetic`) by a plain
   supervised loop on correct worked solutions written along three routes (row by row, column by column, or the
   answer at once), mixed with a verification task (recount, compare with a candidate's answer, `\\boxed{1}` or
   `\\boxed{0}`) so that the frozen copy can act as the judge. A fixed, short budget (`--sft-steps`, learning rate
   decaying) leaves the base partly competent, with maj@k well above greedy pass@1.
2. Label-free training. From that base, every method trains with the same data, steps, batch, learning rate, KL
   coefficient and sampler for each seed; only its own reward and advantage differ: majority_vote + grpo (MM-UPT),
   soft_frequency + centered, soft_frequency + lse, judge_modulated + lse (Self-Judge; the frozen base judges with
   a short template) and retrace_frequency + grpo (CSRS, released settings, and re-inferring in the same turn);
   methods whose reward is not installed are skipped and named. Rewards never see the label column.
3. Report. On a held-out split that shares no (image, question) with any training split: greedy pass@1, sampled
   pass@1, maj@k and pass@k (k samples at the training temperature); from the training logs: pseudo-label accuracy,
   the high-confidence share (groups with p_max >= 0.8), answer entropy and completion length (means of the first
   and the last quarter of the steps); how fast the high-confidence share rises, per seed: the first step from which
   its 5-step trailing mean stays >= 0.5 for 5 consecutive steps ("never" if it does not; `--reach-*`), and,
   threshold-free, its mean over the first half of the steps. Writes `results.json`, `table.md`, each run's
   `log_history.json` and two figures (curves: mean over seeds per method with a lowest-to-highest-seed band,
   EMA `--smooth`; held-out bars), named `--figures-prefix`, to `--output-dir` (the figures also to
   `--figures-dir`). The table is printed last.

Task, grid, routes, sizes, seeds and step budget are arguments (`--help`), so the script runs other variants too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from self_evolve_trl.answers import extract_answer, is_equivalent  # noqa: E402
from self_evolve_trl.plot import series, smooth  # noqa: E402
from self_evolve_trl.data.synthetic import (  # noqa: E402
    BOARD_TASKS, SOLUTION_ROUTES, Board, draw_board, make_boards, solution_counts, solution_text,
    worked_solution,
)
from self_evolve_trl.data.tiny_base import collate, encode_example, encode_prompt  # noqa: E402,F401  (the taught base's)
from self_evolve_trl.voting import vote  # noqa: E402


INSTRUCTION = "Answer in \\boxed{}."
BOXED_PATTERN = ".*\\\\boxed\\{.*\\}.*"

# The judge's prompt for the tiny model (a judge prompt template: `=== user ===` section, `{problem}`,
# `{completion}`); the base learns to answer it in supervised training.
JUDGE_TEMPLATE = """=== user ===
{problem}
Candidate: {completion}
Is the candidate right? \\boxed{1} yes, \\boxed{0} no.
"""
JUDGE_MAX_TOKENS = 48


# ----------------------------------------------------------------------------------------------------------------
# Methods: each one's own reward and advantage; everything else is shared.

@dataclass(frozen=True)
class Method:
    name: str
    reward: str  # registry name; a method whose reward is not installed is skipped
    config: dict[str, Any]


def methods(hard_threshold: float | None, judge_template: str, csrs_anchor: float = 0.7) -> dict[str, Method]:
    soft = {"hard_threshold": hard_threshold}
    csrs_config = dict(
        reward_funcs=["retrace_frequency"],
        reward_kwargs={"retrace_frequency": {"beta": 1.2, "weight": 0.9, "format_pattern": BOXED_PATTERN}},
        advantage="grpo",  # released CSRS: stock GRPO advantages
        retrace_anchors=[csrs_anchor],
        retrace_anchor_base="actual_length",
        retrace_mode="new_turn",
        retrace_samples_per_anchor=3,
        retrace_visual_perturbation=True,
        retrace_noise_max_level=40,
    )
    return {
        m.name: m
        for m in [
            Method("majority_vote+grpo", "majority_vote", dict(reward_funcs=["majority_vote"], advantage="grpo")),
            Method(
                "soft_frequency+centered",
                "soft_frequency",
                dict(reward_funcs=["soft_frequency"], reward_kwargs={"soft_frequency": soft}, advantage="centered"),
            ),
            Method(
                "soft_frequency+lse",
                "soft_frequency",
                dict(reward_funcs=["soft_frequency"], reward_kwargs={"soft_frequency": soft}, advantage="lse"),
            ),
            Method(
                "judge_modulated+lse",
                "judge_modulated",
                dict(
                    reward_funcs=["judge_modulated"],
                    reward_kwargs={
                        "judge_modulated": {
                            "base_reward": "soft_frequency",
                            "base_kwargs": soft,
                            "format_pattern": None,
                        }
                    },
                    advantage="lse",
                    judge_backend="reference",
                    judge_prompt_template=judge_template,
                    judge_temperature=1.0,
                    judge_top_p=0.9,
                    judge_max_tokens=JUDGE_MAX_TOKENS,
                    judge_repeats=1,
                    judge_on_failure="zero",
                    # The trained base parses ~99 % of the time and the run reports judge/parse_failure_rate; a
                    # miniature run's barely trained base (tests) writes no score, which must not stop it.
                    judge_max_parse_failure_rate=None,
                ),
            ),
            Method("csrs", "retrace_frequency", csrs_config),
        ]
    } | {
        # CSRS re-inferring in the same assistant turn (`retrace_mode` continuation; the base never saw a second turn)
        "csrs_continuation": Method(
            "csrs_continuation", "retrace_frequency", dict(csrs_config, retrace_mode="continuation")
        ),
        # CSRS without its visual perturbation: re-inference on the clean images (isolates what VSP does)
        "csrs_no_vsp": Method(
            "csrs_no_vsp", "retrace_frequency", dict(csrs_config, retrace_visual_perturbation=False)
        ),
        # crossed pairs, to tell the reward's part from the advantage's
        "majority_vote+centered": Method(
            "majority_vote+centered", "majority_vote", dict(reward_funcs=["majority_vote"], advantage="centered")
        ),
        "soft_frequency+grpo": Method(
            "soft_frequency+grpo",
            "soft_frequency",
            dict(reward_funcs=["soft_frequency"], reward_kwargs={"soft_frequency": soft}, advantage="grpo"),
        ),
    }


DEFAULT_METHODS = (
    "majority_vote+grpo", "soft_frequency+centered", "soft_frequency+lse", "judge_modulated+lse", "csrs",
    "csrs_continuation", "majority_vote+centered", "soft_frequency+grpo",
)


def installed(method: Method) -> bool:
    from self_evolve_trl.rewards import REWARD_REGISTRY

    return method.reward in REWARD_REGISTRY


# ----------------------------------------------------------------------------------------------------------------
# Arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    g = p.add_argument_group("task")
    g.add_argument("--task", default="count_color", choices=BOARD_TASKS,
                   help="count_two_colors needs --max-completion-length 64 (its worked solutions are ~48 tokens)")
    g.add_argument("--grid", type=int, default=3, help="cells per side")
    g.add_argument("--routes", default="rows,cols,direct",
                   help=f"solution routes of the supervised data ({', '.join(SOLUTION_ROUTES)})")
    g.add_argument("--preset", default="tiny", help="tiny model preset (self_evolve_trl.data.tiny.PRESETS)")
    g.add_argument("--data-seed", type=int, default=0)
    g = p.add_argument_group("supervised base")
    g.add_argument("--sft-examples", type=int, default=3000)
    g.add_argument("--sft-batch-size", type=int, default=32)
    g.add_argument("--sft-lr", type=float, default=2e-3)
    g.add_argument("--sft-steps", type=int, default=600,
                   help="supervised steps (learning rate: warm-up, then linear decay to 10%%)")
    g.add_argument("--sft-eval-every", type=int, default=100, help="log validation greedy pass@1 every N steps")
    g.add_argument("--val-size", type=int, default=96, help="validation boards (supervised progress only)")
    g.add_argument("--verify-share", type=float, default=0.25,
                   help="share of supervised examples that are verification (judge) examples")
    g = p.add_argument_group("label-free training (same for every method)")
    g.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    g.add_argument("--seeds", default="0,1,2")
    g.add_argument("--rl-prompts", type=int, default=512, help="unlabelled training prompts")
    g.add_argument("--rl-steps", type=int, default=100)
    g.add_argument("--prompts-per-step", type=int, default=4)
    g.add_argument("--num-generations", type=int, default=8)
    g.add_argument("--rl-lr", type=float, default=1e-4)
    g.add_argument("--beta", type=float, default=0.05, help="KL coefficient to the base (TRL's beta)")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--max-completion-length", type=int, default=32)
    g.add_argument("--hard-threshold", type=float, default=None,
                   help="soft_frequency's hard_threshold (also the judge's prior)")
    g.add_argument("--csrs-anchor", type=float, default=0.7,
                   help="CSRS anchor: the share of each completion kept before re-inference")
    g = p.add_argument_group("held-out evaluation and output")
    g.add_argument("--eval-size", type=int, default=200)
    g.add_argument("--eval-samples", type=int, default=8, help="k of maj@k / sampled pass@1")
    g.add_argument("--eval-batch-size", type=int, default=50)
    g.add_argument("--workers", type=int, default=2, help="label-free runs in parallel (processes, one thread each)")
    g.add_argument("--output-dir", default="outputs/self_evolution_toy")
    g.add_argument("--reuse-base", action="store_true", help="reuse OUTPUT_DIR/base if trained with the same settings")
    g.add_argument("--figures-dir", default=None, help="also write the figures here (e.g. benchmarks/figures)")
    g.add_argument("--figures-prefix", default="self_evolution_toy",
                   help="figure file names: PREFIX_curves.png and PREFIX_heldout.png (e.g. self_evolution_toy_seed1)")
    g.add_argument("--smooth", type=float, default=SMOOTH,
                   help="EMA weight of the figures' curves, in [0, 1) (0: raw); the table never smooths this way")
    g = p.add_argument_group(
        "how fast the high-confidence share rises",
        "The table reports, per seed, the first step from which the trailing REACH_WINDOW-step mean of the share of "
        "groups with p_max >= 0.8 stays >= REACH_LEVEL for REACH_RUN consecutive steps ('never' if it does not), "
        "and, threshold-free, the mean share over the first half of the steps.",
    )
    g.add_argument("--reach-level", type=float, default=CONFIDENT, help="level of the high-confidence share")
    g.add_argument("--reach-window", type=int, default=REACH_WINDOW,
                   help="steps in the trailing mean (defined from this step on, so one early spike cannot count)")
    g.add_argument("--reach-run", type=int, default=REACH_RUN,
                   help="consecutive steps the trailing mean must stay at or above the level")
    args = p.parse_args(argv)
    if not 0 <= args.smooth < 1:
        p.error(f"--smooth must be in [0, 1), got {args.smooth}")
    for name in ("reach_window", "reach_run"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive number of steps, got {getattr(args, name)}")
    args.routes = [r for r in args.routes.split(",") if r]
    for route in args.routes:
        if route not in SOLUTION_ROUTES:
            p.error(f"unknown route {route!r}; valid routes: {', '.join(SOLUTION_ROUTES)}")
    args.methods = [m for m in args.methods.split(",") if m]
    known = methods(None, "")
    for name in args.methods:
        if name not in known:
            p.error(f"unknown method {name!r}; valid methods: {', '.join(known)}")
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    return args


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class Splits:
    sft: list[Board]
    val: list[Board]
    rl: list[Board]
    test: list[Board]


def draw_splits(args) -> Splits:
    """Supervised, validation, label-free and held-out boards; no held-out (image, question) occurs in the others."""
    base = 1000 * args.data_seed
    sft = make_boards(args.sft_examples, args.task, args.grid, seed=base + 1)
    val = make_boards(args.val_size, args.task, args.grid, seed=base + 2)
    rl = make_boards(args.rl_prompts, args.task, args.grid, seed=base + 3)
    seen = {b.key() for b in sft + val + rl}
    test: list[Board] = []
    rng_seed = base + 4
    while len(test) < args.eval_size:
        for board in make_boards(4 * args.eval_size, args.task, args.grid, seed=rng_seed):
            if board.key() not in seen and len(test) < args.eval_size:
                test.append(board)
                seen.add(board.key())
        rng_seed += 10_000
    return Splits(sft, val, rl, test)


def prompt_messages(board: Board, grid: int, image=None) -> list[dict]:
    from self_evolve_trl.data import build_prompt

    messages = build_prompt(board.question, 1, INSTRUCTION)
    if image is not None:
        for part in messages[0]["content"]:
            if part["type"] == "image":
                part["image"] = image
    return messages


def prompt_text(board: Board) -> str:
    """The text of the actor's user turn (what the judge sees as the problem)."""
    return f"{board.question} {INSTRUCTION}"


def wrong_solution(board: Board, grid: int, route: str, rng: random.Random) -> str:
    """A plausible wrong solution: one line miscounted (then added up consistently), or a wrong total at once."""
    if route == "direct":
        wrong = board.answer + rng.choice([d for d in (-2, -1, 1, 2) if board.answer + d >= 0])
        return f"\\boxed{{{wrong}}}"
    counts = solution_counts(board, grid, route)
    # one line (of one colour) miscounted; one colour draws nothing, so count_color draws as it always did
    lines = counts[rng.randrange(len(counts)) if len(counts) > 1 else 0][1]
    i = rng.randrange(len(lines))
    lines[i] += rng.choice([d for d in (-1, 1) if 0 <= lines[i] + d <= grid])
    return solution_text(route, counts)


def judge_solution(board: Board, grid: int, candidate: str) -> str:
    """The judge's worked verdict: recount row by row, compare with the candidate's answer, `\\boxed{1}` or `{0}`."""
    own = worked_solution(board, grid, "rows").split("</think>")[0].removeprefix("<think>")
    theirs = extract_answer(candidate)
    return f"<think>{own}; candidate {theirs}</think>\\boxed{{{int(theirs == str(board.answer))}}}"


def judge_messages(board: Board, candidate: str, image, template) -> list[dict]:
    """The judge's chat for one candidate, as the `reference` judge backend builds it (system part if any, then the
    image and the user text; `self_evolve_trl.judge.backends`)."""
    request = template.request(prompt_text(board), candidate, [image])
    messages = []
    if request.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    content = [{"type": "image", "image": im} for im in request.images] + [{"type": "text", "text": request.text}]
    messages.append({"role": "user", "content": content})
    return messages


def load_judge_template(path: str):
    from self_evolve_trl.judge.prompt import JudgeTemplate

    return JudgeTemplate.load(path)


# ----------------------------------------------------------------------------------------------------------------
# Held-out evaluation


def _correct(answer: str | None, board: Board) -> bool:
    return answer is not None and is_equivalent(answer, str(board.answer), "normalized")


def route_of(text: str) -> str:
    for route in ("rows", "cols"):
        if text.startswith(f"<think>{route}"):
            return route
    return "direct" if text.startswith("\\boxed") else "other"


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
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for start in range(0, len(boards), batch_size):
        chunk = boards[start : start + batch_size]
        encoded = [encode_prompt(processor, prompt_messages(b, grid, draw_board(b.cells, grid))) for b in chunk]
        batch = collate(encoded, pad_id, left=True)
        width = batch["input_ids"].shape[1]
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_id)
        texts = greedy_texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        lengths = (out[:, width:] != pad_id).sum(1).tolist()
        for board, text, n in zip(chunk, texts, lengths):
            totals["greedy"] += _correct(extract_answer(text), board)
            totals["greedy_length"] += n
        if greedy_only:
            continue
        out = model.generate(
            **batch, do_sample=True, temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=k,
            max_new_tokens=max_new_tokens, pad_token_id=pad_id,
        )
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        lengths = (out[:, width:] != pad_id).sum(1).tolist()
        if start == 0:
            examples = [
                {"answer": b.answer, "question": b.question, "greedy": greedy_texts[i],
                 "samples": texts[i * k : i * k + 4]}
                for i, b in enumerate(chunk[:4])
            ]
        for i, board in enumerate(chunk):
            group = texts[i * k : (i + 1) * k]
            answers = [extract_answer(t) for t in group]
            right = [_correct(a, board) for a in answers]
            group_vote = vote(answers, match="normalized")
            totals["sampled"] += sum(right) / k
            totals["maj"] += _correct(group_vote.majority_answer, board)
            totals["pass"] += any(right)
            totals["sampled_length"] += sum(lengths[i * k : (i + 1) * k]) / k
            totals["abstention"] += sum(a is None for a in answers) / k
            totals["p_max"] += group_vote.p_max
            routes.update(route_of(t) for t in group)
    torch.random.set_rng_state(generator_state)
    model.train(was_training)
    n = len(boards)
    result = {"greedy_pass1": totals["greedy"] / n, "greedy_length": totals["greedy_length"] / n}
    if not greedy_only:
        result.update(
            sampled_pass1=totals["sampled"] / n,
            maj_at_k=totals["maj"] / n,
            pass_at_k=totals["pass"] / n,
            sampled_length=totals["sampled_length"] / n,
            abstention=totals["abstention"] / n,
            p_max=totals["p_max"] / n,
            **{f"route_{r}": routes[r] / (n * k) for r in (*SOLUTION_ROUTES, "other")},
            examples=examples,
        )
    return result


@torch.no_grad()
def judge_accuracy(model, processor, boards: list[Board], grid: int, template, routes: list[str], seed: int = 0,
                   batch_size: int = 50) -> float:
    """Greedy accuracy of the model as a judge of half-right, half-wrong candidate solutions of `boards`."""
    rng = random.Random(seed)
    pad_id = processor.tokenizer.pad_token_id
    model.eval()
    right = 0
    for start in range(0, len(boards), batch_size):
        chunk = boards[start : start + batch_size]
        encoded, truth = [], []
        for b in chunk:
            route = rng.choice(routes)
            good = rng.random() < 0.5
            candidate = worked_solution(b, grid, route) if good else wrong_solution(b, grid, route, rng)
            encoded.append(encode_prompt(processor, judge_messages(b, candidate, draw_board(b.cells, grid), template)))
            truth.append(good)
        batch = collate(encoded, pad_id, left=True)
        out = model.generate(**batch, do_sample=False, max_new_tokens=JUDGE_MAX_TOKENS, pad_token_id=pad_id)
        texts = processor.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        right += sum((extract_answer(t) == "1") == good for t, good in zip(texts, truth))
    return right / len(boards)


# ----------------------------------------------------------------------------------------------------------------
# 1. The supervised base


def supervised_examples(splits: Splits, args, processor, template) -> list[dict]:
    rng = random.Random(args.data_seed)
    examples = []
    for board in splits.sft:
        image = draw_board(board.cells, args.grid)
        route = rng.choice(args.routes)
        if rng.random() < args.verify_share:
            good = rng.random() < 0.5
            if good:
                candidate = worked_solution(board, args.grid, route)
            else:
                candidate = wrong_solution(board, args.grid, route, rng)
            messages = judge_messages(board, candidate, image, template)
            target = judge_solution(board, args.grid, candidate)
        else:
            messages = prompt_messages(board, args.grid, image)
            target = worked_solution(board, args.grid, route)
        examples.append(encode_example(processor, messages, target))
    return examples


# The arguments that decide the supervised base (a base trained with the same ones can be reused).
BASE_ARGS = ("task", "grid", "routes", "preset", "data_seed", "sft_examples", "sft_batch_size", "sft_lr", "sft_steps",
             "sft_eval_every", "val_size", "verify_share", "rl_prompts", "eval_size",
             "max_completion_length", "temperature", "eval_batch_size")


def train_base(args, splits: Splits, base_dir: str, template, log=print) -> dict[str, Any]:
    """Build the tiny model and train it on worked solutions until validation greedy pass@1 reaches the target."""
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
    pad_id = tokenizer.pad_token_id
    history = []
    model.train()
    for step in range(1, args.sft_steps + 1):
        batch = collate(rng.sample(examples, min(args.sft_batch_size, len(examples))), pad_id, left=False)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % args.sft_eval_every == 0 or step == args.sft_steps:
            val = evaluate(model, processor, splits.val, args.grid, 1, args.max_completion_length, args.temperature,
                           args.eval_batch_size, greedy_only=True)["greedy_pass1"]
            history.append({"step": step, "loss": loss.item(), "val_greedy_pass1": val})
            log(f"  sft step {step:4d}  loss {loss.item():.3f}  validation greedy pass@1 {val:.3f}")
    model.eval()
    model.save_pretrained(base_dir)
    processor.save_pretrained(base_dir)
    return {"steps": step, "history": history, "encode_s": encode_s, "train_s": time.time() - start - encode_s}


# ----------------------------------------------------------------------------------------------------------------
# 2. Label-free runs


def rl_dataset(boards: list[Board], grid: int):
    import datasets

    from self_evolve_trl.data import prepare_dataset

    rows = [
        {"question": b.question, "image": draw_board(b.cells, grid), "answer": str(b.answer), "uid": f"rl-{i}"}
        for i, b in enumerate(boards)
    ]
    return prepare_dataset(datasets.Dataset.from_list(rows), "question", "image", "answer", INSTRUCTION)


def run_config(args, method: Method, seed: int, output_dir: str):
    from self_evolve_trl.training.config import SelfEvolveConfig

    g = args.num_generations
    return SelfEvolveConfig(
        output_dir=output_dir,
        num_generations=g,
        per_device_train_batch_size=args.prompts_per_step * g,
        gradient_accumulation_steps=1,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        top_p=1.0,
        learning_rate=args.rl_lr,
        lr_scheduler_type="constant",
        beta=args.beta,
        max_steps=args.rl_steps,
        logging_steps=1,
        save_strategy="no",
        seed=seed,
        answer_extractor="boxed",
        answer_match="normalized",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=True,
        print_summary=False,  # each run's summary.txt is in its run folder; the benchmark prints its own table
        **method.config,
    )


def run_one(job: dict) -> dict:
    """One label-free run (method, seed) from the base, then the held-out evaluation. Runs in a worker process."""
    import transformers

    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    _quiet()
    args, method, seed, splits = job["args"], job["method"], job["seed"], job["splits"]
    run_dir = os.path.join(args.output_dir, "runs", f"{method.name}-seed{seed}")
    os.makedirs(run_dir, exist_ok=True)
    processor = transformers.AutoProcessor.from_pretrained(job["base_dir"], padding_side="left")
    start = time.time()
    trainer = SelfEvolveGRPOTrainer(
        model=job["base_dir"],
        args=run_config(args, method, seed, run_dir),
        train_dataset=rl_dataset(splits.rl, args.grid),
        processing_class=processor,
    )
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    train_s = time.time() - start
    history = trainer.state.log_history
    with open(os.path.join(run_dir, "log_history.json"), "w") as f:
        json.dump(history, f)
    heldout = evaluate(trainer.model, processor, splits.test, args.grid, args.eval_samples, args.max_completion_length,
                       args.temperature, args.eval_batch_size, seed=10_000 + seed)
    return {"method": method.name, "seed": seed, "heldout": heldout, "train_s": train_s,
            "eval_s": time.time() - start - train_s, "history": history}


def run_all(jobs: list[dict], workers: int, log=print) -> list[dict]:
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(run_one(job))
            log(_run_line(results[-1]))
        return results
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            results.append(future.result())
            log(_run_line(results[-1]))
    order = {(j["method"].name, j["seed"]): i for i, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[(r["method"], r["seed"])])


def _worker_init():
    os.environ["OMP_NUM_THREADS"] = "1"
    _quiet()


def _quiet():
    import datasets
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _run_line(r: dict) -> str:
    h = r["heldout"]
    return (f"  {r['method']:<24} seed {r['seed']}: greedy {h['greedy_pass1']:.3f}  sampled {h['sampled_pass1']:.3f}  "
            f"maj@k {h['maj_at_k']:.3f}  ({r['train_s']:.0f}s train, {r['eval_s']:.0f}s eval)")


# ----------------------------------------------------------------------------------------------------------------
# 3. Report

CURVES = {
    "high_confidence": "self_consistency/high_confidence_share",
    "answer_entropy": "self_consistency/answer_entropy",
    "completion_length": "completions/mean_length",
    "pseudo_label_accuracy": "labels/pseudo_label_accuracy",
    "rollout_accuracy": "labels/rollout_accuracy",
    "token_entropy": "entropy",
    "advantage_std": "advantages/std",
}
CONFIDENT = 0.5  # the high-confidence share whose sustained reach the table reports
REACH_WINDOW = 5  # ... as a trailing mean over this many steps
REACH_RUN = 5  # ... that stays at or above CONFIDENT for this many consecutive steps
SMOOTH = 0.9  # EMA weight of the figures' curves (TensorBoard's smoothing)


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the training steps' logged `key` (not the final summary entry)."""
    return series([e for e in history if "train_runtime" not in e], key)


def quarter_means(values: list[float]) -> tuple[float, float]:
    """Means of the first and the last quarter of `values` (NaN for none)."""
    if not values:
        return math.nan, math.nan
    width = max(1, len(values) // 4)
    return sum(values[:width]) / width, sum(values[-width:]) / width


def early_mean(values: list[float], share: float = 0.5) -> float:
    """Mean of the first `share` of `values` (rounded down, at least one value; NaN for none): the area under the
    curve over the early steps, per step, with no threshold.

    Example:

    ```python
    >>> early_mean([0.0, 0.5, 1.0, 1.0])
    0.25

    ```
    """
    if not values:
        return math.nan
    width = max(1, int(len(values) * share))
    return sum(values[:width]) / width


def sustained_step(steps: list[int], values: list[float], level: float = CONFIDENT, window: int = REACH_WINDOW,
                   run: int = REACH_RUN) -> int | None:
    """The first step from which the trailing `window`-step mean of `values` stays at or above `level` for `run`
    consecutive steps; None if it never does. The mean is defined from the `window`-th step on, so a single early
    value (with few groups a step the share jumps in steps of 1/groups) cannot count on its own.

    Example:

    ```python
    >>> sustained_step([1, 2, 3, 4, 5, 6, 7], [1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 0.0], level=0.5, window=2, run=2)
    5
    >>> print(sustained_step([1, 2, 3], [1.0, 0.0, 0.0], level=0.5, window=3, run=1))
    None

    ```
    """
    streak = 0
    for i in range(window - 1, len(values)):
        mean = sum(values[i - window + 1 : i + 1]) / window
        streak = streak + 1 if mean >= level else 0
        if streak == run:
            return steps[i - run + 1]
    return None


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd; NaN if there are no values or any is NaN (a missing value is never dropped silently)."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(base: dict[str, float], results: list[dict], level: float = CONFIDENT, window: int = REACH_WINDOW,
              run: int = REACH_RUN) -> list[dict]:
    """One row per method: held-out means ± sd over seeds, the training curves' first/last quarter means, the mean
    high-confidence share of the first half of the steps, and per seed the step it stays >= `level` from (None:
    never; `sustained_step`)."""
    rows = [{"method": "base (supervised)", "seeds": 1, **{k: (v, 0.0) for k, v in base.items() if k != "examples"}}]
    for name in dict.fromkeys(r["method"] for r in results):
        runs = [r for r in results if r["method"] == name]
        row: dict[str, Any] = {"method": name, "seeds": len(runs), "seed_ids": [r["seed"] for r in runs]}
        for key in ("greedy_pass1", "sampled_pass1", "maj_at_k", "pass_at_k", "sampled_length", "greedy_length",
                    "route_direct", "route_rows", "route_cols"):
            row[key] = _mean_sd([r["heldout"][key] for r in runs])
        for short, key in CURVES.items():
            firsts, lasts = zip(*(quarter_means(_series(r["history"], key)[1]) for r in runs))
            row[f"{short}_first"] = _mean_sd(list(firsts))
            row[f"{short}_last"] = _mean_sd(list(lasts))
        confidence = [_series(r["history"], CURVES["high_confidence"]) for r in runs]
        row["high_confidence_early"] = _mean_sd([early_mean(values) for _, values in confidence])
        row["confident_steps"] = [sustained_step(steps, values, level, window, run) for steps, values in confidence]
        row["train_s"] = _mean_sd([r["train_s"] for r in runs])
        rows.append(row)
    return rows


def reached_summary(per_seed: list[int | None]) -> str:
    """How many seeds reach the level and the mean step of those that do.

    Example:

    ```python
    >>> reached_summary([10, 40, None])
    '2 of 3 seeds, mean step 25 ± 21; 1 never'
    >>> reached_summary([None, None])
    '0 of 2 seeds; 2 never'

    ```
    """
    reached = [s for s in per_seed if s is not None]
    text = f"{len(reached)} of {len(per_seed)} seeds"
    if reached:
        mean, sd = _mean_sd([float(s) for s in reached])
        text += f", mean step {mean:.0f}" + (f" ± {sd:.0f}" if sd else "")
    never = len(per_seed) - len(reached)
    return text + (f"; {never} never" if never else "")


def _pct(pair) -> str:
    mean, sd = pair
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * sd:.1f}" if sd else f"{100 * mean:.1f}"


def _arrow(row, short, digits=2, percent=False) -> str:
    first, last = row.get(f"{short}_first"), row.get(f"{short}_last")
    if first is None or math.isnan(first[0]):
        return "–"
    if percent:
        return f"{100 * first[0]:.0f} → {100 * last[0]:.0f}"
    return f"{first[0]:.{digits}f} → {last[0]:.{digits}f}"


def _per_seed(steps: list[int | None] | None) -> str:
    if not steps:
        return "–"
    return " / ".join("never" if s is None else str(s) for s in steps)


def format_table(rows: list[dict], k: int, level: float = CONFIDENT, window: int = REACH_WINDOW,
                 run: int = REACH_RUN) -> str:
    header = (f"| method | seeds | greedy pass@1 | sampled pass@1 | maj@{k} | pass@{k} | pseudo-label acc. (train) "
              f"| high-conf. share (train) | high-conf. share, mean of the first half "
              f"| step its {window}-step mean stays ≥ {level} for {run} steps (per seed) "
              f"| answer entropy (train) | completion length (train) |")
    lines = [header, "|" + "---|" * 12]
    for row in rows:
        early_share = row.get("high_confidence_early")
        lines.append(
            f"| {row['method']} | {row['seeds']} | {_pct(row['greedy_pass1'])} | {_pct(row['sampled_pass1'])} "
            f"| {_pct(row['maj_at_k'])} | {_pct(row['pass_at_k'])} "
            f"| {_arrow(row, 'pseudo_label_accuracy', percent=True)} "
            f"| {_arrow(row, 'high_confidence', percent=True)} "
            f"| {_pct(early_share) if early_share else '–'} | {_per_seed(row.get('confident_steps'))} "
            f"| {_arrow(row, 'answer_entropy')} "
            f"| {_arrow(row, 'completion_length', digits=1)} |"
        )
    return "\n".join(lines)


def goal_check(rows: list[dict]) -> dict[str, Any]:
    """The goal for the best method (by mean greedy pass@1): +10 points over the base, and half of the base's
    gap between greedy pass@1 and maj@k closed; and which method's high-confidence share rises fastest, by the
    threshold-free early mean and by the step it stays at the level from (median over seeds, never = last)."""
    base = rows[0]
    trained = [r for r in rows[1:] if not math.isnan(r["greedy_pass1"][0])]
    if not trained:
        return {}
    best = max(trained, key=lambda r: r["greedy_pass1"][0])
    gain = best["greedy_pass1"][0] - base["greedy_pass1"][0]
    gap = base["maj_at_k"][0] - base["greedy_pass1"][0]
    closed = gain / gap if gap > 0 else math.nan
    rises = {r["method"]: r["high_confidence_last"][0] - r["high_confidence_first"][0] for r in trained
             if not math.isnan(r["high_confidence_first"][0])}
    early = {r["method"]: r["high_confidence_early"][0] for r in trained
             if not math.isnan(r["high_confidence_early"][0])}
    median_step = {r["method"]: statistics.median(math.inf if s is None else s for s in r["confident_steps"])
                   for r in trained if r["confident_steps"]}
    median_step = {m: v for m, v in median_step.items() if math.isfinite(v)}  # most seeds never: not ranked
    return {
        "best_method": best["method"],
        "greedy_gain_points": 100 * gain,
        "base_gap_points": 100 * gap,
        "gap_closed": closed,
        "goal_met": gain >= 0.10 and (gap <= 0 or closed >= 0.5),
        "high_confidence_rise": rises,
        "fastest_high_confidence_rise": max(rises, key=rises.get) if rises else None,
        "high_confidence_early_mean": early,
        "highest_early_high_confidence": max(early, key=early.get) if early else None,
        "high_confidence_reached_at": {r["method"]: r["confident_steps"] for r in trained},
        "earliest_high_confidence": min(median_step, key=median_step.get) if median_step else None,
    }


def plot_curves(results: list[dict], out_dir: str, smooth_weight: float = SMOOTH,
                prefix: str = "self_evolution_toy") -> list[str]:
    """Training curves per method: the mean over seeds of each seed's smoothed curve, with a light band from the
    lowest to the highest seed; high-confidence share, answer and token entropy, completion length, pseudo-label
    and rollout accuracy. One PNG, the legend under the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("high_confidence", "groups with p_max ≥ 0.8 (collapse indicator)"),
        ("answer_entropy", "answer entropy per group (nats)"),
        ("token_entropy", "token entropy (TRL's)"),
        ("completion_length", "completion length (tokens)"),
        ("pseudo_label_accuracy", "pseudo-label accuracy (hidden labels)"),
        ("rollout_accuracy", "rollout pass@1 (hidden labels)"),
    ]
    os.makedirs(out_dir, exist_ok=True)
    fig, axes = plt.subplots(3, 2, figsize=(11, 11))
    names = list(dict.fromkeys(r["method"] for r in results))
    colors = plt.get_cmap("tab10").colors
    handles = {}
    for ax, (short, title) in zip(axes.flat, panels):
        for j, name in enumerate(names):
            curves = [_series(r["history"], CURVES[short]) for r in results if r["method"] == name]
            curves = [c for c in curves if c[0]]
            if not curves:
                continue
            length = min(len(c[0]) for c in curves)
            steps = curves[0][0][:length]
            smoothed = [smooth(c[1][:length], smooth_weight) for c in curves]
            at_step = list(zip(*smoothed))
            color, style = colors[j % len(colors)], ["-", "--", ":", "-."][j // len(colors) % 4]
            (line,) = ax.plot(steps, [statistics.fmean(v) for v in at_step], color=color, linestyle=style, lw=1.6)
            if len(curves) > 1:
                ax.fill_between(steps, [min(v) for v in at_step], [max(v) for v in at_step], color=color, alpha=0.12,
                                lw=0)
            handles.setdefault(name, line)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(4, max(1, len(handles))), fontsize=10,
               frameon=False)
    seeds = len({r["seed"] for r in results})
    fig.suptitle(f"Label-free training from the supervised base: mean over {seeds} seed(s) of each seed's curve "
                 f"(EMA {smooth_weight}), band: lowest to highest seed", fontsize=11)
    rows_of_legend = math.ceil(len(handles) / 4)
    fig.tight_layout(rect=(0, 0.025 * rows_of_legend + 0.01, 1, 0.97))
    path = os.path.join(out_dir, f"{prefix}_curves.png")
    _save(fig, path)
    return [path]


def plot_heldout(rows: list[dict], out_dir: str, k: int, prefix: str = "self_evolution_toy") -> list[str]:
    """Held-out greedy pass@1, sampled pass@1 and maj@k per method (mean ± sd over seeds), base first. One PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("greedy_pass1", "greedy pass@1"), ("sampled_pass1", "sampled pass@1"), ("maj_at_k", f"maj@{k}")]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / len(metrics)
    for j, (key, label) in enumerate(metrics):
        means = [100 * r[key][0] for r in rows]
        sds = [100 * r[key][1] for r in rows]
        ax.bar([i + (j - 1) * width for i in range(len(rows))], means, width, yerr=sds, capsize=3, label=label)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["method"].replace("+", "\n+") for r in rows], fontsize=8)
    ax.set_ylabel("% of held-out questions")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.set_title("Held-out accuracy after label-free training (mean ± sd over seeds)", fontsize=10)
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{prefix}_heldout.png")
    _save(fig, path)
    return [path]


def _save(fig, path: str) -> None:
    """Save a figure as a small PNG (64-colour palette: a quarter of the size, small enough to commit)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig.savefig(path, dpi=80)
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)


# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    _quiet()
    import transformers

    os.makedirs(args.output_dir, exist_ok=True)
    started = time.time()
    catalog = methods(args.hard_threshold, "", args.csrs_anchor)
    chosen = [catalog[m] for m in args.methods]
    skipped = [m.name for m in chosen if not installed(m)]
    for name in skipped:
        print(f"note: method {name} skipped: its reward {catalog[name].reward!r} is not installed in this checkout.")
    template_path = os.path.join(args.output_dir, "judge_template.txt")
    Path(template_path).write_text(JUDGE_TEMPLATE)
    catalog = methods(args.hard_threshold, template_path, args.csrs_anchor)
    chosen = [catalog[m] for m in args.methods if m not in skipped]
    template = load_judge_template(template_path)

    splits = draw_splits(args)
    print(f"data: {len(splits.sft)} supervised, {len(splits.val)} validation, {len(splits.rl)} label-free, "
          f"{len(splits.test)} held-out boards ({args.task}, grid {args.grid})")

    base_dir = os.path.join(args.output_dir, "base")
    print("1. supervised base")
    base_key = {k: getattr(args, k) for k in BASE_ARGS}
    marker = Path(base_dir) / "sft.json"
    if args.reuse_base and marker.exists() and json.loads(marker.read_text())["args"] == base_key:
        sft = json.loads(marker.read_text())["sft"]
        print(f"  reusing the base in {base_dir} (same supervised settings)")
    else:
        sft = train_base(args, splits, base_dir, template)
        marker.write_text(json.dumps({"args": base_key, "sft": sft}))
    model = transformers.AutoModelForImageTextToText.from_pretrained(base_dir)
    processor = transformers.AutoProcessor.from_pretrained(base_dir, padding_side="left")
    base = evaluate(model, processor, splits.test, args.grid, args.eval_samples, args.max_completion_length,
                    args.temperature, args.eval_batch_size, seed=10_000)
    base_judge = judge_accuracy(model, processor, splits.test, args.grid, template, args.routes)
    print(f"  base after {sft['steps']} steps ({sft['encode_s'] + sft['train_s']:.0f}s): held-out greedy pass@1 "
          f"{base['greedy_pass1']:.3f}, sampled pass@1 {base['sampled_pass1']:.3f}, maj@{args.eval_samples} "
          f"{base['maj_at_k']:.3f}, judge accuracy {base_judge:.3f}")
    del model

    print(f"2. label-free runs: {len(chosen)} methods x {len(args.seeds)} seeds, {args.rl_steps} steps each, "
          f"{args.workers} worker(s)")
    jobs = [
        {"args": args, "method": m, "seed": s, "splits": splits, "base_dir": base_dir}
        for m in chosen
        for s in args.seeds
    ]
    rl_start = time.time()
    results = run_all(jobs, args.workers)
    rl_s = time.time() - rl_start

    reach = (args.reach_level, args.reach_window, args.reach_run)
    rows = aggregate(base, results, *reach)
    goal = goal_check(rows)
    table = format_table(rows, args.eval_samples, *reach)
    figures = []
    for folder in [os.path.join(args.output_dir, "figures")] + ([args.figures_dir] if args.figures_dir else []):
        figures += plot_curves(results, folder, args.smooth, args.figures_prefix)
        figures += plot_heldout(rows, folder, args.eval_samples, args.figures_prefix)
    total_s = time.time() - started
    report = {
        "args": {k: v for k, v in vars(args).items()},
        "skipped_methods": skipped,
        "sft": {k: v for k, v in sft.items()},
        "base": base,
        "base_judge_accuracy": base_judge,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in results],
        "table": rows,
        "goal": goal,
        "seconds": {"total": total_s, "label_free": rl_s},
        "figures": figures,
    }
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(table + "\n")
    print(f"3. report ({total_s / 60:.1f} min in all; label-free runs {rl_s / 60:.1f} min): {args.output_dir}")
    if goal:
        print(f"high-confidence share: first step its {args.reach_window}-step mean stays >= {args.reach_level} for "
              f"{args.reach_run} steps, per seed ({', '.join(map(str, args.seeds))}):")
        for row in rows[1:]:
            print(f"  {row['method']:<24} {_per_seed(row['confident_steps']):<20} "
                  f"({reached_summary(row['confident_steps'])}); mean share over the first half "
                  f"{_pct(row['high_confidence_early'])} %")
        print(f"earliest (median over seeds): {goal['earliest_high_confidence']}; highest mean share over the first "
              f"half: {goal['highest_early_high_confidence']}")
        print(f"best method {goal['best_method']}: greedy pass@1 {goal['greedy_gain_points']:+.1f} points over the "
              "base "
              f"(base gap to maj@{args.eval_samples}: {goal['base_gap_points']:.1f} points, closed "
              f"{goal['gap_closed']:.0%}); goal {'met' if goal['goal_met'] else 'missed'}; fastest high-confidence "
              f"rise: {goal['fastest_high_confidence_rise']}")
    if skipped:
        print(f"skipped (reward not installed): {', '.join(skipped)}")
    print(table)
    return report


if __name__ == "__main__":
    main()
