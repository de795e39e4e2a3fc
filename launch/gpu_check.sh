#!/usr/bin/env bash
# The GPU figures in one bounded run (issue 17): on a bare GPU machine with jax (CUDA), flax,
# optax, orbax, chex and torch installed, it installs the rest from wheels in .whl/ (if any),
# then runs, each step under its own time limit, writing JSON and one log under OUT:
#   1. train_step   the paper UNet step and the paper consistency step (k = 3 and k = 7), JAX
#                   fp32/bf16 against torch_original and torch's best, MFU from XLA's cost
#                   analysis against the chip's bf16 peak      -> train_step_k3.json, _k7.json
#   2. memory       configs/normal.py with all 7 perceptual losses: compiled memory per remat
#                   mode, the largest batch, and peak device memory measured  -> memory.json
#   3. mtl_step     the multi-task step against its PyTorch twin              -> mtl_step.json
#   4. render, main_train  the main command on the paper preset for ~200 steps on data
#                   rendered there first (all cores); its comparison table is in the log
#   steps.json      each step's exit status and seconds;  gpu_check.log  everything printed
#
#   launch/gpu_check.sh [--dry-run] [OUT]        (OUT defaults to $OUT, else /tmp/xtc_gpu_check)
#
# --dry-run runs every step at toy size on whatever device there is (a CPU is fine), so
# nothing is discovered on the GPU machine; tests/test_gpu_check.py runs it. The limits
# (seconds) can be changed with LIMIT_TRAIN_STEP, LIMIT_TRAIN_K7, LIMIT_MEMORY, LIMIT_MTL,
# LIMIT_RENDER and LIMIT_MAIN; on the GPU they sum to 8 minutes at most (a dry run allows
# 400 s each). A failed or timed-out step is recorded and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY=1
  shift
fi
OUT_DIR=${1:-${OUT:-/tmp/xtc_gpu_check}}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
LOG="$OUT_DIR/gpu_check.log"
STEPS="$OUT_DIR/steps.json"
: > "$LOG"
echo "[" > "$STEPS"

if compgen -G ".whl/*.whl" > /dev/null; then  # carried wheels: grain, clu, array-record, ...
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tee -a "$LOG"
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
"$PY" -c "import jax; print('devices:', jax.devices())" 2>&1 | tee -a "$LOG"

limit() {  # limit VARIABLE GPU_DEFAULT: the step's limit in seconds
  local name=$1
  if [[ $DRY == 1 ]]; then echo "${!name:-400}"; else echo "${!name:-$2}"; fi
}

FIRST=1
run_step() {  # run_step NAME LIMIT_SECONDS COMMAND...: bounded, logged, recorded in steps.json
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s): $*" | tee -a "$LOG"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | grep --line-buffered -v "^WARNING: Location" | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  local took=$((SECONDS - start))
  echo "== $name: exit $rc after ${took} s" | tee -a "$LOG"
  [[ $FIRST == 1 ]] || echo "," >> "$STEPS"
  FIRST=0
  printf '  {"step": "%s", "rc": %d, "seconds": %d, "limit": %d}\n' "$name" "$rc" "$took" "$limit" >> "$STEPS"
}

if [[ $DRY == 1 ]]; then  # toy sizes: every step and flag exercised in a few minutes on a CPU
  TRAIN_ARGS=(--cases unet_cpu,consistency_cpu --impls jax,torch_original --rounds 1 --steps 1 --batch_cpu 2)
  K7_ARGS=(--cases consistency_cpu --impls jax,torch_original --rounds 1 --steps 1 --batch_cpu 2)
  MEMORY_ARGS=(--case consistency_cpu --chosen reshading --batch 2 --modes none,blocks --largest
               --limit_gb 0.05 --measure)
  MTL_ARGS=(--cases cpu --impls jax,torch_original --rounds 1 --steps 1)
  RENDER=(--buildings 3 --views 8 --size 64 --workers 2)
  MAIN_CONFIG=configs/normal.py:cpu
  MAIN_ARGS=(--config.train.steps=4 --config.train.baseline_steps=2 --config.transfer_steps=2
             --config.train.eval_every=2 --config.train.checkpoint_every=2
             --config.train.eval_batches=1 --config.batch_size=2
             --config.energy.fit_after_training=False)
else
  TRAIN_ARGS=(--cases unet_paper,consistency_paper --rounds 3 --steps 5 --batch_paper 32)
  K7_ARGS=(--cases consistency_paper --impls jax,jax_bf16,torch_original,torch_bf16 --rounds 3
           --steps 5 --batch_paper 32)
  MEMORY_ARGS=(--case consistency_paper --batch 32 --modes none,blocks --largest --largest_from 32
               --measure)
  MTL_ARGS=(--cases cpu,cityscapes --rounds 3 --steps 5)
  RENDER=(--buildings 6 --views 64 --size 256 --workers "$(nproc)")
  MAIN_CONFIG=configs/normal.py
  # ~200 steps in all: 14 frozen networks x 8, the baseline 40 + 40, consistency 40
  MAIN_ARGS=(--config.train.steps=40 --config.train.baseline_steps=40 --config.transfer_steps=8
             --config.train.eval_every=40 --config.train.checkpoint_every=40
             --config.train.eval_batches=2 --config.batch_size=16 --config.data.worker_count=8
             --config.energy.fit_after_training=False)  # the training is what is measured
fi

run_step train_step_k3 "$(limit LIMIT_TRAIN_STEP 110)" \
  "$PY" -m xtc_jax.bench.train_step "${TRAIN_ARGS[@]}" --k 3 --json "$OUT_DIR/train_step_k3.json"
run_step train_step_k7 "$(limit LIMIT_TRAIN_K7 80)" \
  "$PY" -m xtc_jax.bench.train_step "${K7_ARGS[@]}" --k 7 --json "$OUT_DIR/train_step_k7.json"
run_step memory "$(limit LIMIT_MEMORY 150)" \
  "$PY" -m xtc_jax.bench.memory "${MEMORY_ARGS[@]}" --json "$OUT_DIR/memory.json"
run_step mtl_step "$(limit LIMIT_MTL 40)" \
  "$PY" -m xtc_jax.bench.mtl_step "${MTL_ARGS[@]}" --json "$OUT_DIR/mtl_step.json"
DATA=/tmp/xtc_gpu_check_data
WORK=/tmp/xtc_gpu_check_work
rm -rf "$DATA" "$WORK"
SHARDS=/tmp/xtc_gpu_check_shards
rm -rf "$SHARDS"
DOMAINS=rgb,normal,reshading,principal_curvature,depth_zbuffer,edge_occlusion,keypoints2d,keypoints3d
# the tree, then one set of shards for every run of the main command
run_step render "$(limit LIMIT_RENDER 40)" bash -c "'$PY' -m xtc_jax.data.synthetic --out '$DATA' \
  ${RENDER[*]} --quiet && '$PY' -m xtc_jax.data.sources.shards --root '$DATA' --out '$SHARDS' \
  --domains $DOMAINS --workers $(nproc)"
run_step main_train "$(limit LIMIT_MAIN 60)" \
  "$PY" -m xtc_jax.main --config="$MAIN_CONFIG" --workdir="$WORK" --config.data.path="$SHARDS" \
  "${MAIN_ARGS[@]}"
echo "]" >> "$STEPS"
echo "gpu_check: done; results in $OUT_DIR" | tee -a "$LOG"
# exit status: 0 only if every step exited 0
! grep -q '"rc": [1-9]' "$STEPS"
