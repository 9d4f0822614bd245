"""A small synthetic image–question dataset whose answers are decided by the image content.

Each image is a `grid` x `grid` board of 28x28-pixel cells (one Qwen2.5-VL merged patch per cell); some cells are
filled with a colour. Tasks:

- `count`: how many cells are filled (any colour);
- `count_color`: how many cells have the colour named in the question (red, green or blue);
- `add`: a text-only task without a board, "What is a + b?" with a, b in 0..9 (for text-only models).

The answer is an integer kept in the hidden `label` column. The dataset is built in memory, seeded, in well under
a second for hundreds of examples.

For supervised warm-up (`benchmarks/self_evolution_toy.py`), `worked_solution` writes a correct solution of a board
along one of several routes (`SOLUTION_ROUTES`: count row by row, column by column, or answer at once), and
`make_boards` draws the boards themselves (cells, target colour, question, answer), so solutions can be written.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw


CELL = 28
COLORS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220)}
BACKGROUND = (245, 245, 245)
BOARD_TASKS = ("count", "count_color")
TEXT_TASKS = ("add",)  # rows without an image
TASKS = BOARD_TASKS + TEXT_TASKS
SOLUTION_ROUTES = ("rows", "cols", "direct")


def draw_board(cells: dict[tuple[int, int], str], grid: int) -> Image.Image:
    """An RGB image of a grid with the given cells filled (cell -> colour name)."""
    image = Image.new("RGB", (grid * CELL, grid * CELL), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for (row, col), color in cells.items():
        x, y = col * CELL, row * CELL
        draw.rectangle([x + 3, y + 3, x + CELL - 4, y + CELL - 4], fill=COLORS[color])
    return image


@dataclass(frozen=True)
class Board:
    """One drawn question: the filled cells (cell -> colour), the colour asked about (None: any), question, answer."""

    cells: dict[tuple[int, int], str]
    target: str | None
    question: str
    answer: int

    def counted(self, cell: tuple[int, int]) -> bool:
        """Whether the question counts this cell."""
        color = self.cells.get(cell)
        return color is not None and (self.target is None or color == self.target)

    def key(self) -> tuple:
        """Identity of the question (same image and same question), to keep splits apart."""
        return (tuple(sorted(self.cells.items())), self.target)


def make_board(rng: random.Random, task: str, grid: int) -> Board:
    """One random board of `task` on a `grid` x `grid` board."""
    positions = [(r, c) for r in range(grid) for c in range(grid)]
    n_filled = rng.randint(1, len(positions))
    chosen = rng.sample(positions, n_filled)
    if task == "count":
        color = rng.choice(sorted(COLORS))
        cells = {p: color for p in chosen}
        return Board(cells, None, "How many squares in the image are filled with colour?", n_filled)
    if task == "count_color":
        cells = {p: rng.choice(sorted(COLORS)) for p in chosen}
        target = rng.choice(sorted(COLORS))
        answer = sum(1 for c in cells.values() if c == target)
        return Board(cells, target, f"How many {target} squares are there in the image?", answer)
    raise ValueError(f"Unknown board task {task!r}; valid tasks: {', '.join(BOARD_TASKS)}.")


def make_example(rng: random.Random, task: str, grid: int) -> tuple[Image.Image, str, str]:
    """One (image, question, answer) triple."""
    board = make_board(rng, task, grid)
    return draw_board(board.cells, grid), board.question, str(board.answer)


def make_boards(size: int, task: str = "count", grid: int = 2, seed: int = 0) -> list[Board]:
    """`size` boards drawn with `seed` (the same boards as `make_synthetic_rows` with the same arguments)."""
    if task not in BOARD_TASKS:
        raise ValueError(f"Unknown board task {task!r}; valid tasks: {', '.join(BOARD_TASKS)}.")
    rng = random.Random(seed)
    return [make_board(rng, task, grid) for _ in range(size)]


def worked_solution(board: Board, grid: int, route: str) -> str:
    """A correct solution of `board` in the actor's output format, along `route`.

    `rows`/`cols` count line by line inside `<think>` and add up; `direct` gives the answer at once.

    Example:

    ```python
    >>> board = Board({(0, 0): "red", (1, 0): "red", (1, 1): "blue"}, "red", "How many red squares?", 2)
    >>> worked_solution(board, 2, "rows")
    '<think>rows 1+1=2</think>\\\\boxed{2}'
    >>> worked_solution(board, 2, "cols")
    '<think>cols 2+0=2</think>\\\\boxed{2}'
    >>> worked_solution(board, 2, "direct")
    '\\\\boxed{2}'

    ```
    """
    if route == "direct":
        return f"\\boxed{{{board.answer}}}"
    if route == "rows":
        lines = [sum(board.counted((r, c)) for c in range(grid)) for r in range(grid)]
    elif route == "cols":
        lines = [sum(board.counted((r, c)) for r in range(grid)) for c in range(grid)]
    else:
        raise ValueError(f"Unknown solution route {route!r}; valid routes: {', '.join(SOLUTION_ROUTES)}.")
    return f"<think>{route} {'+'.join(map(str, lines))}={board.answer}</think>\\boxed{{{board.answer}}}"


def make_synthetic_rows(size: int, task: str = "count", grid: int = 2, seed: int = 0) -> list[dict]:
    """`size` rows of {"question", "image", "answer", "uid"} (raw columns, before the actor instruction; `image` is
    None for a `TEXT_TASKS` task)."""
    if task not in TASKS:
        raise ValueError(f"Unknown synthetic task {task!r}; valid tasks: {', '.join(TASKS)}.")
    rng = random.Random(seed)
    rows = []
    for i in range(size):
        if task in TEXT_TASKS:
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            rows.append({"question": f"What is {a} + {b}?", "image": None, "answer": str(a + b),
                         "uid": f"{task}-{seed}-{i}"})
            continue
        image, question, answer = make_example(rng, task, grid)
        rows.append({"question": question, "image": image, "answer": answer, "uid": f"{task}-{seed}-{i}"})
    return rows
