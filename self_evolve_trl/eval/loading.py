"""Reading a benchmark from its hub id or a local copy, and building its items.

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
from typing import Any

from ..data import LOCAL_EXTENSIONS, data_files_in, undecoded_images
from .benchmarks import Benchmark, EvalError, EvalItem, cell_text


@dataclass
class LoadedBenchmark:
    """A benchmark's items and the dataset that holds their images (read lazily, row by row)."""

    benchmark: Benchmark
    items: list[EvalItem]
    dataset: Any
    image_column: str | None  # None for a text benchmark
    source: str  # hub id and split(s), or the local path
    base_dir: str | None = None
    splits: tuple[str, ...] | None = None  # the splits read; None for a local copy without split names
    left_out: list[str] = field(default_factory=list)  # ids of the rows without a reference (nothing to score)

    def image_values(self, item: EvalItem) -> list:
        if self.image_column is None:
            return []
        value = self.dataset[item.row][self.image_column]
        if value is None:
            return []
        return list(value) if isinstance(value, (list, tuple)) else [value]


def belongs_to_split(path: str, root: str, split: str, file_stem: str | None = None) -> bool:
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
    by_split = [(split, [f for f in files if belongs_to_split(f, path, split, stems.get(split))]) for split in splits]
    missing = [split for split, found in by_split if not found]
    if len(missing) == len(splits):
        if any(belongs_to_split(f, path, s, stems.get(s)) for f in files for s in _ALL_SPLIT_NAMES):
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
    import datasets  # heavy (pyarrow, pandas): imported when a benchmark is read, not on `--help`

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
    import datasets  # heavy (pyarrow, pandas): imported when a benchmark is read, not on `--help`

    if not bench.hub_id:
        raise EvalError(f"{bench.title} is read from a local file only: --data {bench.name}=PATH.")
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


def split_names(bench: Benchmark, split: str | None) -> tuple[str, ...]:
    """The splits to read: `split` (one, or several with commas), else the benchmark's own."""
    return tuple(s.strip() for s in split.split(",") if s.strip()) if split else bench.splits


def read_parts(bench: Benchmark, path: str | None, splits: tuple[str, ...], narrowed: bool) -> tuple[list, str, str | None]:
    """`([(split, dataset), ...], source, base_dir)`, from the local copy at `path` or, where None, the hub."""
    if path is None:
        config = f" ({bench.hub_config})" if bench.hub_config else ""
        return [(s, _read_hub(bench, s)) for s in splits], f"{bench.hub_id}{config} split {','.join(splits)}", None
    if not os.path.exists(path):
        raise EvalError(f"{bench.title}: local data not found: {path}")
    parts = [(s, _read_files(bench, files)) for s, files in _local_split_files(bench, path, splits, narrowed=narrowed)]
    base_dir = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    return parts, os.path.abspath(path), base_dir


def image_column_of(bench: Benchmark, parts: list, source: str) -> str | None:
    """The image column (None for a text benchmark), once every part is checked to have the benchmark's columns."""
    for s, part in parts:
        missing = [c for c in bench.columns if not any(a in part.column_names for a in c.split("|"))]
        if missing:
            where = f"{source}" + (f" split {s}" if s else "")
            names = " or ".join(repr(name) for name in missing[0].split("|"))
            raise EvalError(
                f"{bench.title} data {where} has no column {names}; available columns: {', '.join(part.column_names)}."
            )
    columns = list(parts[0][1].column_names)
    if not bench.image_columns:
        return None
    image_column = next((c for c in bench.image_columns if c in columns), None)
    if image_column is None:
        raise EvalError(
            f"{bench.title} data {source} has no image column (one of {', '.join(bench.image_columns)}); "
            f"available columns: {', '.join(columns)}."
        )
    return image_column


def combine_parts(bench: Benchmark, parts: list, image_column: str, source: str):
    """One dataset of the parts, images left undecoded, each row with its split (`__split`) where it has one."""
    import datasets  # heavy (pyarrow, pandas): imported when a benchmark is read, not on `--help`

    parts = [_with_split_column(undecoded_images(part, image_column), s) for s, part in parts]
    try:
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    except ValueError as error:
        raise EvalError(f"{bench.title}: the splits of {source} do not share columns: {error}") from None


def build_items(
    bench: Benchmark, dataset, image_column: str, limit: int | None, settings: dict
) -> tuple[list[EvalItem], list[str]]:
    """`(items, left_out)`: the items of the rows, ids made unique, the first `limit` (groups, for a grouped
    benchmark); `left_out` are the ids of the rows without a reference."""
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
    return items, left_out


def no_items_error(bench: Benchmark, dataset, source: str, settings: dict) -> EvalError:
    """Why a benchmark has no items: for MathVerse, the problem versions the data has."""
    if bench.name == "mathverse" and "problem_version" in dataset.column_names:
        found = sorted({cell_text(v) for v in dataset["problem_version"]})
        return EvalError(
            f"{bench.title}: no items with problem_version {settings.get('mathverse_version')!r} in {source}; "
            f"the data has: {', '.join(found)} (--mathverse-version one of them, or all)."
        )
    return EvalError(f"{bench.title}: no items in {source}" + (" after filtering" if settings else "") + ".")


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
    settings = settings or {}
    parts, source, base_dir = read_parts(bench, path, split_names(bench, split), narrowed=bool(split))
    read_splits = tuple(s for s, _ in parts) if all(s for s, _ in parts) else None
    image_column = image_column_of(bench, parts, source)
    dataset = combine_parts(bench, parts, image_column, source)
    items, left_out = build_items(bench, dataset, image_column, limit, settings)
    if not items:
        raise no_items_error(bench, dataset, source, settings)
    return LoadedBenchmark(bench, items, dataset, image_column, source, base_dir, read_splits, left_out)
