"""A small synthetic image–question dataset whose answers are decided by the image content.

Each image is a `grid` x `grid` board of 28x28-pixel cells (one Qwen2.5-VL merged patch per cell); some cells are
filled with a colour. Tasks:

- `count`: how many cells are filled (any colour);
- `count_color`: how many cells have the colour named in the question (red, green or blue);
- `count_two_colors`: how many cells have either of two colours named in the question ("How many red and blue
  squares are there in total?"): two counts, then their sum, so a worked solution takes more than one step;
- `add`: a text-only task without a board, "What is a + b?" with a, b in 0..9 (for text-only models).

The answer is an integer kept in the hidden `label` column. The dataset is built in memory, seeded, in well under
a second for hundreds of examples.

For supervised warm-up (`benchmarks/self_evolution_toy.py`), `worked_solution` writes a correct solution of a board
along one of several routes (`SOLUTION_ROUTES`: count row by row, column by column, or answer at once; for
`count_two_colors`, each colour line by line, then the sum), and
`make_boards` draws the boards themselves (cells, target colour, question, answer), so solutions can be written.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw


CELL = 28
COLORS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220)}
BACKGROUND = (245, 245, 245)
BOARD_TASKS = ("count", "count_color", "count_two_colors")
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
    """One drawn question: the filled cells (cell -> colour), the colour asked about (None: any; a tuple: any of
    these, in the question's order), question, answer."""

    cells: dict[tuple[int, int], str]
    target: str | tuple[str, ...] | None
    question: str
    answer: int

    @property
    def targets(self) -> tuple[str, ...] | None:
        """The colours asked about, as a tuple (None: any colour)."""
        return (self.target,) if isinstance(self.target, str) else self.target

    def counted(self, cell: tuple[int, int], color: str | None = None) -> bool:
        """Whether the question counts this cell (with `color`: whether the cell has that colour)."""
        filled = self.cells.get(cell)
        if filled is None:
            return False
        if color is not None:
            return filled == color
        return self.targets is None or filled in self.targets

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
    if task == "count_two_colors":
        cells = {p: rng.choice(sorted(COLORS)) for p in chosen}
        first, second = rng.sample(sorted(COLORS), 2)
        answer = sum(1 for c in cells.values() if c in (first, second))
        question = f"How many {first} and {second} squares are there in total?"
        return Board(cells, (first, second), question, answer)
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


def line_counts(board: Board, grid: int, route: str, color: str | None = None) -> list[int]:
    """The counted cells of each row (`rows`) or column (`cols`); with `color`, the cells of that colour."""
    if route == "rows":
        return [sum(board.counted((r, c), color) for c in range(grid)) for r in range(grid)]
    if route == "cols":
        return [sum(board.counted((r, c), color) for r in range(grid)) for c in range(grid)]
    raise ValueError(f"Unknown solution route {route!r}; valid routes: {', '.join(SOLUTION_ROUTES)}.")


def solution_counts(board: Board, grid: int, route: str) -> list[tuple[str | None, list[int]]]:
    """What a `rows`/`cols` solution counts: `[(None, line counts)]`, or with two colours asked about one
    `(colour, line counts)` pair per colour, in the question's order."""
    colors = board.targets if board.targets is not None and len(board.targets) > 1 else (None,)
    return [(color, line_counts(board, grid, route, color)) for color in colors]


def solution_text(route: str, counts: list[tuple[str | None, list[int]]]) -> str:
    """A solution along `route` from its line counts: one `(colour, counts)` pair per colour counted (colour None
    for a single count), each summed, then the sums added up; the total is the boxed answer."""
    sums = [sum(lines) for _, lines in counts]
    total = sum(sums)
    if len(counts) == 1:
        return f"<think>{route} {'+'.join(map(str, counts[0][1]))}={total}</think>\\boxed{{{total}}}"
    steps = ", ".join(f"{color} {'+'.join(map(str, lines))}={n}" for (color, lines), n in zip(counts, sums))
    return f"<think>{route} {steps}, {'+'.join(map(str, sums))}={total}</think>\\boxed{{{total}}}"


def worked_solution(board: Board, grid: int, route: str) -> str:
    """A correct solution of `board` in the actor's output format, along `route`.

    `rows`/`cols` count line by line inside `<think>` and add up (with two colours asked about: each colour line by
    line, then the two sums); `direct` gives the answer at once.

    Example:

    ```python
    >>> board = Board({(0, 0): "red", (1, 0): "red", (1, 1): "blue"}, "red", "How many red squares?", 2)
    >>> worked_solution(board, 2, "rows")
    '<think>rows 1+1=2</think>\\\\boxed{2}'
    >>> worked_solution(board, 2, "cols")
    '<think>cols 2+0=2</think>\\\\boxed{2}'
    >>> worked_solution(board, 2, "direct")
    '\\\\boxed{2}'
    >>> both = Board(board.cells, ("red", "blue"), "How many red and blue squares are there in total?", 3)
    >>> worked_solution(both, 2, "rows")
    '<think>rows red 1+1=2, blue 0+1=1, 2+1=3</think>\\\\boxed{3}'

    ```
    """
    if route == "direct":
        return f"\\boxed{{{board.answer}}}"
    return solution_text(route, solution_counts(board, grid, route))


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
