"""The special model names `tiny:<preset>` and the cache folder they are built into.

A recipe (or the evaluation command, or the vLLM server) may name `tiny:qwen2.5-vl` (the random tiny Qwen2.5-VL of
`tiny_model.py`), `tiny:vllm` (its preset with vLLM's head size), `tiny:qwen2.5-vl-taught` (the partly taught base
of `tiny_base.py`) or `tiny:qwen2-text` (the text-only Qwen2 of `tiny_text.py`); `resolve_tiny_model` builds it
once into `cache_dir()` and returns the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .tiny_base import build_taught_tiny
from .tiny_model import PRESETS, build_tiny_qwen25vl
from .tiny_qwen3vl import build_tiny_qwen3vl
from .tiny_text import build_tiny_qwen2_text

TINY_MODEL_PREFIX = "tiny:"
TAUGHT_NAME = "qwen2.5-vl-taught"  # the partly taught base of the embedded default recipe
TEXT_NAME = "qwen2-text"  # the text-only causal LM
QWEN3_VL_NAME = "qwen3-vl"  # the tiny Qwen3-VL
QWEN3_VL_VLLM_NAME = "qwen3-vl-vllm"  # the tiny Qwen3-VL with vLLM's head size


def cache_dir() -> str:
    """Where `tiny:` models (and other built artefacts) are cached: `$SELF_EVOLVE_TRL_CACHE`, else
    `~/.cache/self_evolve_trl`."""
    return os.environ.get("SELF_EVOLVE_TRL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "self_evolve_trl"))


def resolve_tiny_model(name_or_path: str, cache_dir: str | os.PathLike) -> str:
    """Turn the special name `tiny:<preset>` (e.g. `tiny:qwen2.5-vl`, `tiny:vllm`) into a built model directory;
    `tiny:qwen2.5-vl-taught` is the tiny model after a short supervised warm-up (`self_evolve_trl.data.tiny_base`),
    `tiny:qwen2-text` a text-only Qwen2 causal LM (`self_evolve_trl.data.tiny_text`), `tiny:qwen3-vl` a tiny
    Qwen3-VL (`self_evolve_trl.data.tiny_qwen3vl`), `tiny:qwen3-vl-vllm` the same with vLLM's head size.

    Any other name or path is returned unchanged.
    """
    if not name_or_path.startswith(TINY_MODEL_PREFIX):
        return name_or_path
    preset = name_or_path[len(TINY_MODEL_PREFIX):]
    if preset == TAUGHT_NAME:
        return build_taught_tiny(Path(cache_dir) / "tiny-qwen2.5-vl-taught")
    if preset == TEXT_NAME:
        return build_tiny_qwen2_text(Path(cache_dir) / "tiny-qwen2-text")
    if preset in (QWEN3_VL_NAME, QWEN3_VL_VLLM_NAME):
        size = "vllm" if preset == QWEN3_VL_VLLM_NAME else "tiny"
        return build_tiny_qwen3vl(Path(cache_dir) / f"tiny-{preset}", preset=size)
    preset = "tiny" if preset in ("", "qwen2.5-vl", "tiny") else preset
    if preset not in PRESETS:
        valid = ", ".join([f"{TINY_MODEL_PREFIX}qwen2.5-vl"] + [f"{TINY_MODEL_PREFIX}{p}" for p in PRESETS if p != "tiny"]
                          + [f"{TINY_MODEL_PREFIX}{name}" for name in (TAUGHT_NAME, TEXT_NAME, QWEN3_VL_NAME,
                                                                   QWEN3_VL_VLLM_NAME)])
        raise ValueError(f"Unknown tiny model {name_or_path!r}; valid tiny models: {valid}.")
    return build_tiny_qwen25vl(Path(cache_dir) / f"tiny-qwen2.5-vl-{preset}", preset=preset)
