#!/usr/bin/env bash
# The experiments of docs/experiments.md on the built-in synthetic Taskonomy: every row of the
# table (one change from the :cpu setting each), three seeds, then the evaluation (val + test
# buildings, the style-shifted buildings, consistency energy with blur:5, noise:5 and the style
# shift) and the report (results.md, results.json, curves.png, differences.png in OUT).
#   launch/paper_figures.sh [OUT] [study flags, e.g. --rows default,weight0 --seeds 0]
# Runs resume: rerun the same command after a kill. OUT/commands.sh lists every main command.
set -euo pipefail
OUT=${1:-/tmp/xtc_paper_figures}
shift || true
python -m xtc_jax.consistency.study --out "$OUT" "$@"
