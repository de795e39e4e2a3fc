#!/usr/bin/env bash
# Multi-host training on Kubernetes: an Indexed Job of N pods (one process each) and the headless
# Service that names pod 0 the coordinator, all joined by jax.distributed (xtc_jax/infra/kubernetes.py).
#   launch/kubernetes.sh 4 registry/xtc_jax:latest configs/normal.py /shared/runs/normal \
#     --claim=runs --gpus_per_process=8
# Flags after the work directory go to the renderer (--name, --port, --gpus_per_process, --claim,
# --mount) or, the others, to xtc_jax.main. DRY_RUN=1 prints the manifest instead of applying it.
set -euo pipefail
N=${1:?number of processes (pods)}
IMAGE=${2:?container image holding this repository}
CONFIG=${3:?config file, e.g. configs/normal.py}
WORKDIR=${4:?work directory on a volume every pod mounts}
shift 4
manifest=$(python -m xtc_jax.infra.kubernetes --processes="$N" --image="$IMAGE" \
  --config="$CONFIG" --workdir="$WORKDIR" "$@")
if [[ -n "${DRY_RUN:-}" ]]; then echo "$manifest"; else echo "$manifest" | kubectl apply -f -; fi
