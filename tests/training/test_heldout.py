"""The held-out eval split: which data, and clear errors for settings that cannot work."""

import pytest

from self_evolve_trl.data.arguments import DataArguments

from self_evolve_trl.training.config import ConfigError, SelfEvolveConfig
from self_evolve_trl.data import DataError
from self_evolve_trl.training.heldout import load_heldout_dataset


def config(tmp_path, **kwargs):
    return SelfEvolveConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", num_generations=4,
                            per_device_train_batch_size=4, per_device_eval_batch_size=4, **kwargs)


def test_no_eval_split_no_eval(tmp_path):
    assert load_heldout_dataset(DataArguments(), config(tmp_path)) is None


def test_synthetic_eval_split_is_drawn_with_another_seed(tmp_path):
    data_args = DataArguments(synthetic_size=6, eval_dataset_name="synthetic", eval_max_samples=3)
    dataset = load_heldout_dataset(data_args, config(tmp_path, eval_strategy="steps", eval_steps=5))
    assert len(dataset) == 3
    assert dataset["uid"] == ["count-1-0", "count-1-1", "count-1-2"]
    assert all(label for label in dataset["label"])


def test_local_eval_file_with_the_training_columns(tmp_path):
    import datasets

    from self_evolve_trl.data.synthetic import make_synthetic_rows

    path = tmp_path / "test.parquet"
    datasets.Dataset.from_list(make_synthetic_rows(4, seed=7)).to_parquet(str(path))
    data_args = DataArguments(eval_dataset_name=str(path), question_column="question")
    dataset = load_heldout_dataset(data_args, config(tmp_path, eval_strategy="steps"))
    assert len(dataset) == 4 and dataset["label"] == [r["answer"] for r in make_synthetic_rows(4, seed=7)]
    assert dataset[0]["images"][0].size == (56, 56)

    no_answers = tmp_path / "unlabelled.parquet"
    datasets.Dataset.from_list(make_synthetic_rows(2, seed=7)).remove_columns("answer").to_parquet(str(no_answers))
    with pytest.raises(DataError, match="has no reference answers"):
        load_heldout_dataset(DataArguments(eval_dataset_name=str(no_answers), question_column="question"),
                             config(tmp_path, eval_strategy="steps"))


def test_eval_strategy_and_eval_split_go_together(tmp_path):
    with pytest.raises(ConfigError, match="eval_strategy is 'steps' but eval_dataset_name is not set"):
        load_heldout_dataset(DataArguments(), config(tmp_path, eval_strategy="steps"))
    with pytest.raises(ConfigError, match="eval_dataset_name is 'synthetic' but eval_strategy is 'no'"):
        load_heldout_dataset(DataArguments(eval_dataset_name="synthetic"), config(tmp_path))


def test_cli_prints_one_line(tmp_path, capsys):
    from self_evolve_trl.cli import main

    code = main(["recipes/tiny-cpu-csrs.yaml", "--output_dir", str(tmp_path), "--eval_strategy", "steps",
                 "--num_generations", "4", "--per_device_eval_batch_size", "4"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: eval_strategy is 'steps' but eval_dataset_name is not set") and "\n" not in err


def test_held_out_scoring_is_free_form_even_for_choice_letters():
    """As the README says next to eval_strategy: letters are compared as free-form answers, not by choice rules."""
    from self_evolve_trl.training.heldout import eval_command_label_metrics

    group = ["\\boxed{(B)}", "The answer is b.", "\\boxed{3}", "\\boxed{B. 3}"]  # option B is "3"
    assert eval_command_label_metrics(group, ["B"], 4) == {
        "labels/rollout_accuracy": [0.5], "labels/maj_at_g": [1.0], "labels/pass_at_g": [1.0],
    }
