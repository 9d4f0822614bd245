"""Test-time RL data: a benchmark's questions as training rows (`dataset_name: eval:NAME`), read by the evaluation
command's loaders, with the evaluation prompts and the references in the hidden label column only."""

from __future__ import annotations

import dataclasses

import pytest

from self_evolve_trl.data import DEFAULT_INSTRUCTION, DataError, load_training_dataset
from self_evolve_trl.data.arguments import DataArguments, data_setting_problems
from self_evolve_trl.errors import ConfigError
from self_evolve_trl.eval import EvalConfig
from self_evolve_trl.eval.runner import build_conversation, load_benchmarks
from self_evolve_trl.eval.benchmarks import get_benchmark
from self_evolve_trl.training.datasets import benchmark_name, recipe_dataset
from self_evolve_trl.training.heldout import load_heldout_dataset
from tests.eval.eval_fixtures import ALL, EXPECTED_ITEMS, write_benchmark_fixtures


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("benchmarks"))
    write_benchmark_fixtures(root)
    return root


@pytest.mark.parametrize("name", ALL)
def test_rows_are_the_eval_prompts_with_the_references_as_labels(name, benchmark_dir):
    """Each row's prompt is the evaluation command's prompt of the same item (question, options, choice hint,
    instruction); its label is the item's reference; no other benchmark column comes along."""
    dataset = recipe_dataset(DataArguments(dataset_name=f"eval:{name}", benchmark_data_dir=benchmark_dir,
                                           instruction="Answer in \\boxed{}."))
    config = EvalConfig(benchmarks=[name], data_dir=benchmark_dir)
    (loaded,) = load_benchmarks(config, [get_benchmark(name)])
    assert len(dataset) == len(loaded.items) == EXPECTED_ITEMS[name]
    assert set(dataset.column_names) == {"prompt", "images", "label", "uid", "_row"}
    for row, item in zip(dataset, loaded.items):
        n_images = len(loaded.image_values(item))
        assert len(row["images"]) == n_images
        assert row["prompt"] == build_conversation(item, "Answer in \\boxed{}.", config.choice_hint, n_images,
                                                   config.choices_hint)
        assert (row["label"], row["uid"]) == (item.reference, item.id)


def test_mathvision_rows_by_hand(benchmark_dir):
    dataset = recipe_dataset(DataArguments(dataset_name="eval:mathvision", benchmark_data_dir=benchmark_dir))
    assert dataset["label"] == ["A", "\\frac{1}{2}", "B", "140", "E"]
    first = dataset[0]["prompt"][0]["content"]
    assert first[0] == {"type": "image", "text": None}
    assert first[1]["text"] == (
        "Which shape is red?\nChoices:\n(A) square\n(B) circle\n(C) triangle\n"
        "For a multiple-choice question, the answer is the letter of the correct option. " + DEFAULT_INSTRUCTION)
    assert dataset[1]["prompt"][0]["content"][1]["text"] == "How long is AB? " + DEFAULT_INSTRUCTION  # free form: no hint
    assert dataset[0]["images"][0].size == (56, 84)  # read and resized when the row is read


def test_split_limit_and_instruction_follow_the_eval_command(benchmark_dir):
    base = DataArguments(dataset_name="eval:mathvision", benchmark_data_dir=benchmark_dir)
    testmini = recipe_dataset(dataclasses.replace(base, dataset_split="testmini"))  # the eval command's --split
    assert testmini["uid"] == ["x"] and testmini["label"] == ["0"]
    assert recipe_dataset(dataclasses.replace(base, max_train_samples=2))["uid"] == ["1", "2"]  # its --limit
    dynamath = recipe_dataset(dataclasses.replace(base, dataset_name="eval:dynamath", max_train_samples=1))
    assert len(dynamath) == 10 and set(dynamath["uid"]) == {f"1/sample_variant{i}" for i in range(1, 11)}


def test_benchmark_names():
    assert benchmark_name("eval:mathvision") == "mathvision" and benchmark_name("eval:") == ""
    assert benchmark_name("geoqa") is None and benchmark_name(None) is None


def test_what_cannot_be_read_is_a_data_error_naming_it(benchmark_dir, tmp_path):
    with pytest.raises(DataError, match="Unknown benchmark 'mmmu'; valid benchmarks: mathvision"):
        recipe_dataset(DataArguments(dataset_name="eval:mmmu", benchmark_data_dir=benchmark_dir))
    with pytest.raises(DataError, match="has no copy of logicvista"):
        recipe_dataset(DataArguments(dataset_name="eval:logicvista", benchmark_data_dir=str(tmp_path)))
    with pytest.raises(DataError, match="no file for split testmini2"):
        recipe_dataset(DataArguments(dataset_name="eval:mathvision", benchmark_data_dir=benchmark_dir,
                                     dataset_split="testmini2"))
    with pytest.raises(DataError, match="names no benchmark"):
        recipe_dataset(DataArguments(dataset_name="eval:"))
    with pytest.raises(DataError, match="is a benchmark: load it with training.datasets.recipe_dataset"):
        load_training_dataset(DataArguments(dataset_name="eval:mathvision"))


def test_benchmark_data_dir_without_a_benchmark_is_a_problem():
    args = DataArguments(dataset_name="eval:mathvision", benchmark_data_dir="x")
    assert data_setting_problems(args) == []
    args = dataclasses.replace(args, dataset_name="synthetic", eval_dataset_name="eval:geo3k")
    assert data_setting_problems(args) == []
    with pytest.raises(ConfigError, match="benchmark_data_dir is set but no dataset is a benchmark"):
        DataArguments(dataset_name="synthetic", benchmark_data_dir="x")


def test_a_benchmark_as_the_held_out_split(benchmark_dir, cpu_config):
    data_args = DataArguments(eval_dataset_name="eval:geo3k", eval_split="test", benchmark_data_dir=benchmark_dir,
                              instruction="Answer in \\boxed{}.")
    dataset = load_heldout_dataset(data_args, cpu_config(eval_strategy="steps", eval_steps=1))
    assert dataset["label"] == ["48", "2\\sqrt{3}"] and dataset["uid"] == ["0", "1"]
