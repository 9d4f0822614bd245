"""The evaluation command on a text benchmark from a local file (`--benchmarks text --data text=PATH`) with a
text-only model: plain-text prompts, a causal LM, rule-based scoring."""

import json
import sys

import pytest

from self_evolve_trl.eval.benchmarks import get_benchmark
from tests.eval.eval_fixtures import load_results, read_jsonl


def test_text_rows_become_items_from_either_column_set():
    make = get_benchmark("text").make_item
    item = make({"question": "What is 1 + 1?", "answer": "2"}, 0, {})
    assert (item.id, item.question, item.reference, item.answer_type) == ("0", "What is 1 + 1?", "2", "free")
    math500 = make({"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "unique_id": "t/1.json"},
                   3, {})  # MATH-500's columns: the reference is the solution's box
    assert (math500.id, math500.question, math500.reference) == ("t/1.json", "Half of 1?", "\\frac{1}{2}")


def test_eval_command_scores_a_local_text_benchmark(text_scoring_model_dir, tmp_path, run):
    data = tmp_path / "arithmetic.jsonl"
    rows = [{"question": "What is 0.05 + 0.05?", "answer": "0.1"}, {"question": "What is 0.1 + 0.1?", "answer": "0.2"},
            {"question": "What is 1 / 10?", "answer": "\\frac{1}{10}"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    result = run([sys.executable, "-m", "self_evolve_trl.eval", "--model", text_scoring_model_dir, "--benchmarks",
                  "text", "--data", f"text={data}", "--output-dir", str(out), "--max-new-tokens", "8",
                  "--batch-size", "3"])
    assert result.returncode == 0, result.stderr[-3000:]
    # Greedy, the bigram model writes `\\boxed{0.1}` (its digits tie: the lowest token id): right for 0.1 and 1/10
    predictions = read_jsonl(out / "text.predictions.jsonl")
    assert [p["greedy"]["answer"] for p in predictions] == ["0.1"] * 3
    assert [p["greedy"]["correct"] for p in predictions] == [True, False, True]
    assert load_results(out)["benchmarks"]["text"]["modes"]["greedy"]["accuracy"] == pytest.approx(200 / 3)


def test_text_benchmark_needs_a_local_file(text_model_dir, tmp_path, run):
    result = run([sys.executable, "-m", "self_evolve_trl.eval", "--model", text_model_dir, "--benchmarks", "text",
                  "--output-dir", str(tmp_path / "out")])
    assert result.returncode == 2 and "Text is read from a local file only: --data text=PATH." in result.stderr


def test_a_text_benchmark_as_training_rows(tmp_path):
    """Test-time RL on a text benchmark (`dataset_name: eval:text`): the rows are its items, as plain-text prompts."""
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.training.datasets import recipe_dataset

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "test.jsonl").write_text("".join(
        json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i), "unique_id": f"q{i}"}) + "\n"
        for i in range(3)))
    dataset = recipe_dataset(DataArguments(dataset_name="eval:text", benchmark_data_dir=str(tmp_path),
                                           instruction="Answer in \\boxed{}."))
    assert len(dataset) == 3 and dataset[1]["images"] == [] and dataset[1]["uid"] == "q1"
    assert dataset[1]["prompt"] == [{"role": "user", "content": "What is 1 + 1? Answer in \\boxed{}."}]
    assert dataset[1]["label"] == "2"
