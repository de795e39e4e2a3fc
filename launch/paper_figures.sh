#!/usr/bin/env bash
# The paper's figures on the built-in synthetic Taskonomy (docs/energy.md):
# trains the :cpu experiment (baseline vs consistency), evaluates both, then scores the
# val buildings by consistency energy: Pearson/Spearman r of energy vs error and the
# ROC-AUC of telling clean from corrupted images. Usage: launch/paper_figures.sh [WORKDIR]
# Extra arguments go to every command, e.g. --config.data.synthetic.views=96.
set -euo pipefail
WORKDIR=${1:-/tmp/xtc_paper_figures}
shift || true
CONFIG=${CONFIG:-configs/normal.py:cpu}
python -m xtc_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
python -m xtc_jax.main --mode=eval --config="$CONFIG" --workdir="$WORKDIR" "$@"
python -m xtc_jax.energy --config="$CONFIG" --workdir="$WORKDIR" \
  --corrupt=blur,noise,jpeg,contrast:3 "$@"
python -m xtc_jax.energy --config="$CONFIG" --workdir="$WORKDIR" --model=baseline "$@"
