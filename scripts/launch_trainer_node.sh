#!/usr/bin/env bash
# One trainer node of a multi-node run: `accelerate launch` with DeepSpeed ZeRO-3 across NUM_MACHINES nodes of
# GPUS_PER_NODE processes each. Run it on every trainer node (Slurm: one task per node, see
# scripts/slurm/train_multinode.sbatch); NODE_RANK 0 is the main node, which the others reach on MAIN_PORT.
#
#   MAIN_NODE=node-a NUM_MACHINES=2 NODE_RANK=0 scripts/launch_trainer_node.sh RECIPE.yaml [--field value ...]
#
# Environment (defaults): MAIN_NODE (required: host name or IP of node rank 0), NUM_MACHINES (required),
# NODE_RANK ($SLURM_PROCID), GPUS_PER_NODE (8), MAIN_PORT (29500),
# ACCELERATE_CONFIG (accelerate_configs/zero3_multinode.yaml), RESUME (last: continue from the latest complete
# checkpoint in output_dir, or start fresh if there is none, so a requeued job picks up where it stopped).
set -euo pipefail

RECIPE=${1:?usage: scripts/launch_trainer_node.sh RECIPE.yaml [--field value ...]}
shift
: "${MAIN_NODE:?set MAIN_NODE to the host name or IP of trainer node rank 0}"
: "${NUM_MACHINES:?set NUM_MACHINES to the number of trainer nodes}"
NODE_RANK=${NODE_RANK:-${SLURM_PROCID:?set NODE_RANK (0 on the main node)}}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NUM_PROCESSES=$((NUM_MACHINES * GPUS_PER_NODE))

exec accelerate launch \
    --config_file "${ACCELERATE_CONFIG:-accelerate_configs/zero3_multinode.yaml}" \
    --num_machines "$NUM_MACHINES" \
    --num_processes "$NUM_PROCESSES" \
    --machine_rank "$NODE_RANK" \
    --main_process_ip "$MAIN_NODE" \
    --main_process_port "${MAIN_PORT:-29500}" \
    -m self_evolve_trl.cli "$RECIPE" --resume_from_checkpoint "${RESUME:-last}" "$@"
