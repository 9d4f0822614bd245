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

A local copy is a data file (parquet, jsonl, json, csv) or a folder of them with the same columns as the hub copy
(images as `datasets` image structs, bytes or paths relative to the folder). In a folder holding several splits,
a file belongs to split S when its name is S (`testmini.parquet`; `testmini_text_only.parquet` is another split) or
a shard of S (`data/test-00000-of-00001.parquet`), or a parent folder is named S (`default/testmini/0000.parquet`);
a folder with no such names is one split. Where a split has files of several kinds (a hub download with json
copies beside the parquet files), the parquet files are read. A benchmark read from several splits (DynaMath's 10
variants) needs all of them, unless `--split` names the ones to read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..data import LOCAL_EXTENSIONS, data_files_in, undecoded_images
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


def _text(value: Any) -> str:
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
    answer = _text(row["answer"])
    question = _strip_image_tags(_text(row["question"]))
    letters = {LETTERS[i]: c for i, c in enumerate(choices)}
    if letters:
        question = f"{question}\n{format_options(letters)}"
    is_choice = bool(letters) or bool(re.fullmatch(r"[A-E]", answer))
    return EvalItem(
        id=_text(row.get("id")) or str(index), question=question, reference=answer,
        answer_type="choice" if is_choice else "free", options=letters, row=index,
    )


def _mathverse(row: dict, index: int, settings: dict) -> EvalItem | None:
    version = settings.get("mathverse_version", "Vision Only")
    if version != "all" and _text(row["problem_version"]) != version:
        return None
    question = _strip_image_tags(_text(row["question"])) or DEFAULT_VISION_ONLY_QUESTION
    is_choice = _text(row["question_type"]) == "multi-choice"
    # the full text question (for Vision Only, the question is drawn in the image): options to match values against
    full_question = _text(row.get("question_for_eval")) or question
    options = options_in_text(full_question) if is_choice else {}
    reference = _text(row["answer"])
    kind = "free"
    if is_choice:  # a few references name two options: both are the answer, as a set of letters
        kind = "choices" if len(reference_letters(reference, options) or ()) > 1 else "choice"
    return EvalItem(
        id=_text(row.get("sample_index")) or str(index), question=question, reference=reference, answer_type=kind,
        options=options, row=index,
    )


def _wemath(row: dict, index: int, settings: dict) -> EvalItem:
    option_text = _text(row["option"])
    problem, part = _text(row["ID"]), _text(row["key"])
    return EvalItem(
        id=f"{problem}/{part}" if part else problem or str(index),
        question=f"{_strip_image_tags(_text(row['question']))}\n{option_text}".strip(),
        reference=_text(row["answer"]), answer_type="choice", options=parse_option_string(option_text),
        row=index, group=problem, part=part,
    )


def _logicvista(row: dict, index: int, settings: dict) -> EvalItem:
    question = _strip_image_tags(_text(row["question"]))
    reference = _text(row["answer"])
    # the options are mostly drawn in the image; where the text lists them, they are the letters offered. A reference
    # that is no letter names a numbered option ("Select from 1-5": `3`) and is compared as a value
    return EvalItem(
        id=_text(row.get("id")) or str(index), question=question, reference=reference,
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
    answer_type = _text(row["answer_type"]).lower()
    reference = _text(row["ground_truth"])
    # the seed data also says `int` (references such as -15.700000000000001) and `single answer` (49)
    numeric = answer_type in ("float", "integer", "int") or (answer_type == "single answer" and _is_number(reference))
    kind = "choice" if answer_type == "multiple choice" else "float" if numeric else "free"
    seed = _text(row["id"])
    variant = _text(row.get("__split")) or f"row{index}"
    question = _strip_image_tags(_text(row["question"]))
    return EvalItem(
        id=f"{seed}/{variant}", question=question, reference=reference, answer_type=kind,
        options=options_in_text(question, unmarked=True) if kind == "choice" else {}, row=index, group=seed,
    )


def _geometry(row: dict, index: int, settings: dict) -> EvalItem:
    from ..answers import extract_answer

    answer = _text(row.get("answer") if "answer" in row else row.get("solution"))
    answer = extract_answer(answer, "answer_tag") or answer  # GeoQA R1-V copies: `<answer> 140° </answer>`
    # the question keeps its `<image>` tag: the image is placed there, as in training
    return EvalItem(
        id=_text(row.get("id")) or str(index), question=_text(row["problem"]), reference=answer,
        answer_type="free", row=index,
    )


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
    ]
}
PAPER_BENCHMARKS = ("mathvision", "mathverse", "wemath", "logicvista", "dynamath")


def get_benchmark(name: str) -> Benchmark:
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in BENCHMARKS:
        raise EvalError(f"Unknown benchmark {name!r}; valid benchmarks: {', '.join(BENCHMARKS)}.")
    return BENCHMARKS[key]


# ----------------------------------------------------------------------------------------------------------------
# Loading

@dataclass
class LoadedBenchmark:
    """A benchmark's items and the dataset that holds their images (read lazily, row by row)."""

    benchmark: Benchmark
    items: list[EvalItem]
    dataset: Any
    image_column: str
    source: str  # hub id and split(s), or the local path
    base_dir: str | None = None
    splits: tuple[str, ...] | None = None  # the splits read; None for a local copy without split names
    left_out: list[str] = field(default_factory=list)  # ids of the rows without a reference (nothing to score)

    def image_values(self, item: EvalItem) -> list:
        value = self.dataset[item.row][self.image_column]
        if value is None:
            return []
        return list(value) if isinstance(value, (list, tuple)) else [value]


def _belongs(path: str, root: str, split: str, file_stem: str | None = None) -> bool:
    """Whether a data file under `root` holds split `split`: its name is the split (`testmini.parquet`) or a shard
    of it (`test-00000-of-00001.parquet`, with or without the hub's hash suffix), or a parent folder is named after
    it (`default/testmini/0000.parquet`). `testmini_text_only.parquet` is another split, not part of `testmini`.
    `file_stem` is the name the hub gives the split's files where it differs (DynaMath: `data/sample1-*.parquet`
    holds `sample_variant1`)."""
    relative = os.path.relpath(path, root)
    parents = relative.split(os.sep)[:-1]
    stem = os.path.splitext(os.path.basename(path))[0]
    shard = r"(?:-\d{5}-of-\d{5}(?:-[0-9a-f]+)?)?"
    names = [split] + ([file_stem] if file_stem else [])
    return split in parents or any(re.fullmatch(re.escape(name) + shard, stem) for name in names)


def _local_split_files(
    bench: Benchmark, path: str, splits: tuple[str, ...], narrowed: bool = False
) -> list[tuple[str | None, list[str]]]:
    """(split, files) per split found in a local copy; `(None, files)` for a file or a folder with no split names.

    Every split asked for must be there: a benchmark whose metric spans several splits (DynaMath's worst case over
    its 10 variants) is not silently scored on fewer, unless `narrowed` (the user chose the splits with --split).
    """
    if os.path.isfile(path):
        return [(None, [path])]
    files = data_files_in(path)
    if not files:
        raise EvalError(f"{bench.title}: no .parquet, .jsonl, .json or .csv file in folder {path}.")
    stems = dict(bench.file_stems)
    by_split = [(split, [f for f in files if _belongs(f, path, split, stems.get(split))]) for split in splits]
    missing = [split for split, found in by_split if not found]
    if len(missing) == len(splits):
        if any(_belongs(f, path, s, stems.get(s)) for f in files for s in _ALL_SPLIT_NAMES):
            raise EvalError(
                f"{bench.title}: folder {path} has no file for split {', '.join(splits)} "
                f"(files are matched by name: <split>.parquet, <split>-00000-of-00001.parquet or <split>/...)."
            )
        return [(None, files)]
    if missing:
        found = [split for split, files_of in by_split if files_of]
        hint = "" if narrowed else (
            f"; to score only the splits there, say so: --split {bench.name}={','.join(found)} "
            "(the metric is then over those splits only)"
        )
        raise EvalError(
            f"{bench.title}: folder {path} has no file for split {', '.join(missing)} "
            f"(found {', '.join(found)}){hint}."
        )
    return by_split


_ALL_SPLIT_NAMES = ("train", "validation", "test", "testmini") + tuple(f"sample_variant{i}" for i in range(1, 11))


def _read_files(bench: Benchmark, files: list[str]):
    import datasets

    kinds = {LOCAL_EXTENSIONS[os.path.splitext(f)[1]] for f in files}
    if len(kinds) > 1 and "parquet" in kinds:  # a hub download: the parquet files beside the repo's json copies
        files = [f for f in files if LOCAL_EXTENSIONS[os.path.splitext(f)[1]] == "parquet"]
        kinds = {"parquet"}
    if len(kinds) != 1:
        raise EvalError(
            f"{bench.title}: mixed file kinds ({', '.join(sorted(kinds))}) in {os.path.dirname(files[0])}; "
            "use one kind per folder."
        )
    try:
        return datasets.load_dataset(kinds.pop(), data_files=files, split="train")
    except Exception as error:
        raise EvalError(f"{bench.title}: cannot read {', '.join(files)}: {str(error).splitlines()[0]}") from None


def _read_hub(bench: Benchmark, split: str):
    import datasets

    try:
        return datasets.load_dataset(bench.hub_id, bench.hub_config, split=split)
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise EvalError(
            f"{bench.title}: cannot load {bench.hub_id} split {split!r} from the hub ({message}). "
            f"Without network access, give a local copy: --data {bench.name}=PATH."
        ) from None


def _with_split_column(dataset, split: str | None):
    if split is None:
        return dataset
    return dataset.add_column("__split", [split] * len(dataset))


def load_benchmark(
    bench: Benchmark,
    path: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    settings: dict | None = None,
) -> LoadedBenchmark:
    """Read a benchmark from its hub id or a local copy, check its columns, and build its items.

    `split` narrows the benchmark's splits (one split, or several with commas: `sample_variant1,sample_variant2`).
    `limit` keeps the first N items, or for DynaMath and WeMath the first N seed questions / composite problems with
    all their rows (so that worst-case accuracy and the four-dimensional metrics stay defined).
    """
    import datasets

    settings = settings or {}
    splits = tuple(s.strip() for s in split.split(",") if s.strip()) if split else bench.splits
    if path is not None:
        if not os.path.exists(path):
            raise EvalError(f"{bench.title}: local data not found: {path}")
        parts = [(s, _read_files(bench, files))
                 for s, files in _local_split_files(bench, path, splits, narrowed=bool(split))]
        source = os.path.abspath(path)
        base_dir = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    else:
        parts = [(s, _read_hub(bench, s)) for s in splits]
        config = f" ({bench.hub_config})" if bench.hub_config else ""
        source = f"{bench.hub_id}{config} split {','.join(splits)}"
        base_dir = None
    read_splits = tuple(s for s, _ in parts) if all(s for s, _ in parts) else None
    columns = list(parts[0][1].column_names)
    for s, part in parts:
        missing = [c for c in bench.columns if not any(a in part.column_names for a in c.split("|"))]
        if missing:
            where = f"{source}" + (f" split {s}" if s else "")
            names = " or ".join(repr(name) for name in missing[0].split("|"))
            raise EvalError(
                f"{bench.title} data {where} has no column {names}; available columns: {', '.join(part.column_names)}."
            )
    image_column = next((c for c in bench.image_columns if c in columns), None)
    if image_column is None:
        raise EvalError(
            f"{bench.title} data {source} has no image column (one of {', '.join(bench.image_columns)}); "
            f"available columns: {', '.join(columns)}."
        )
    parts = [_with_split_column(undecoded_images(part, image_column), s) for s, part in parts]
    try:
        dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    except ValueError as error:
        raise EvalError(f"{bench.title}: the splits of {source} do not share columns: {error}") from None

    text_columns = [c for c in dataset.column_names if c != image_column]
    items: list[EvalItem] = []
    left_out: list[str] = []
    groups: set[str] = set()
    seen_ids: dict[str, int] = {}
    for index, row in enumerate(dataset.select_columns(text_columns)):
        item = bench.make_item(row, index, settings)
        if item is None:
            continue
        if not item.reference:  # LogicVista's repository copy has one row without question or answer
            left_out.append(item.id)
            continue
        if limit is not None:
            if bench.grouped:
                if item.group not in groups:
                    if len(groups) >= limit:
                        continue
                    groups.add(item.group)
            elif len(items) >= limit:
                break
        if item.id in seen_ids:  # keep ids unique: they key the cache
            seen_ids[item.id] += 1
            item.id = f"{item.id}#{seen_ids[item.id]}"
        else:
            seen_ids[item.id] = 0
        items.append(item)
    if not items:
        if bench.name == "mathverse" and "problem_version" in dataset.column_names:
            found = sorted({_text(v) for v in dataset["problem_version"]})
            raise EvalError(
                f"{bench.title}: no items with problem_version {settings.get('mathverse_version')!r} in {source}; "
                f"the data has: {', '.join(found)} (--mathverse-version one of them, or all)."
            )
        raise EvalError(f"{bench.title}: no items in {source}" + (" after filtering" if settings else "") + ".")
    return LoadedBenchmark(bench, items, dataset, image_column, source, base_dir, read_splits, left_out)


