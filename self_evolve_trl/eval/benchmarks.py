"""The papers' evaluation benchmarks: where each lives, which columns hold what, how a row becomes an item.

| name | hub id (config) / split | rows | answer format | default metric |
|---|---|---|---|---|
| `mathvision` | `MathLLMs/MathVision` / `test` (`testmini`: 304) | 3040 | option letter or free form | accuracy |
| `mathverse` | `AI4Math/MathVerse` (`testmini`) / `testmini`, "Vision Only" | 788 | letter or free form | accuracy |
| `wemath` | `We-Math/We-Math` / `testmini` | 1740 | option letter | score_strict |
| `logicvista` | `lscpku/LogicVista` / `test` | 448 | one or more letters | accuracy |
| `dynamath` | `DynaMath/DynaMath_Sample` / `sample_variant1..10` | 501 x 10 | letter, float or text | worst_case |
| `geo3k` | `hiyouga/geometry3k` / `test` | 601 | free form | accuracy |
| `geoqa` | `leonardPKU/GEOQA_8K_R1V` / `test` | | free form | accuracy |
| `text` | a local file only (`--data text=PATH`): question/answer, no image (MATH-500, AIME) | | free form | accuracy |

Reading a benchmark from the hub or a local copy: `loading`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..answers import extract_answer
from .scoring import reference_letters


class EvalError(ValueError):
    """Input the user can fix (unknown benchmark, missing file or column, bad option); one line, no traceback."""


@dataclass
class EvalItem:
    """One question of a benchmark.

    Attributes:
        id: unique within the benchmark (the cache key together with the settings).
        question: the question as shown to the model, with its options, before the instruction is appended.
        reference: the reference answer.
        answer_type: `choice`, `choices`, `free` or `float` (see `scoring`).
        options: option letter -> option text, where the data lists the options.
        row: the row of the loaded dataset that holds the item's images.
        group: DynaMath's seed question or WeMath's composite problem.
        part: WeMath's sub-question key (`2steps_1`, ..., `3steps_multi`).
    """

    id: str
    question: str
    reference: str
    answer_type: str
    options: dict[str, str] = field(default_factory=dict)
    row: int = 0
    group: str | None = None
    part: str | None = None


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's location, columns, protocol and row converter."""

    name: str
    title: str
    hub_id: str
    hub_config: str | None
    splits: tuple[str, ...]
    columns: tuple[str, ...]  # required besides the image; "a|b" = either
    image_columns: tuple[str, ...]  # the first one present is used
    make_item: Callable[..., EvalItem | None]
    metrics: tuple[str, ...]  # selectable primary metrics, default first
    scoring: str
    grouped: bool = False  # `--limit` counts groups (seed questions, composite problems), not rows
    file_stems: tuple[tuple[str, str], ...] = ()  # (split, the hub's name for its files) where they differ


_IMAGE_TAG = re.compile(r"<image\s*\d*>", re.IGNORECASE)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_VISION_ONLY_QUESTION = "Answer the question shown in the image."


def cell_text(value: Any) -> str:
    """A cell as stripped text; "" for None."""
    return "" if value is None else str(value).strip()


def _strip_image_tags(text: str) -> str:
    return re.sub(r"[ \t]{2,}", " ", _IMAGE_TAG.sub("", text)).strip()


def format_options(options: dict[str, str]) -> str:
    return "Choices:\n" + "\n".join(f"({letter}) {text}" for letter, text in options.items())


_OPTION_MARKER = re.compile(r"(?<![^\s;])\(?([A-H])\)?\s*[.:：、)]\s*")


def parse_option_string(text: str) -> dict[str, str]:
    """Options written inline, as WeMath's `option` column: `A. 3; B. 4; C. 5` -> {A: 3, B: 4, C: 5}.

    Option markers (`A.`, `(B)`, `C:`) are read in letter order, so a letter inside an option's text (`Point A.`)
    stays text: after option X the next marker is the first one of the next letter (or, where that letter is
    missing, of a later one) that leaves option X some text.

    Example:

    ```python
    >>> parse_option_string("A. 3 cm; B. 4 cm; C. No correct answer")
    {'A': '3 cm', 'B': '4 cm', 'C': 'No correct answer'}
    >>> parse_option_string("A. Point A. B. Point B; C. 5")
    {'A': 'Point A.', 'B': 'Point B', 'C': '5'}

    ```
    """
    markers = list(_OPTION_MARKER.finditer(text or ""))
    chain = []
    while markers:
        if not chain:
            chain.append(markers.pop(0))
            continue
        previous = chain[-1]
        later = [m for m in markers if m.group(1) > previous.group(1) and text[previous.end():m.start()].strip()]
        if not later:
            break
        expected = chr(ord(previous.group(1)) + 1)
        chosen = next((m for m in later if m.group(1) == expected), later[0])
        chain.append(chosen)
        markers = [m for m in markers if m.start() > chosen.start()]
    options = {}
    for i, marker in enumerate(chain):
        end = chain[i + 1].start() if i + 1 < len(chain) else len(text)
        options[marker.group(1)] = text[marker.end():end].strip().rstrip(";").strip()
    return options


_OPTIONS_MARKER = re.compile(r"\b(?:choices|choice|options)\s*:", re.IGNORECASE)


def options_in_text(text: str, unmarked: bool = False) -> dict[str, str]:
    """Options listed in a question's text after its last `Choices:` / `Options:` marker (at least two), else {}.

    With `unmarked` (a question known to be multiple choice), a text without such a marker is read from its last
    option `A` on (`Which one? (A) heap (B) stack`).

    Example:

    ```python
    >>> options_in_text("Find the angle.\\nChoices:\\nA:20°\\nB:25°\\nC:40°")
    {'A': '20°', 'B': '25°', 'C': '40°'}
    >>> options_in_text("Which one?"), options_in_text("Sets A and B? A: [1] B: [2]")
    ({}, {})
    >>> options_in_text("Sets A and B?\\nA: [1]\\nB: [2]", unmarked=True)
    {'A': '[1]', 'B': '[2]'}

    ```
    """
    text = text or ""
    markers = list(_OPTIONS_MARKER.finditer(text))
    if markers:
        starts = [markers[-1].end()]
    elif unmarked:
        starts = [m.start() for m in _OPTION_MARKER.finditer(text) if m.group(1) == "A"][::-1]
    else:
        starts = []
    for start in starts:
        found = parse_option_string(text[start:])
        if len(found) >= 2:
            return found
    return {}


def _mathvision(row: dict, index: int, settings: dict) -> EvalItem:
    choices = [str(c) for c in (row.get("options") or [])]
    answer = cell_text(row["answer"])
    question = _strip_image_tags(cell_text(row["question"]))
    letters = {LETTERS[i]: c for i, c in enumerate(choices)}
    if letters:
        question = f"{question}\n{format_options(letters)}"
    is_choice = bool(letters) or bool(re.fullmatch(r"[A-E]", answer))
    return EvalItem(
        id=cell_text(row.get("id")) or str(index), question=question, reference=answer,
        answer_type="choice" if is_choice else "free", options=letters, row=index,
    )


def _mathverse(row: dict, index: int, settings: dict) -> EvalItem | None:
    version = settings.get("mathverse_version", "Vision Only")
    if version != "all" and cell_text(row["problem_version"]) != version:
        return None
    question = _strip_image_tags(cell_text(row["question"])) or DEFAULT_VISION_ONLY_QUESTION
    is_choice = cell_text(row["question_type"]) == "multi-choice"
    # the full text question (for Vision Only, the question is drawn in the image): options to match values against
    full_question = cell_text(row.get("question_for_eval")) or question
    options = options_in_text(full_question) if is_choice else {}
    reference = cell_text(row["answer"])
    kind = "free"
    if is_choice:  # a few references name two options: both are the answer, as a set of letters
        kind = "choices" if len(reference_letters(reference, options) or ()) > 1 else "choice"
    return EvalItem(
        id=cell_text(row.get("sample_index")) or str(index), question=question, reference=reference, answer_type=kind,
        options=options, row=index,
    )


def _wemath(row: dict, index: int, settings: dict) -> EvalItem:
    option_text = cell_text(row["option"])
    problem, part = cell_text(row["ID"]), cell_text(row["key"])
    return EvalItem(
        id=f"{problem}/{part}" if part else problem or str(index),
        question=f"{_strip_image_tags(cell_text(row['question']))}\n{option_text}".strip(),
        reference=cell_text(row["answer"]), answer_type="choice", options=parse_option_string(option_text),
        row=index, group=problem, part=part,
    )


def _logicvista(row: dict, index: int, settings: dict) -> EvalItem:
    question = _strip_image_tags(cell_text(row["question"]))
    reference = cell_text(row["answer"])
    # the options are mostly drawn in the image; where the text lists them, they are the letters offered. A reference
    # that is no letter names a numbered option ("Select from 1-5": `3`) and is compared as a value
    return EvalItem(
        id=cell_text(row.get("id")) or str(index), question=question, reference=reference,
        answer_type="choices" if reference_letters(reference) else "free", options=options_in_text(question),
        row=index,
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _dynamath(row: dict, index: int, settings: dict) -> EvalItem:
    answer_type = cell_text(row["answer_type"]).lower()
    reference = cell_text(row["ground_truth"])
    # the seed data also says `int` (references such as -15.700000000000001) and `single answer` (49)
    numeric = answer_type in ("float", "integer", "int") or (answer_type == "single answer" and _is_number(reference))
    kind = "choice" if answer_type == "multiple choice" else "float" if numeric else "free"
    seed = cell_text(row["id"])
    variant = cell_text(row.get("__split")) or f"row{index}"
    question = _strip_image_tags(cell_text(row["question"]))
    return EvalItem(
        id=f"{seed}/{variant}", question=question, reference=reference, answer_type=kind,
        options=options_in_text(question, unmarked=True) if kind == "choice" else {}, row=index, group=seed,
    )


def _geometry(row: dict, index: int, settings: dict) -> EvalItem:
    answer = cell_text(row.get("answer") if "answer" in row else row.get("solution"))
    answer = extract_answer(answer, "answer_tag") or answer  # GeoQA R1-V copies: `<answer> 140° </answer>`
    # the question keeps its `<image>` tag: the image is placed there, as in training
    return EvalItem(
        id=cell_text(row.get("id")) or str(index), question=cell_text(row["problem"]), reference=answer,
        answer_type="free", row=index,
    )


def _text(row: dict, index: int, settings: dict) -> EvalItem:
    """A text-only question: `question` or `problem`; the reference is `answer`, else the `\\boxed{}` of `solution`
    (MATH-500's columns); the id is `id` or `unique_id`, else the row number."""
    question = cell_text(row["question"] if "question" in row else row.get("problem"))
    if "answer" in row:
        reference = cell_text(row["answer"])
    else:
        solution = cell_text(row.get("solution"))
        reference = extract_answer(solution, "boxed") or solution
    return EvalItem(id=cell_text(row.get("id") or row.get("unique_id")) or str(index), question=question,
                    reference=reference, answer_type="free", row=index)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "mathvision", "MathVision", "MathLLMs/MathVision", None, ("test",), ("question", "answer", "options"),
            ("decoded_image", "image"), _mathvision, ("accuracy",),
            "option letter or option content for choice questions, math-aware equivalence for the others",
        ),
        Benchmark(
            "mathverse", "MathVerse", "AI4Math/MathVerse", "testmini", ("testmini",),
            ("question", "answer", "question_type", "problem_version"), ("image",), _mathverse, ("accuracy",),
            "option letter or option content for multi-choice (a reference giving an option's text is read as its "
            "letter; one naming two options needs both letters), math-aware equivalence for free-form",
        ),
        Benchmark(
            "wemath", "WeMath", "We-Math/We-Math", None, ("testmini",), ("ID", "key", "question", "option", "answer"),
            ("image_path", "image"), _wemath, ("score_strict", "score_loose", "accuracy"),
            "option letter or option content; four-dimensional metrics over composite problems",
            grouped=True,
        ),
        Benchmark(
            "logicvista", "LogicVista", "lscpku/LogicVista", None, ("test",), ("question", "answer"), ("image",),
            _logicvista, ("accuracy",),
            "set of option letters equals the reference set (e.g. 'A, C'); a numbered option's reference ('3') by "
            "math-aware equivalence; a row without a reference is left out",
        ),
        Benchmark(
            "dynamath", "DynaMath", "DynaMath/DynaMath_Sample", None,
            tuple(f"sample_variant{i}" for i in range(1, 11)), ("id", "question", "ground_truth", "answer_type"),
            ("decoded_image", "image"), _dynamath, ("worst_case", "average_case"),
            "option letter or option content; float within 1e-3 (answer types float, integer, int, and numeric "
            "single answer); math-aware equivalence for text; worst case = all 10 variants right",
            grouped=True, file_stems=tuple((f"sample_variant{i}", f"sample{i}") for i in range(1, 11)),
        ),
        Benchmark(
            "geo3k", "Geo3K", "hiyouga/geometry3k", None, ("test",), ("problem", "answer"), ("images", "image"),
            _geometry, ("accuracy",), "math-aware equivalence",
        ),
        Benchmark(
            "geoqa", "GeoQA", "leonardPKU/GEOQA_8K_R1V", None, ("test",), ("problem", "answer|solution"),
            ("images", "image"), _geometry, ("accuracy",), "math-aware equivalence",
        ),
        Benchmark(  # text-only questions from a local file, for text-only models (and VL models without images)
            "text", "Text", "", None, ("test",), ("question|problem", "answer|solution"), (), _text, ("accuracy",),
            "math-aware equivalence",
        ),
    ]
}
PAPER_BENCHMARKS = ("mathvision", "mathverse", "wemath", "logicvista", "dynamath")


def get_benchmark(name: str) -> Benchmark:
    """The benchmark of a registry name (case, `-` and `_` ignored)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in BENCHMARKS:
        raise EvalError(f"Unknown benchmark {name!r}; valid benchmarks: {', '.join(BENCHMARKS)}.")
    return BENCHMARKS[key]
