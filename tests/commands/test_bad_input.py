"""Bad input: each a one-line `error: ...`, exit status 2, no traceback, and nothing left in the output directory."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from self_evolve_trl.cli import main


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def image_rows(folder: Path, n: int, broken: set[int]) -> list[dict]:
    Image.new("RGB", (56, 56), "blue").save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG but not really")
    return [{"problem": f"How many squares? {i}", "image": "broken.png" if i in broken else "ok.png", "answer": "1"}
            for i in range(n)]


def recipe_for(tmp_path: Path, model: str, **fields) -> str:
    recipe = {
        "model_name_or_path": model, "dataset_name": "synthetic", "synthetic_size": 8, "instruction": "Answer.",
        "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 4, "max_steps": 1,
        "use_cpu": True, "bf16": False, "report_to": "none", "save_strategy": "no", "output_dir": str(tmp_path / "out"),
        **fields,
    }
    path = tmp_path / f"recipe-{len(list(tmp_path.glob('recipe-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def cases(tmp_path: Path, model: str) -> dict[str, tuple[list[str], str]]:
    """name -> (command-line arguments, the start of the error message)."""
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text(f"model_name_or_path: {model}\nreward_funcs: [soft_frequency, format\noutput_dir: {tmp_path / 'out'}\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    corrupt = write_rows(tmp_path / "corrupt.jsonl", image_rows(tmp_path, 4, broken={0}))
    cut_off = truncated_model(model, tmp_path / "cut-off-model")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {
        "malformed YAML": ([str(malformed)], f"Recipe {malformed} is not valid YAML at line 3, column 11: expected ',' or ']'"),
        "wrong type in the recipe": ([recipe_for(tmp_path, model, max_steps=[1])], "Recipe "),
        "wrong type on the command line": ([recipe_for(tmp_path, model), "--learning_rate", "fast"],
                                           "argument --learning_rate/--learning-rate: invalid float value: 'fast'"),
        "empty dataset": ([recipe_for(tmp_path, model, dataset_name=str(empty))], f"Dataset {empty} is empty: no rows to train on."),
        "corrupt image": ([recipe_for(tmp_path, model, dataset_name=corrupt)], "dataset row 0: Cannot read image "),
        "missing model path": ([recipe_for(tmp_path, str(tmp_path / "no-model"))], f"Model path not found: {tmp_path / 'no-model'}"),
        "unknown field": ([recipe_for(tmp_path, model, lerning_rate=0.1)], "Recipe "),
        "unknown flag": ([recipe_for(tmp_path, model), "--lerning_rate", "0.1"], "Unknown command-line flag(s): --lerning_rate."),
        "unknown reward": ([recipe_for(tmp_path, model, reward_funcs=["majority"])], "Unknown reward 'majority'. Valid rewards:"),
        "resume from a missing checkpoint": ([recipe_for(tmp_path, model, resume_from_checkpoint=str(tmp_path / "ckpt"))],
                                             "resume_from_checkpoint: checkpoint folder not found"),
        "empty synthetic dataset": ([recipe_for(tmp_path, model, synthetic_size=0)], "synthetic_size must be at least 1, got 0."),
        "bad reward kwarg value": ([recipe_for(tmp_path, model, reward_funcs=["majority_vote"],
                                               reward_kwargs={"majority_vote": {"match": "fuzzy"}})],
                                   "Reward 'majority_vote': match='fuzzy' is not one of: exact, normalized, math."),
        "corrupt model weights": ([recipe_for(tmp_path, cut_off)],
                                  f"Cannot load model '{cut_off}': Error while deserializing header"),
        "output_dir is a file": ([recipe_for(tmp_path, model, output_dir=str(a_file))],
                                 f"output_dir: {a_file} is a file, not a folder. Fix: choose another output_dir."),
    }


def truncated_model(model: str, folder: Path) -> str:
    """A copy of the model whose weight file was cut off half-way (an interrupted download)."""
    import shutil

    shutil.copytree(model, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return str(folder)


NAMES = ["malformed YAML", "wrong type in the recipe", "wrong type on the command line", "empty dataset", "corrupt image",
         "missing model path", "unknown field", "unknown flag", "unknown reward", "resume from a missing checkpoint",
         "empty synthetic dataset", "bad reward kwarg value", "corrupt model weights", "output_dir is a file"]
DETAILS = {
    "wrong type in the recipe": "max_steps: expected an integer, got [1]. Fix: write `max_steps:` as an integer.",
    "unknown field": "Unknown recipe field(s): lerning_rate. (lerning_rate: did you mean `learning_rate`?)",
}


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_clear_line(name, tmp_path, tiny_model_dir, capsys):
    all_cases = cases(tmp_path, tiny_model_dir)
    assert list(all_cases) == NAMES
    argv, expected = all_cases[name]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: " + expected), line
    assert DETAILS.get(name, "") in line and "Traceback" not in err
    assert not (tmp_path / "out").exists() and (tmp_path / "a-file").read_text() == "not a folder"


def test_failed_start_after_the_trainer_made_the_output_dir_leaves_it_empty(tmp_path, tiny_model_dir, capsys):
    """Rows beyond the first few are read in the first step, after the trainer has created output_dir: 12 of 20
    rows unreadable is more than max_bad_row_share (0.05), so the run stops before its first step."""
    data = write_rows(tmp_path / "late.jsonl", image_rows(tmp_path, 20, broken=set(range(8, 20))))
    recipe = recipe_for(tmp_path, tiny_model_dir, dataset_name=data, per_device_train_batch_size=36)  # 18 of 20 prompts
    assert main([recipe]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: 12 of the 20 dataset rows could not be read, more than max_bad_row_share 0.05 "
                           "(rows 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, ... (12 in all); row ") and "Traceback" not in err
    assert line.endswith("stopped while generating step 1; no training step had completed, so there was nothing to save.")
    assert not (tmp_path / "out").exists()


def test_the_process_itself(tmp_path, tiny_model_dir, run, python):
    """The real command: exit status 2 and one line on stderr after the usual start-up output, no traceback."""
    result = run([python, "-m", "self_evolve_trl.cli", recipe_for(tmp_path, tiny_model_dir, max_steps=[1])], timeout=300)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: Recipe ") and "max_steps: expected an integer" in line
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
