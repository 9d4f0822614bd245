"""Splits, prompts and the supervised targets: worked solutions, plausible wrong ones, the judge's verdicts and
two-turn continuations (a finished assistant turn with a partial solution, then a new turn that finishes it)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from self_evolve_trl.answers import extract_answer, is_equivalent
from self_evolve_trl.data.synthetic import Board, make_boards, solution_counts, solution_text, worked_solution

INSTRUCTION = "Answer in \\boxed{}."
BOXED_PATTERN = ".*\\\\boxed\\{.*\\}.*"

# The judge's prompt for the tiny model (a judge prompt template: `=== user ===` section, `{problem}`,
# `{completion}`); the base learns to answer it in supervised training.
JUDGE_TEMPLATE = """=== user ===
{problem}
Candidate: {completion}
Is the candidate right? \\boxed{1} yes, \\boxed{0} no.
"""
# the actor's token budget (`--max-completion-length`): one colour's worked solutions on 3x3 boards are ~15 tokens
MAX_COMPLETION_LENGTH = 32


def judge_max_tokens(max_completion_length: int) -> int:
    """The judge's token budget: its worked verdict is a recount (as long as a solution) plus the comparison and the
    boxed verdict; the same budget in training and when the base's judge accuracy is measured.

    Example (the actor's 32 tokens for one colour on 3x3 boards; 64 for two colours, whose verdicts reach 61 tokens):

    ```python
    >>> judge_max_tokens(32), judge_max_tokens(64)
    (48, 80)

    ```
    """
    return max_completion_length + 16


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


def candidate(board: Board, grid: int, route: str, rng: random.Random) -> tuple[str, bool]:
    """A candidate solution for the judge, right or wrong with equal chance, and whether it is right."""
    good = rng.random() < 0.5
    return (worked_solution(board, grid, route) if good else wrong_solution(board, grid, route, rng)), good


def judge_solution(board: Board, grid: int, candidate_text: str) -> str:
    """The judge's worked verdict: recount row by row, compare with the candidate's answer, `\\boxed{1}` or `{0}`."""
    own = worked_solution(board, grid, "rows").split("</think>")[0].removeprefix("<think>")
    theirs = extract_answer(candidate_text)
    return f"<think>{own}; candidate {theirs}</think>\\boxed{{{int(theirs == str(board.answer))}}}"


def judge_messages(board: Board, candidate_text: str, image, template) -> list[dict]:
    """The judge's chat for one candidate, as the `reference` judge backend builds it (system part if any, then the
    image and the user text; `self_evolve_trl.judge.backends`)."""
    request = template.request(prompt_text(board), candidate_text, [image])
    messages = []
    if request.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    content = [{"type": "image", "image": im} for im in request.images] + [{"type": "text", "text": request.text}]
    messages.append({"role": "user", "content": content})
    return messages


def load_judge_template(path: str):
    from self_evolve_trl.judge.prompt import JudgeTemplate

    return JudgeTemplate.load(path)


def split_solution(tokenizer, solution: str, share: float) -> tuple[str, str]:
    """`solution` cut after ⌊share · tokens⌋ of its tokens, as CSRS cuts a completion: (prefix text, the rest)."""
    ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
    prefix = tokenizer.decode(ids[: int(share * len(ids))], skip_special_tokens=True)
    if not solution.startswith(prefix):
        raise ValueError(f"the tokenizer does not decode a prefix of {solution!r} back to a prefix: {prefix!r}")
    return prefix, solution[len(prefix):]


def new_turn_target(solution: str, prefix: str, answer: int) -> str:
    """What the new assistant turn writes after `prefix` (a finished turn): the rest of the reasoning where the prefix
    stopped inside it, then the boxed answer (a whole `\\boxed{}`, since re-inference reads the new turn alone).

    Example:

    ```python
    >>> new_turn_target("<think>rows 1+0+1=2</think>\\\\boxed{2}", "<think>rows 1+0", 2)
    '+1=2</think>\\\\boxed{2}'
    >>> new_turn_target("<think>rows 1+0+1=2</think>\\\\boxed{2}", "<think>rows 1+0+1=2</think>\\\\box", 2)
    '\\\\boxed{2}'

    ```
    """
    thought_end = solution.find("</think>") + len("</think>") if "</think>" in solution else 0
    if len(prefix) < thought_end:
        return solution[len(prefix):]
    return f"\\boxed{{{answer}}}"


def two_turn_messages(board: Board, grid: int, image, prefix: str) -> list[dict]:
    """The actor's prompt, then `prefix` as a finished assistant turn: the chat CSRS's `new_turn` re-inference sends
    (`self_evolve_trl/csrs/provider.py`, `retrace_prompt`)."""
    return [*prompt_messages(board, grid, image), {"role": "assistant", "content": prefix}]


def correct(answer: str | None, board: Board) -> bool:
    return answer is not None and is_equivalent(answer, str(board.answer), "normalized")


def route_of(text: str) -> str:
    for route in ("rows", "cols"):
        if text.startswith(f"<think>{route}"):
            return route
    return "direct" if text.startswith("\\boxed") else "other"
