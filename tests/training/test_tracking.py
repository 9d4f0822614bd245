"""Live tracking: `report_to: trackio` records a run's metrics locally, where trackio's own reader finds them.

trackio is in the `test` extra (`pip install -e .[test]`): this test needs it and does not skip without it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

READ_BACK = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage

print(json.dumps({"runs": SQLiteStorage.get_runs(sys.argv[1]), "logs": SQLiteStorage.get_logs(sys.argv[1], sys.argv[2])},
                 default=str))
"""


def test_report_to_trackio_records_the_runs_metrics_locally(tiny_model_dir, tmp_path):
    import trackio  # noqa: F401  (in the test extra: fails, not skips, without it)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "self_evolve_trl.cli", "recipes/tiny-cpu-collapse.yaml",
         "--model_name_or_path", tiny_model_dir, "--output_dir", str(out), "--max_steps", "3", "--logging_steps", "1",
         "--num_generations", "4", "--per_device_train_batch_size", "8", "--max_completion_length", "6",
         "--synthetic_size", "8", "--eval_max_samples", "2", "--per_device_eval_batch_size", "4",
         "--save_strategy", "no", "--report_to", "trackio", "--project", "first-run", "--run_name", "tiny",
         "--log_completions", "true"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    read = subprocess.run([sys.executable, "-c", READ_BACK, "first-run", "tiny"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    recorded = json.loads(read.stdout)
    assert recorded["runs"] == ["tiny"]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = [e for e in history if "reward" in e]
    tracked = [e for e in recorded["logs"] if "train/reward" in e]
    # trackio's own step also advances on each completions table: the training step is `train/global_step`
    assert [e["train/global_step"] for e in tracked] == [e["step"] for e in logged] == [1, 2, 3]
    for mine, theirs in zip(logged, tracked):  # the same numbers the trainer logged, under trackio's train/ prefix
        assert theirs["train/reward"] == mine["reward"]
        assert theirs["train/self_consistency/majority_ratio"] == mine["self_consistency/majority_ratio"]
    # the completions table reaches the tracker, with the prompt and completion as plain text beside TRL's messages
    tables = [e["completions"] for e in recorded["logs"] if "completions" in e]
    assert [t["_type"] for t in tables] == ["trackio.table"] * 4  # one per logged step, one with the final log
    row = tables[-1]["_value"][0]
    assert row["prompt_text"].startswith("How many") and row["prompt_text"] == row["prompt"][0]["content"][1]["text"]
    assert row["completion_text"] == row["completion"][0]["content"]
    assert {"answer", "advantage", "step"} <= set(row)
