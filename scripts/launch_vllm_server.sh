#!/usr/bin/env bash
# The vLLM generation server for a recipe's model, on this node's GPUs (TRL's `trl vllm-serve`, which adds the
# weight-transfer and logprob flags the trainer needs). The trainers reach it over HTTP on VLLM_PORT and push their
# weights after every optimizer step through an NCCL group on the trainer main node's vllm_group_port (51216).
#
#   scripts/launch_vllm_server.sh RECIPE.yaml [extra `trl vllm-serve` flags]
#
# Environment (defaults): MODEL (the recipe's model_name_or_path), VLLM_PORT (8000),
# VLLM_TENSOR_PARALLEL_SIZE (1; it must divide the model's attention heads: 1, 2 or 4 for Qwen2.5-VL-7B),
# VLLM_MAX_MODEL_LEN (8192), VLLM_GPU_MEMORY_UTILIZATION (0.9).
# Data parallelism (`--data_parallel_size` > 1) is not supported by vLLM for dense models such as Qwen2.5-VL.
set -euo pipefail

RECIPE=${1:?usage: scripts/launch_vllm_server.sh RECIPE.yaml [extra trl vllm-serve flags]}
shift

if [[ -z "${MODEL:-}" ]]; then
    MODEL=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["model_name_or_path"])' "$RECIPE")
fi

exec trl vllm-serve \
    --model "$MODEL" \
    --host 0.0.0.0 \
    --port "${VLLM_PORT:-8000}" \
    --tensor_parallel_size "${VLLM_TENSOR_PARALLEL_SIZE:-1}" \
    --max_model_len "${VLLM_MAX_MODEL_LEN:-8192}" \
    --gpu_memory_utilization "${VLLM_GPU_MEMORY_UTILIZATION:-0.9}" \
    "$@"
