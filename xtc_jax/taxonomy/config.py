"""The taxonomy's config: `taxonomy_config(preset)` for configs/taxonomy.py.

Stage I trains one task-specific network per task of `tasks` on the train split;
Stage II trains every transfer on `data.transfer_split` (disjoint buildings) and
scores it on `data.test_split`, where Stages III-IV run the tournament and the
solver (taskonomy.md §4). Presets:
  ""   the paper's shape at 256 px: full-width encoders, 16x16x8 representations,
       thousands of steps (a GPU's work);
  cpu  64 px renders of 10 buildings, quarter-width encoders (4x4x8 representations),
       a few hundred steps per network: every stage in about 25 minutes on 2 CPU cores.
"""

from __future__ import annotations

import ml_collections

from xtc_jax.errors import ConfigError
from xtc_jax.taxonomy import tasks as tasks_lib
from xtc_jax.taxonomy import transfers

PRESETS = ("", "cpu")
OBJECTIVES = ("affinity", "gain", "quality")
#: A task network's seed is config.seed * 100 + its index here (independent of config.tasks).
TASK_SEEDS = tasks_lib.TASKS


def taxonomy_config(preset: str = "") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for configs/taxonomy.py: use (none) or cpu, "
                          "e.g. --config=configs/taxonomy.py:cpu.")  # fmt: skip
    cpu = preset == "cpu"
    config = ml_collections.ConfigDict()
    config.method = "taxonomy"
    config.preset = preset
    config.seed = 0
    config.batch_size = 16 if cpu else 32
    config.tasks = list(tasks_lib.TASKS)  # every task is a source and a target
    config.data = data_config(cpu)
    config.model = ml_collections.ConfigDict(dict(
        width=0.25 if cpu else 1.0,  # the task encoders and decoders
        rep_channels=8,  # the representation: H/16 x W/16 x 8, as the paper's 16x16x8
        readout_width=0.125 if cpu else 0.5,  # the transfer readouts (scratch networks: width)
    ))  # fmt: skip
    config.optimizer = ml_collections.ConfigDict(dict(learning_rate=1e-3 if cpu else 3e-4))
    # Stage I, per task, through training/loop.py (checkpoints, resume, export).
    config.train = ml_collections.ConfigDict(dict(
        steps=500 if cpu else 30_000, eval_every=250 if cpu else 5000,
        checkpoint_every=250 if cpu else 5000, keep_checkpoints=1, best_metric="",
        eval_batches=2 if cpu else 20, log_every_seconds=15.0 if cpu else 60.0,
        on_nonfinite="raise",
    ))  # fmt: skip
    # Stage II: readouts of 1..max_order frozen sources; order k+1 extends the `beam` best
    # sets of order k by one of the `beam` best first-order sources (taskonomy.md §4.1).
    config.transfer = ml_collections.ConfigDict(dict(
        steps=150 if cpu else 5000, batch_size=8 if cpu else 32,
        learning_rate=2e-3 if cpu else 1e-3, max_order=3, beam=4,
        batching="auto",  # "vmap" | "loop" | "auto" (loop on a CPU; transfers.py says why)
    ))  # fmt: skip
    # Stage IV: the supervision BIP (solver.py) for the policy figure, and the budget sweep.
    config.solver = ml_collections.ConfigDict(dict(
        objective="affinity",  # or "gain" (vs scratch) or "quality" (vs the task network)
        budget=3.0, max_order=3, sqrt=False, supervision_cost=1.0, transfer_cost=0.0,
        sweep_objective="quality", random_policies=50,
    ))  # fmt: skip
    return config


def data_config(cpu: bool) -> ml_collections.ConfigDict:
    """The `data` section, with the fields of the other methods' (docs/data.md): the built-in
    synthetic Taskonomy by default (data.path = ""), or a Taskonomy tree or shard folder."""
    return ml_collections.ConfigDict(dict(
        path="", format="shards", layout="auto", split_file="",
        train_split="train", val_split="val", transfer_split="val", test_split="test",
        domains=tasks_lib.domains_needed(tasks_lib.TASKS),
        resolution=64 if cpu else 256, augment=False, worker_count=0 if cpu else 8,
        on_error="skip", cache_dir="",  # "" = $XTC_DATA_DIR or {workdir}/data
        # 10 buildings at :cpu: 6 train (Stage I), 2 val (the transfer set), 2 test (the
        # tournament), 48 views each.
        synthetic=dict(buildings=10 if cpu else 24, views=48 if cpu else 200,
                       size=64 if cpu else 256, seed=0, style="base"),
    ))  # fmt: skip


def check(config) -> None:
    """Config errors before any data is read or anything compiles."""
    for name in config.tasks:
        tasks_lib.get(name)
    if len(config.tasks) < 2:
        raise ConfigError(f"config.tasks={list(config.tasks)}: a taxonomy needs at least 2 tasks.")
    if config.solver.objective not in OBJECTIVES or config.solver.sweep_objective not in OBJECTIVES:
        raise ConfigError(f"config.solver.objective={config.solver.objective!r}, sweep_objective="
                          f"{config.solver.sweep_objective!r}: use {', '.join(OBJECTIVES)}.")
    t = config.transfer
    transfers.resolve_batching(t.batching)
    if t.max_order < 1 or t.beam < 1 or t.steps < 1:
        raise ConfigError(f"config.transfer: max_order={t.max_order}, beam={t.beam}, steps="
                          f"{t.steps}; each must be at least 1.")  # fmt: skip
    if config.data.resolution % 16:
        raise ConfigError(f"config.data.resolution={config.data.resolution}: the task encoders "
                          "need a multiple of 16 (e.g. 64 or 256).")  # fmt: skip
