"""A small synthetic image–question dataset whose answers are decided by the image content.

Each image is a `grid` x `grid` board of 28x28-pixel cells (one Qwen2.5-VL merged patch per cell); some cells are
filled with a colour. Tasks:

- `count`: how many cells are filled (any colour);
- `count_color`: how many cells have the colour named in the question (red, green or blue).

The answer is an integer kept in the hidden `label` column. The dataset is built in memory, seeded, in well under
a second for hundreds of examples.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw


CELL = 28
COLORS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220)}
BACKGROUND = (245, 245, 245)
TASKS = ("count", "count_color")


def draw_board(cells: dict[tuple[int, int], str], grid: int) -> Image.Image:
    """An RGB image of a grid with the given cells filled (cell -> colour name)."""
    image = Image.new("RGB", (grid * CELL, grid * CELL), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for (row, col), color in cells.items():
        x, y = col * CELL, row * CELL
        draw.rectangle([x + 3, y + 3, x + CELL - 4, y + CELL - 4], fill=COLORS[color])
    return image


def make_example(rng: random.Random, task: str, grid: int) -> tuple[Image.Image, str, str]:
    """One (image, question, answer) triple."""
    positions = [(r, c) for r in range(grid) for c in range(grid)]
    n_filled = rng.randint(1, len(positions))
    chosen = rng.sample(positions, n_filled)
    if task == "count":
        color = rng.choice(sorted(COLORS))
        cells = {p: color for p in chosen}
        question = "How many squares in the image are filled with colour?"
        answer = n_filled
    elif task == "count_color":
        cells = {p: rng.choice(sorted(COLORS)) for p in chosen}
        target = rng.choice(sorted(COLORS))
        question = f"How many {target} squares are there in the image?"
        answer = sum(1 for c in cells.values() if c == target)
    else:
        raise ValueError(f"Unknown synthetic task {task!r}; valid tasks: {', '.join(TASKS)}.")
    return draw_board(cells, grid), question, str(answer)


def make_synthetic_rows(size: int, task: str = "count", grid: int = 2, seed: int = 0) -> list[dict]:
    """`size` rows of {"question", "image", "answer", "uid"} (raw columns, before the actor instruction)."""
    if task not in TASKS:
        raise ValueError(f"Unknown synthetic task {task!r}; valid tasks: {', '.join(TASKS)}.")
    rng = random.Random(seed)
    rows = []
    for i in range(size):
        image, question, answer = make_example(rng, task, grid)
        rows.append({"question": question, "image": image, "answer": answer, "uid": f"{task}-{seed}-{i}"})
    return rows
