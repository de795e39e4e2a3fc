#!/usr/bin/env bash
# Multi-host training under SLURM: one process per GPU, all joined by jax.distributed.
#   sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 launch/slurm.sh configs/normal.py /shared/runs/normal
# jax.distributed.initialize() reads the SLURM environment; every process reads its own shard of
# the data (Grain shards by jax.process_index()), and Orbax writes one checkpoint from all of them.
#SBATCH --job-name=xtc_jax
set -euo pipefail
CONFIG=${1:?config file, e.g. configs/normal.py}
WORKDIR=${2:?shared work directory}
shift 2
srun python -m xtc_jax.main --config="$CONFIG" --workdir="$WORKDIR" --distributed "$@"
