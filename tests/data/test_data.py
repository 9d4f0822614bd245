"""Data adapters: local files shaped like the papers' training sets, the hidden label, Qwen resizing."""

import json

import datasets
import pytest
from PIL import Image

from self_evolve_trl.data.arguments import DataArguments
from self_evolve_trl.data import ROW_COLUMN, DataError, build_prompt, load_training_dataset
from self_evolve_trl.data.images import ImageError, qwen_resize
from self_evolve_trl.data.synthetic import make_synthetic_rows


def _image(color="red", size=(100, 60)):
    return Image.new("RGB", size, color)


def test_geoqa_shaped_parquet_answer_moves_to_the_hidden_label(tmp_path):
    rows = [{"image": _image(), "problem": "Find angle ABC.", "solution": "<answer>140°</answer>"}]
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(tmp_path / "geoqa.parquet")
    ds = load_training_dataset(DataArguments(
        dataset_name=str(tmp_path / "geoqa.parquet"), question_column="problem", image_column="image",
        answer_column="solution", label_extractor="answer_tag", instruction="Box it.",
    ))
    assert set(ds.column_names) == {"prompt", "images", "label", "uid", ROW_COLUMN}  # `solution` is gone
    row = ds[0]
    assert row["label"] == "140°"
    assert row["prompt"] == [{"role": "user", "content": [{"type": "image", "text": None},
                                                          {"type": "text", "text": "Find angle ABC. Box it."}]}]
    (image,) = row["images"]
    assert image.size == (112, 56)  # 100x60 resized the Qwen way: sides multiples of 28, aspect kept


def test_geoqa_shaped_parquet_with_no_column_settings(tmp_path):
    """A local GeoQA copy read with the defaults: `solution` is found and its `<answer>` tag read."""
    rows = [{"image": _image(), "problem": "Find angle ABC.", "solution": "<answer>140°</answer>"},
            {"image": _image(), "problem": "Find x.", "solution": "12"}]
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).to_parquet(tmp_path / "geoqa.parquet")
    ds = load_training_dataset(DataArguments(dataset_name=str(tmp_path / "geoqa.parquet")))
    assert ds["label"] == ["140°", "12"]


def test_geo3k_shaped_jsonl_with_image_placeholder_and_paths(tmp_path):
    _image("blue").save(tmp_path / "a.png")
    rows = [{"problem": "<image>Find x. Use the figure.", "images": ["a.png"], "answer": "3",
             "ground_truth": "3", "id": "g1"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_training_dataset(DataArguments(dataset_name=str(tmp_path / "train.jsonl"), instruction=None))
    assert "ground_truth" not in ds.column_names and "answer" not in ds.column_names  # answer carriers dropped
    assert ds[0]["id"] == "g1" and ds[0]["label"] == "3"
    assert ds[0]["prompt"][0]["content"] == [{"type": "image", "text": None},
                                             {"type": "text", "text": "Find x. Use the figure."}]
    assert ds[0]["images"][0].getpixel((0, 0)) == (0, 0, 255)


def _hub_dataset(columns: dict, image_column: str):
    image = datasets.Image()
    features = datasets.Features({
        name: (datasets.List(image) if name == image_column == "images" else image if name == image_column
               else datasets.Value("string"))
        for name in columns
    })
    return datasets.Dataset.from_dict(columns, features=features)


@pytest.mark.parametrize(
    "preset, hub_id, columns, question, label",
    [
        ("geo3k", "hiyouga/geometry3k",
         {"images": [[_image("blue")]], "problem": ["<image>Find x. Round to the nearest tenth."], "answer": ["3.5"]},
         "Find x. Round to the nearest tenth. Box it.", "3.5"),
        ("geoqa", "leonardPKU/GEOQA_R1V_Train_8K",
         {"image": [_image("green")], "problem": ["As shown in the figure, find angle ABC."],
          "solution": ["<think>Supplementary angles.</think> <answer>140°</answer>"]},
         "As shown in the figure, find angle ABC. Box it.", "140°"),
        ("mmr1", "MMR1/MMR1-Math-RL-Data-v0",
         {"images": [[_image("red")]], "problem": ["What is the area of the shaded region?"], "answer": ["12"]},
         "What is the area of the shaded region? Box it.", "12"),
    ],
)
def test_presets_load_their_hub_dataset_and_columns(monkeypatch, preset, hub_id, columns, question, label):
    """Each preset (README, "Data"): the hub id it asks `datasets` for, the question (with the instruction) and image it
    reads, and the answer moved to the hidden label (GeoQA's read from its `<answer>` tag)."""
    image_column = "image" if "image" in columns else "images"
    requested = []

    def load_dataset(path, name=None, split=None, **kwargs):
        requested.append((path, name, split))
        return _hub_dataset(columns, image_column)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    ds = load_training_dataset(DataArguments(dataset_name=preset, instruction="Box it."))
    assert requested == [(hub_id, None, "train")]
    assert sorted(ds.column_names) == [ROW_COLUMN, "images", "label", "prompt", "uid"]  # the answer column is gone
    row = ds[0]
    assert row["prompt"] == [{"role": "user", "content": [{"type": "image", "text": None},
                                                          {"type": "text", "text": question}]}]
    assert row["label"] == label
    (image,) = row["images"]
    expected = columns[image_column][0][0] if image_column == "images" else columns[image_column][0]
    assert image.getpixel((0, 0)) == expected.getpixel((0, 0))


def test_placeholders_in_the_middle_are_kept_in_place():
    content = build_prompt("Look <image> and <image> then answer.", 2, "Box it.")[0]["content"]
    assert [p["type"] for p in content] == ["text", "image", "text", "image", "text"]
    assert content[-1]["text"] == "then answer. Box it."


def test_no_answer_column_means_no_labels(tmp_path):
    rows = [{"problem": "q", "image": _image()}]
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "x.parquet")
    ds = load_training_dataset(DataArguments(dataset_name=str(tmp_path / "x.parquet"), answer_column="none"))
    assert ds[0]["label"] is None


def test_missing_column_error_names_the_available_ones(tmp_path):
    datasets.Dataset.from_list([{"question": "q", "image": _image()}]).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"has no question column 'problem' \(set question_column\); available columns: question, image"):
        load_training_dataset(DataArguments(dataset_name=str(tmp_path / "x.parquet")))
    with pytest.raises(DataError) as raised:  # every missing column at once
        load_training_dataset(DataArguments(dataset_name=str(tmp_path / "x.parquet"), image_column="picture",
                                            answer_column="solution"))
    assert str(raised.value) == (
        f"Dataset {str(tmp_path / 'x.parquet')!r} has no question column 'problem' (set question_column) and no image "
        "column 'picture' (set image_column) and no answer column 'solution' (set answer_column); available columns: "
        "question, image."
    )


def test_missing_file_and_empty_dataset(tmp_path):
    with pytest.raises(DataError, match="Dataset file or folder not found: ./nope.parquet"):
        load_training_dataset(DataArguments(dataset_name="./nope.parquet"))
    datasets.Dataset.from_dict({"problem": [], "image": []}).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(DataError, match="is empty"):
        load_training_dataset(DataArguments(dataset_name=str(tmp_path / "empty.parquet"), answer_column="none"))


def test_corrupt_image_is_a_clear_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "d.jsonl").write_text(json.dumps({"problem": "q", "image": "bad.png"}))
    ds = load_training_dataset(DataArguments(dataset_name=str(tmp_path / "d.jsonl"), answer_column="none"))
    with pytest.raises(ImageError, match="bad.png"):
        ds[0]


def test_qwen_resize_bounds():
    small = qwen_resize(_image(size=(20, 20)), min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    large = qwen_resize(_image(size=(1000, 1000)), min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    assert small.size == (56, 56) and large.size == (112, 112)


def test_synthetic_answers_follow_the_image():
    for row in make_synthetic_rows(20, task="count", grid=2, seed=3):
        pixels = row["image"].load()
        filled = sum(pixels[c * 28 + 14, r * 28 + 14] != (245, 245, 245) for r in range(2) for c in range(2))
        assert str(filled) == row["answer"]
    rows = make_synthetic_rows(20, task="count_color", grid=3, seed=1)
    assert all(0 <= int(r["answer"]) <= 9 for r in rows) and any("red" in r["question"] for r in rows)
    # a seed gives the same rows every time (images included), another seed other rows; seed 7 pinned
    first, again, other = make_synthetic_rows(5, seed=7), make_synthetic_rows(5, seed=7), make_synthetic_rows(5, seed=8)
    assert [r["answer"] for r in first] == ["3", "1", "1", "1", "1"]
    assert [r["answer"] for r in other] == ["2", "2", "2", "1", "4"]
    assert [r["image"].tobytes() for r in first] == [r["image"].tobytes() for r in again]
    assert first[0]["image"].tobytes() != other[0]["image"].tobytes()


def test_two_colour_task_counts_both_colours_and_adds():
    """`count_two_colors` on a known board (answer, worked solutions), and drawn rows whose answers follow the
    image: the cells of either colour named in the question, read from the pixels."""
    from self_evolve_trl.data.synthetic import COLORS, Board, make_boards, worked_solution

    cells = {(0, 0): "red", (0, 2): "blue", (1, 1): "red", (2, 0): "green", (2, 1): "blue", (2, 2): "blue"}
    board = Board(cells, ("red", "blue"), "How many red and blue squares are there in total?", 5)
    assert [board.counted((r, c)) for r in range(3) for c in range(3)] == [1, 0, 1, 0, 1, 0, 0, 1, 1]
    assert worked_solution(board, 3, "rows") == "<think>rows red 1+1+0=2, blue 1+0+2=3, 2+3=5</think>\\boxed{5}"
    assert worked_solution(board, 3, "cols") == "<think>cols red 1+1+0=2, blue 0+1+2=3, 2+3=5</think>\\boxed{5}"
    assert worked_solution(board, 3, "direct") == "\\boxed{5}"
    with pytest.raises(ValueError, match="valid routes: rows, cols, direct"):
        worked_solution(board, 3, "diagonal")

    boards = make_boards(50, "count_two_colors", 3, seed=4)
    assert all(len(set(b.target)) == 2 and b.question == f"How many {b.target[0]} and {b.target[1]} squares are "
               "there in total?" for b in boards)
    assert all(b.answer == sum(c in b.target for c in b.cells.values()) for b in boards)
    assert all(worked_solution(b, 3, route).endswith(f"\\boxed{{{b.answer}}}")
               for b in boards for route in ("rows", "cols"))
    rgb = {value: name for name, value in COLORS.items()}
    for row in make_synthetic_rows(30, task="count_two_colors", grid=3, seed=4):
        first, second = row["question"].split()[2], row["question"].split()[4]
        pixels = row["image"].load()
        colours = [rgb.get(pixels[c * 28 + 14, r * 28 + 14]) for r in range(3) for c in range(3)]
        assert str(sum(colour in (first, second) for colour in colours)) == row["answer"]
    assert [r["answer"] for r in make_synthetic_rows(6, task="count_two_colors", grid=3, seed=0)] == [
        "4", "4", "5", "6", "4", "6"]


def test_unknown_synthetic_task_names_the_valid_ones():
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.errors import ConfigError

    with pytest.raises(ConfigError, match="valid choices: count, count_color, count_two_colors, add"):
        DataArguments(synthetic_task="count_sum")


def test_tiny_model_is_a_real_qwen25vl(tiny_model_dir, tiny_processor):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(tiny_processor).__name__ == "Qwen2_5_VLProcessor"
    messages = [{"role": "user", "content": [{"type": "image", "image": _image(size=(56, 56))}, {"type": "text", "text": "hi"}]}]
    inputs = tiny_processor.apply_chat_template([messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    text = tiny_processor.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>")
    assert text.count("<|image_pad|>") == 4 and text.endswith("hi<|im_end|>\n<|im_start|>assistant\n")
    assert tiny_processor.tokenizer.decode(tiny_processor.tokenizer.encode("<think>é \\boxed{½}</think>")) == "<think>é \\boxed{½}</think>"
