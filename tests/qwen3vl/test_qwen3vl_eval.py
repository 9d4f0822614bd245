"""The evaluation command runs the tiny Qwen3-VL by name (`--model tiny:qwen3-vl`): its processor's bounds and
32-pixel image unit, Qwen3-VL's chat template, greedy answers scored."""

import json
import sys

from tests.eval.eval_fixtures import fixture_image, load_results, read_jsonl, write_rows


def test_eval_command_runs_the_tiny_qwen3vl(tmp_path, run):
    data = str(tmp_path / "geoqa.parquet")  # GeoQA's hub layout (tests/eval/eval_fixtures.py)
    write_rows({"images": [[fixture_image(1)], [fixture_image(2)]], "problem": ["Angle x?", "Length AB?"],
                "answer": ["140°", "5"]}, data, {"images": "images"})
    out = tmp_path / "out"
    result = run([sys.executable, "-m", "self_evolve_trl.eval", "--model", "tiny:qwen3-vl", "--benchmarks", "geoqa",
                  "--data", f"geoqa={data}", "--output-dir", str(out), "--max-new-tokens", "4", "--batch-size", "2"],
                 env={"SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    model_dir = tmp_path / "cache" / "tiny-qwen3-vl"
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == "qwen3_vl"
    results = load_results(out)
    assert (results["run"]["min_pixels"], results["run"]["max_pixels"], results["run"]["image_unit"]) == (
        4096, 65536, 32)  # the tiny Qwen3-VL processor's bounds: 4 to 64 image tokens of 32x32 pixels
    assert results["benchmarks"]["geoqa"]["modes"]["greedy"]["accuracy"] == 0.0  # random weights, greedy
    predictions = read_jsonl(out / "geoqa.predictions.jsonl")
    assert [(p["id"], p["reference"], p["greedy"]["correct"]) for p in predictions] == [("0", "140°", False),
                                                                                         ("1", "5", False)]
    assert "sides multiple of 32" in (out / "results.md").read_text()
