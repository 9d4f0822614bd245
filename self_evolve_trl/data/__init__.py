"""Training data: the three papers' training sets (or local copies) and the synthetic set, in TRL's format.

Every dataset comes out with the same columns:

- `prompt`: one user turn, the image placeholder(s) and the question with the actor instruction appended (plain
  text for a text-only dataset: no image column, or `image_column: none`);
- `images`: the list of images, resized the Qwen way when the row is read (within the recipe's `min_pixels` /
  `max_pixels`; the training command then sets the bounds of the processor it loaded, `with_pixel_bounds`);
- `label`: the reference answer where the data has one (`None` otherwise). It is hidden from every reward and used
  only by the diagnostics;
- `uid` and any other column of the source that does not carry the answer;
- `_row` (`ROW_COLUMN`): the row's index, which the images transform reads and never passes on.

A row whose image cannot be read or decoded is replaced, when it is read, by the next readable row; the replacement
carries the indices and reasons of the rows it stands in for in `SKIPPED_COLUMN`, which the trainer takes out, counts
and acts on (`on_bad_row`, see `badrows.py`). A row without images (`null` or `[]`) is a text-only question.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..answers import extract_answer
from .images import QWEN25_VL_PATCH_SIZE, ImageError, load_image, qwen_resize
from .synthetic import TEXT_TASKS, make_synthetic_rows

logger = logging.getLogger(__name__)

LABEL_COLUMN = "label"
# The row's index in the prepared dataset (read by the images transform, never passed on) and, on a row that stands
# in for unreadable ones, their `[index, reason]` pairs (None on every other row).
ROW_COLUMN = "_row"
SKIPPED_COLUMN = "_skipped_rows"
# The most rows tried, after an unreadable one, for a readable row to use in its place.
MAX_REPLACEMENT_TRIES = 1000

# Columns that carry reference answers in common datasets; never passed on, since rewards would see them.
ANSWER_COLUMN_NAMES = {"answer", "answers", "solution", "solutions", "ground_truth", "gt", "gt_answer", "final_answer"}

LOCAL_EXTENSIONS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


@dataclass(frozen=True)
class DatasetPreset:
    """Where a known training set lives and which columns hold what."""

    path: str
    question_column: str
    image_column: str
    answer_column: str | None
    label_extractor: str | None = None


PRESETS = {
    "geo3k": DatasetPreset("hiyouga/geometry3k", "problem", "images", "answer"),
    "geoqa": DatasetPreset("leonardPKU/GEOQA_R1V_Train_8K", "problem", "image", "solution", "answer_tag"),
    "mmr1": DatasetPreset("MMR1/MMR1-Math-RL-Data-v0", "problem", "images", "answer"),
}
SYNTHETIC = "synthetic"
# `dataset_name: eval:NAME` trains on the questions of benchmark NAME of the evaluation command (test-time RL); the
# training layer loads it (`training.datasets`), since data sits below eval.
BENCHMARK_PREFIX = "eval:"


class DataError(ValueError):
    """A dataset that cannot be used as given; the message names the file, split or column and the choices."""


def data_files_in(folder: str) -> list[str]:
    """The .parquet, .jsonl, .json and .csv files under `folder`, sorted."""
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if os.path.splitext(name)[1] in LOCAL_EXTENSIONS
    )


def _local_files(path: str) -> tuple[str, list[str]]:
    """(datasets builder name, files) for a local file or a folder of data files."""
    if os.path.isdir(path):
        files = data_files_in(path)
        if not files:
            raise DataError(f"No .parquet, .jsonl, .json or .csv files in folder {path}.")
    else:
        files = [path]
    kinds = {LOCAL_EXTENSIONS.get(os.path.splitext(f)[1]) for f in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(f"Cannot read {path}: use .parquet, .jsonl, .json or .csv files (one kind per folder).")
    return kinds.pop(), files


def load_raw_dataset(name: str, config: str | None = None, split: str = "train"):
    """A `datasets.Dataset` from a hub id or a local file/folder (no preset resolution)."""
    import datasets  # imported when data is loaded (start-up time: `datasets` pulls in pyarrow and pandas)

    if os.path.exists(name):
        builder, files = _local_files(name)
        if all(os.path.getsize(f) == 0 for f in files):
            raise DataError(f"Dataset {name} is empty: no rows to train on.")
        try:
            return datasets.load_dataset(builder, data_files=files, split="train")
        except Exception as error:
            if "corresponds to no data" in str(error):
                raise DataError(f"Dataset {name} is empty: it has no rows.") from None
            raise DataError(f"Cannot read dataset files {name}: {error}") from None
    if name.startswith((".", "/")) or re.search(r"\.(parquet|jsonl?|csv)$", name):
        raise DataError(f"Dataset file or folder not found: {name}")
    try:
        return datasets.load_dataset(name, config, split=split)
    except ValueError as error:
        if "split" in str(error).lower():
            raise DataError(f"Dataset {name!r} has no split {split!r}: {error}") from None
        raise DataError(f"Cannot load dataset {name!r}: {error}") from None
    except Exception as error:
        raise DataError(
            f"Cannot load dataset {name!r} from the hub ({type(error).__name__}: {error}). "
            "Without network access, point dataset_name at a local parquet/jsonl copy."
        ) from None


def _image_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


DEFAULT_INSTRUCTION = (  # the actor's instruction, appended to every question (training and eval)
    "Reason about the problem step by step inside <think> and </think> first. After </think>, give only the final "
    "answer as \\boxed{ANSWER}, with nothing but the answer value inside the box."
)


def build_prompt(question: str, n_images: int, instruction: str | None) -> list[dict]:
    """One user turn: image placeholders where the question has `<image>` tags (else first), then the text."""
    text = question.strip()
    if instruction:
        text = f"{text} {instruction}"
    pieces = re.split(r"<image>", text)
    content: list[dict] = []
    if len(pieces) - 1 == n_images and n_images > 0:
        for i, piece in enumerate(pieces):
            if piece.strip():
                content.append({"type": "text", "text": piece.strip()})
            if i < n_images:
                content.append({"type": "image", "text": None})
    else:
        text = text.replace("<image>", "").strip()
        content = [{"type": "image", "text": None} for _ in range(n_images)] + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def build_text_prompt(question: str, instruction: str | None) -> list[dict]:
    """One user turn of plain text (a string, as text-only chat templates need): the question, the instruction."""
    text = question.replace("<image>", "").strip()
    return [{"role": "user", "content": f"{text} {instruction}" if instruction else text}]


def _read_label(value: Any, label_extractor: str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        if value is None:
            return None
    text = str(value)
    if not label_extractor and "<answer>" in text:  # GeoQA's `solution` style, e.g. in a local copy
        label_extractor = "answer_tag"
    if label_extractor:
        return extract_answer(text, label_extractor) or text.strip()
    return text.strip()


def prepare_dataset(
    raw,
    question_column: str,
    image_column: str | None,
    answer_column: str | None,
    instruction: str | None,
    label_extractor: str | None = None,
    label_column: str = LABEL_COLUMN,
    max_samples: int | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    base_dir: str | None = None,
    source: str = "dataset",
):
    """Map a raw dataset to TRL's columns (`prompt`, `images`, the hidden label, `uid`, other non-answer columns).

    Checks the columns first and raises `DataError` naming every missing column and the available ones.
    """
    columns = list(raw.column_names)
    missing = [
        f"no {kind} column {column!r} (set {option})"
        for kind, column, option in [("question", question_column, "question_column"),
                                     ("image", image_column, "image_column"),
                                     ("answer", answer_column, "answer_column")]
        if column is not None and column not in columns
    ]
    if missing:
        raise DataError(f"{source} has {' and '.join(missing)}; available columns: {', '.join(columns)}.")
    if len(raw) == 0:
        raise DataError(f"{source} is empty.")
    if max_samples is not None:
        raw = raw.select(range(min(max_samples, len(raw))))

    dropped = {question_column, image_column, answer_column, label_column} | ANSWER_COLUMN_NAMES
    kept = [c for c in columns if c not in dropped and c not in ("prompt", "images", "image")]

    def convert(row, index):
        images = _image_list(row[image_column]) if image_column else []
        question = str(row[question_column])
        out = {  # a text-only dataset's prompts are plain text; a mixed one keeps one prompt shape (content parts)
            "prompt": build_prompt(question, len(images), instruction) if image_column
            else build_text_prompt(question, instruction),
            "images": images,
            label_column: _read_label(row[answer_column], label_extractor) if answer_column else None,
        }
        if "uid" not in kept:
            out["uid"] = str(index)
        out[ROW_COLUMN] = index
        return out

    raw = undecoded_images(raw, image_column)
    mapped = raw.map(
        convert,
        with_indices=True,
        remove_columns=[c for c in columns if c not in kept],
        desc="Preparing prompts",
    )
    return with_qwen_images(mapped, min_pixels, max_pixels, base_dir)


def undecoded_images(raw, column: str | None):
    """Keep images as stored bytes/paths through `map` (decoded lazily when a row is read, never re-encoded)."""
    import datasets  # start-up time, as in `load_raw_dataset`

    if column is None:
        return raw
    feature = raw.features[column]
    if isinstance(feature, datasets.Image):
        return raw.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Image):
        return raw.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return raw


@dataclass(frozen=True)
class QwenImages:
    """The `datasets` transform that loads a batch's `images` and resizes them the Qwen way (within
    [min_pixels, max_pixels], Qwen's defaults where None, sides multiples of `images.merged_patch(patch_size)`);
    paths are relative to `base_dir`.

    With `source` (the dataset without this transform, with its `ROW_COLUMN`), a row whose images cannot be used is
    replaced by the next readable row of `source`, which then lists the rows it stands in for in `SKIPPED_COLUMN`;
    without, the `ImageError` is raised. `bad` caches the unreadable rows (index -> reason) of this process."""

    min_pixels: int | None = None
    max_pixels: int | None = None
    base_dir: str | None = None
    patch_size: int = QWEN25_VL_PATCH_SIZE
    source: Any = field(default=None, compare=False, repr=False)
    bad: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, batch):
        batch = {column: list(values) for column, values in batch.items()}
        indices = batch.pop(ROW_COLUMN, None)
        if "images" not in batch:
            return batch
        if indices is None or self.source is None:
            batch["images"] = [self.read_images(images) for images in batch["images"]]
            return batch
        skipped = [None] * len(indices)
        for k, index in enumerate(indices):
            try:
                if index in self.bad:
                    raise ImageError(self.bad[index])
                batch["images"][k] = self.read_images(batch["images"][k])
            except ImageError as error:
                self.bad[index] = str(error)
                skipped[k] = self._replace(batch, k, index)
        batch[SKIPPED_COLUMN] = skipped
        return batch

    def read_images(self, images) -> list:
        """The loaded and resized images of one row (`[]` for a text-only row); `ImageError` if one is unusable."""
        return [self.read(img) for img in (images or [])]

    def read(self, value):
        try:
            return qwen_resize(load_image(value, self.base_dir), self.min_pixels, self.max_pixels, self.patch_size)
        except ImageError:
            raise
        except Exception as error:  # qwen_vl_utils: extreme aspect ratio, ...
            raise ImageError(f"Cannot use image: {error}") from None

    def _replace(self, batch: dict, k: int, index: int) -> list[list]:
        """Put the next readable row of `source` after `index` in place `k` of `batch`; return the `[index, reason]`
        pairs of the unreadable rows passed over, `index`'s first."""
        passed = [[index, self.bad[index]]]
        size = len(self.source)
        for step in range(1, min(size, MAX_REPLACEMENT_TRIES + 1)):
            j = (index + step) % size
            if j in self.bad:
                passed.append([j, self.bad[j]])
                continue
            row = self.source[j]
            try:
                images = self.read_images(row["images"])
            except ImageError as error:
                self.bad[j] = str(error)
                passed.append([j, self.bad[j]])
                continue
            for column in batch:
                if column in row:
                    batch[column][k] = images if column == "images" else row[column]
            return passed
        others = f"; none of the {len(passed) - 1} rows after it can be read either" if len(passed) > 1 else ""
        raise ImageError(f"dataset row {index}: {self.bad[index]}{others} (check image_column and the image files)")


def with_qwen_images(dataset, min_pixels: int | None, max_pixels: int | None, base_dir: str | None = None):
    """The dataset with its `images` loaded and resized the Qwen way whenever a row is read (lazily); an unreadable
    row is replaced by the next readable one (see `QwenImages`)."""
    source = dataset if ROW_COLUMN in dataset.column_names else None
    return dataset.with_transform(QwenImages(min_pixels, max_pixels, base_dir, source=source))


def with_pixel_bounds(dataset, min_pixels: int | None, max_pixels: int | None,
                      patch_size: int = QWEN25_VL_PATCH_SIZE):
    """A dataset of `load_training_dataset` whose images are resized within [min_pixels, max_pixels], in units of
    `patch_size`'s merged patch, instead: the bounds and patch size of the processor the trainer loaded
    (`images.processor_pixel_bounds`, `images.processor_patch_size`), so that the processor leaves them unchanged."""
    transform = dataset.format["format_kwargs"].get("transform")
    if not isinstance(transform, QwenImages):
        raise TypeError("with_pixel_bounds needs a dataset prepared by load_training_dataset (its images transform).")
    bounds = dataclasses.replace(transform, min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch_size,
                                 bad={})  # other sizes, other failures
    return dataset.with_transform(bounds)


def load_training_dataset(data_args, label_column: str = LABEL_COLUMN):
    """The training set named by `DataArguments`, prepared for the trainer."""
    import datasets  # start-up time, as in `load_raw_dataset`

    name = data_args.dataset_name
    if name.startswith(BENCHMARK_PREFIX):
        raise DataError(f"{name!r} is a benchmark: load it with training.datasets.recipe_dataset.")
    if name == SYNTHETIC:
        rows = make_synthetic_rows(
            data_args.synthetic_size, data_args.synthetic_task, data_args.synthetic_grid, data_args.synthetic_seed
        )
        raw = datasets.Dataset.from_list(rows)
        question, answer, extractor = "question", "answer", None
        image = None if data_args.synthetic_task in TEXT_TASKS else "image"
    else:
        preset = PRESETS.get(name)
        raw = load_raw_dataset(preset.path if preset else name, data_args.dataset_config, data_args.dataset_split)
        columns = raw.column_names
        question = data_args.question_column or (preset.question_column if preset else "problem")
        image = data_args.image_column or (
            preset.image_column if preset else next((c for c in ("images", "image") if c in columns), None)
        )
        answer = data_args.answer_column or (
            preset.answer_column if preset else next((c for c in ("answer", "solution") if c in columns), None)
        )
        extractor = data_args.label_extractor or (preset.label_extractor if preset else None)
    if answer is not None and answer.lower() == "none":
        answer = None
    if image is None and name != SYNTHETIC:  # no column `images` / `image`: text-only, as `image_column: none` says
        logger.warning(f"Dataset {name!r} has no image column (images, image): every row is a text-only question "
                       f"(set image_column if it has images; image_column: none for a text-only dataset).")
    elif image is not None and image.lower() == "none":
        image = None
    base_dir = name if os.path.isdir(name) else os.path.dirname(name) if os.path.exists(name) else None
    return prepare_dataset(
        raw,
        question_column=question,
        image_column=image,
        answer_column=answer,
        instruction=data_args.instruction,
        label_extractor=extractor,
        label_column=label_column,
        max_samples=data_args.max_train_samples,
        min_pixels=data_args.min_pixels,
        max_pixels=data_args.max_pixels,
        base_dir=base_dir,
        source=f"Dataset {name!r}",
    )
