"""Bad input to `python -m self_evolve_trl.eval`: one line naming the problem and the valid choices, exit status 2;
a killed run resumes where it stopped."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tests.eval.eval_fixtures import (
    error_line,
    eval_config,
    fixture_image,
    fixtures,  # noqa: F401  (a fixture)
    load_results,
    read_jsonl,
    write_rows,
)


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the problem and the valid choices, exit status 2


def test_unknown_benchmark_names_the_valid_ones(run):
    result = run([sys.executable, "-m", "self_evolve_trl.eval", "--model", "x", "--benchmarks", "mathvision,mmmu"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: Unknown benchmark 'mmmu'; valid benchmarks: mathvision, mathverse, wemath, logicvista, dynamath, "
        "geo3k, geoqa, text.")


def test_missing_column_names_it_and_the_available_ones(fixtures, tmp_path, capsys, tiny_model_dir):
    import datasets

    broken = tmp_path / "logicvista.parquet"
    datasets.Dataset.from_parquet(fixtures["logicvista"]).remove_columns("answer").to_parquet(str(broken))
    err = error_line(["--model", tiny_model_dir, "--benchmarks", "logicvista", "--data", f"logicvista={broken}",
                  "--output-dir", str(tmp_path / "o")], capsys)
    assert f"LogicVista data {broken} has no column 'answer'; available columns: question, reasoning, image" in err


def test_missing_image_column(fixtures, tmp_path, capsys, tiny_model_dir):
    import datasets

    broken = tmp_path / "wemath.parquet"
    datasets.Dataset.from_parquet(fixtures["wemath"]).remove_columns("image_path").to_parquet(str(broken))
    err = error_line(["--model", tiny_model_dir, "--benchmarks", "wemath", "--data", f"wemath={broken}",
                  "--output-dir", str(tmp_path / "o")], capsys)
    assert "has no image column (one of image_path, image)" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--benchmarks", "wemath", "--data", "wemath=/nonexistent/wemath.parquet"],
         "Local data not found: /nonexistent/wemath.parquet"),
        (["--benchmarks", "wemath", "--metric", "wemath=f1"],
         "Unknown metric 'f1' for wemath; valid metrics: score_strict, score_loose, accuracy."),
        (["--benchmarks", "wemath", "--data", "dynamath=/x"], "--data names 'dynamath', which is not among"),
        (["--benchmarks", "wemath", "--data", "wemath"], "--data takes BENCHMARK=VALUE, got 'wemath'."),
        (["--benchmarks", "wemath", "--samples", "1"], "--samples must be 0 (greedy only) or at least 2, got 1."),
        (["--benchmarks", "wemath", "--repetition-penalty", "0"],
         "--repetition-penalty must be positive (1.0: none), got 0.0."),
        (["--benchmarks", "wemath", "--top-k", "0"], "--top-k must be at least 1 (leave it out for none), got 0."),
        (["--benchmarks", "wemath", "--backend", "sglang"], "argument --backend: invalid choice: 'sglang'"),
    ],
)
def test_bad_options(argv, message, capsys, tmp_path):
    assert message in error_line(["--model", "m", "--output-dir", str(tmp_path), *argv], capsys)


def test_data_dir_must_hold_every_benchmark(fixtures, tmp_path, capsys, tiny_model_dir):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(fixtures["geoqa"], data_dir / "geoqa.parquet")
    err = error_line(["--model", tiny_model_dir, "--benchmarks", "geoqa,logicvista", "--data-dir", str(data_dir),
                  "--output-dir", str(tmp_path / "out")], capsys)
    assert err == (f"error: --data-dir {data_dir} has no copy of logicvista: looked for {data_dir / 'logicvista'} (a "
                   f"folder) and {data_dir / 'logicvista'}{{.parquet,.jsonl,.json,.csv}}; add it, or give it with "
                   "--data logicvista=PATH.")
    assert not (tmp_path / "out").exists()


def test_image_bounds_default_to_the_models_processor(tiny_model_dir, fixtures, tmp_path):
    """A trained checkpoint's processor keeps its recipe's pixel bounds: evaluation resizes images to those (vLLM's
    engine gets them too: tests/eval/test_vllm_eval.py)."""
    from transformers import AutoProcessor

    from self_evolve_trl.eval.runner import evaluate

    model = tmp_path / "checkpoint"
    shutil.copytree(tiny_model_dir, model)
    AutoProcessor.from_pretrained(tiny_model_dir, min_pixels=28 * 28, max_pixels=28 * 28 * 6).save_pretrained(model)
    results = evaluate(eval_config(str(model), fixtures, tmp_path / "out", limit=2))
    assert (results["run"]["min_pixels"], results["run"]["max_pixels"]) == (28 * 28, 28 * 28 * 6)
    assert "min_pixels=784, max_pixels=4704 (the model's processor's unless given)" in results["markdown"]


def test_lora_adapter_without_its_base_model_name(tiny_model_dir, fixtures, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from self_evolve_trl.eval.runner import evaluate

    adapter_dir = tmp_path / "adapter"
    get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir),
                   LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "base_model_name_or_path": None}))
    err = error_line(["--model", str(adapter_dir), "--benchmarks", "geoqa", "--data", f"geoqa={fixtures['geoqa']}",
                  "--output-dir", str(tmp_path / "out")], capsys)
    assert "does not name its base model (base_model_name_or_path); pass --base-model." in err
    results = evaluate(eval_config(str(adapter_dir), fixtures, tmp_path / "out", base_model=tiny_model_dir, limit=1))
    assert results["run"]["base_model"] == tiny_model_dir and results["run"]["adapter"] == str(adapter_dir)


def test_missing_split_file_and_missing_model(fixtures, tmp_path, capsys, tiny_model_dir):
    err = error_line(["--model", tiny_model_dir, "--benchmarks", "mathvision", "--split", "mathvision=sample_variant3",
                  "--data", f"mathvision={fixtures['mathvision']}", "--output-dir", str(tmp_path)], capsys)
    assert "has no file for split sample_variant3" in err
    err = error_line(["--model", str(tmp_path / "no-model"), "--benchmarks", "geoqa", "--data",
                  f"geoqa={fixtures['geoqa']}", "--output-dir", str(tmp_path)], capsys)
    assert "Model path not found" in err


def test_hub_dataset_offline_says_how_to_give_a_local_copy(tmp_path, capsys, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = error_line(["--model", tiny_model_dir, "--benchmarks", "logicvista", "--output-dir", str(tmp_path)], capsys)
    assert "LogicVista: cannot load lscpku/LogicVista split 'test' from the hub" in err
    assert "--data logicvista=PATH" in err


def test_killed_process_resumes_where_it_stopped(tiny_model_dir, tmp_path, run):
    """A real evaluation process killed (SIGKILL) mid-run; the same command then generates only what is missing."""
    import signal
    import subprocess
    import time

    data = tmp_path / "geoqa.parquet"
    n = 24
    write_rows({"images": [[fixture_image(i)] for i in range(n)], "problem": [f"<image>Angle {i}?" for i in range(n)],
            "answer": [str(i) for i in range(n)]}, str(data), {"images": "images"})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "self_evolve_trl.eval", "--model", tiny_model_dir, "--benchmarks", "geoqa",
               "--data", f"geoqa={data}", "--output-dir", str(out), "--max-new-tokens", "8", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    process = subprocess.Popen(command + ["--batch-size", "1"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = out / "samples" / "geoqa.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if cache.exists() and len(cache.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(read_jsonl(cache))
    assert 2 <= finished < n, finished

    result = run(command + ["--batch-size", "8"])  # the batch size is not part of the greedy cache key
    assert result.returncode == 0, result.stderr[-3000:]
    entry = load_results(out)["benchmarks"]["geoqa"]
    assert (entry["generated"], entry["cached"]) == (n - finished, finished)
    assert len(read_jsonl(cache)) == n


