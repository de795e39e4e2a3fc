#!/usr/bin/env bash
# N processes on this machine, as a multi-host run would have (CPU devices, for testing scale-out):
#   launch/local_processes.sh 2 configs/transfer.py:rgb->normal,cpu /tmp/xtc_2proc
set -euo pipefail
N=${1:?number of processes}
CONFIG=${2:?config}
WORKDIR=${3:?work directory}
shift 3
PORT=${PORT:-12355}
pids=()
for ((i = 0; i < N; i++)); do
  JAX_COORDINATOR_ADDRESS=127.0.0.1:$PORT JAX_NUM_PROCESSES=$N JAX_PROCESS_ID=$i \
    python -m xtc_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
