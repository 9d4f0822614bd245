#!/usr/bin/env bash
# The checks that need a GPU, in one run of at most about 8 minutes on one GPU, with tiny models built offline
# (nothing is downloaded). Prints a pass/fail table; each check's log is in $LOG_DIR.
#
#   bash scripts/gpu_check.sh [LOG_DIR]       # default: gpu-check-logs
#
# Needs an environment with this package, a CUDA build of vLLM 0.31 (`pip install -e ".[vllm,deepspeed]"`) and one
# GPU. The checks:
#   server-nccl   vLLM server mode with TRL's own NCCL weight sync (server and trainer share the one GPU)
#   server-disk   vLLM server mode with `vllm_weight_sync: disk`
#   colocate      vLLM colocate mode with LoRA (TRL's own sync on a GPU)
#   zero3         DeepSpeed ZeRO-3 on one GPU, transformers generation
#   eval-vllm     `python -m self_evolve_trl.eval --backend vllm` on the tiny model and local fixture data
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
LOG_DIR=${1:-gpu-check-logs}
mkdir -p "$LOG_DIR"
WORK=$(mktemp -d)
PORT=${GPU_CHECK_PORT:-8765}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
declare -a NAMES RESULTS SECONDS_TAKEN

run_check() {  # run_check NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2 start status
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" >"$LOG_DIR/$name.log" 2>&1
    status=$?
    NAMES+=("$name")
    SECONDS_TAKEN+=("$(($(date +%s) - start))")
    if [ "$status" -eq 0 ]; then RESULTS+=("PASS"); else RESULTS+=("FAIL ($status)"); fi
}

MODEL=$(python -c "from self_evolve_trl.data.tiny import build_tiny_qwen25vl; print(build_tiny_qwen25vl('$WORK/tiny', preset='vllm'))")

write_recipe() {  # write_recipe FILE KEY: VALUE...
    local file=$1
    shift
    {
        echo "model_name_or_path: $MODEL"
        echo "dataset_name: synthetic"
        echo "synthetic_size: 16"
        printf '%s\n' 'instruction: "Answer in \\boxed{}."'
        echo "reward_funcs: [soft_frequency]"
        echo "advantage: lse"
        echo "answer_extractor: last_number"
        echo "num_generations: 4"
        echo "per_device_train_batch_size: 4"
        echo "max_completion_length: 32"
        echo "learning_rate: 1.0e-3"
        echo "max_steps: 3"
        echo "logging_steps: 1"
        echo "save_strategy: 'no'"
        echo "bf16: true"
        echo "gradient_checkpointing: false"
        echo "report_to: none"
        echo "print_summary: false"
        for line in "$@"; do echo "$line"; done
    } >"$file"
}

start_server() {
    python -m self_evolve_trl.vllm_serve --model "$MODEL" --host 127.0.0.1 --port "$PORT" \
        --gpu_memory_utilization 0.25 --max_model_len 2048 --enforce_eager true >"$LOG_DIR/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 120); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
        sleep 1
    done
    return 1
}

if start_server; then
    write_recipe "$WORK/server-nccl.yaml" "use_vllm: true" "vllm_mode: server" "vllm_server_host: 127.0.0.1" \
        "vllm_server_port: $PORT" "vllm_weight_sync: nccl" "output_dir: $WORK/out-server-nccl"
    run_check server-nccl 150 python -m self_evolve_trl.cli "$WORK/server-nccl.yaml"
    write_recipe "$WORK/server-disk.yaml" "use_vllm: true" "vllm_mode: server" "vllm_server_host: 127.0.0.1" \
        "vllm_server_port: $PORT" "vllm_weight_sync: disk" "output_dir: $WORK/out-server-disk"
    run_check server-disk 150 python -m self_evolve_trl.cli "$WORK/server-disk.yaml"
else
    NAMES+=(server-nccl server-disk); RESULTS+=("FAIL (server)" "FAIL (server)"); SECONDS_TAKEN+=(- -)
fi
kill "${SERVER:-0}" 2>/dev/null; wait "${SERVER:-0}" 2>/dev/null

write_recipe "$WORK/colocate.yaml" "use_vllm: true" "vllm_mode: colocate" "vllm_gpu_memory_utilization: 0.3" \
    "use_peft: true" "lora_r: 8" "lora_target_modules: [q_proj, v_proj]" "output_dir: $WORK/out-colocate"
run_check colocate 150 python -m self_evolve_trl.cli "$WORK/colocate.yaml"

write_recipe "$WORK/zero3.yaml" "output_dir: $WORK/out-zero3"
run_check zero3 150 accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 1 \
    -m self_evolve_trl.cli "$WORK/zero3.yaml"

# the test suite's local fixture of geo3k (the real columns, a few rows)
GEO3K=$(python -c "import sys; sys.path.insert(0, 'tests/eval'); from eval_fixtures import write_benchmark_fixtures as w; \
print(w('$WORK/benchmarks')['geo3k'])")
run_check eval-vllm 120 python -m self_evolve_trl.eval --model "$MODEL" --backend vllm --dtype float32 \
    --benchmarks geo3k --data "geo3k=$GEO3K" --limit 4 --output-dir "$WORK/eval"

printf '\n| check | result | seconds |\n|---|---|---|\n'
for i in "${!NAMES[@]}"; do
    printf '| %s | %s | %s |\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${SECONDS_TAKEN[$i]}"
done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
python -c "import torch, vllm, trl; print('torch', torch.__version__, '| vllm', vllm.__version__, '| trl', trl.__version__)" 2>/dev/null
