"""The main command: `python -m xtc_jax.main --config=configs/normal.py[:preset] --workdir=DIR`.

Modes:
  train    (default) train the config's experiment end to end (`experiment.py`):
           data, frozen perceptual networks, baseline and consistency models,
           then their held-out errors side by side. Resumes after a kill.
  prepare  make the config's data ready (render the built-in synthetic
           Taskonomy if no data.path is set, build array_record shards),
           stream a few batches through the Grain pipeline, report
           throughput and value ranges per domain, and write a preview grid
           {workdir}/data_preview.png.
  eval     evaluate every model the workdir holds (baseline, consistency,
           the frozen rgb->K networks) on --split (default data.val_split):
           masked L1; normals: mean/median angle, % under 11.25/22.5/30 deg;
           depth: abs rel, RMSE, delta<1.25. Written to {workdir}/eval/.

Config fields are overridden with --config.FIELD=VALUE, e.g.
--config.data.path=/data/taskonomy --config.data.resolution=128.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from xtc_jax.runtime import enable_compilation_cache, quiet_library_logs

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/normal.py or configs/normal.py:cpu."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for data caches, logs and checkpoints.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "prepare", "eval"], "What to run (see module doc)."
)
_SPLIT = flags.DEFINE_string("split", "", "eval: the split to evaluate (default data.val_split).")
_BATCHES = flags.DEFINE_integer("batches", 4, "prepare: batches to stream for the report.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    None,
    "Call jax.distributed.initialize() (one process per host or GPU; it auto-detects SLURM, "
    "Kubernetes and JAX_COORDINATOR_ADDRESS). Default: on when SLURM or JAX_COORDINATOR_ADDRESS "
    "announce several processes.",
)


def maybe_initialize_distributed() -> None:
    """Joins the processes of a multi-host run, so jax.devices() spans every host."""
    import jax

    wanted = _DISTRIBUTED.value
    if wanted is None:
        wanted = bool(os.environ.get("JAX_COORDINATOR_ADDRESS")) or (
            int(os.environ.get("SLURM_NTASKS", "1")) > 1
        )
    if wanted:
        # Our launcher's variables (launch/local_processes.sh); SLURM and Kubernetes are detected.
        count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only runs
        jax.distributed.initialize(
            num_processes=int(count) if count else None,
            process_id=int(index) if index else None,
        )
        print(f"process {jax.process_index()} of {jax.process_count()}, "
              f"{jax.device_count()} devices in all", flush=True)  # fmt: skip


def prepare(config, workdir: str) -> dict:
    """Prepares the data of `config`, streams a few batches and reports on them."""
    import numpy as np

    from xtc_jax.data import pipeline, prepare, preview

    data = config.data
    location = prepare.data_location(data, workdir)
    sources = {split: prepare.open_split(data, location, split)
               for split in (data.train_split, data.val_split)}  # fmt: skip
    report = {"location": location, "splits": {k: len(v) for k, v in sources.items()}}
    print("examples per split: " + ", ".join(f"{k} {v}" for k, v in report["splits"].items()))

    source = sources[data.train_split]
    batches = pipeline.make_dataset(
        source,
        list(data.domains),
        resolution=data.resolution,
        global_batch_size=config.batch_size,
        seed=config.seed,
        augment=data.augment,
        worker_count=data.worker_count,
        on_error=data.on_error,
    )
    iterator = iter(batches)
    first = next(iterator)
    start = time.perf_counter()
    for _ in range(_BATCHES.value):
        next(iterator)
    rate = _BATCHES.value * config.batch_size / (time.perf_counter() - start)
    workers = data.worker_count
    print(f"pipeline: {rate:.1f} examples/s ({workers} workers, batch {config.batch_size})")
    for domain in batches.domains:
        values = first[domain]
        print(
            f"  {domain:<20} {values.shape!s:<20} "
            f"min {np.min(values):8.3f}  mean {np.mean(values):8.3f}  max {np.max(values):8.3f}"
        )
    path = preview.write_grid(os.path.join(workdir, "data_preview.png"), first, batches.domains)
    print(f"preview of the first batch: {path}")
    report.update(examples_per_second=rate, preview=path, skipped=batches.stats.skipped)
    return report


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from xtc_jax.errors import XtcError

    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise app.UsageError("--config and --workdir are required.")
    os.makedirs(workdir, exist_ok=True)
    quiet_library_logs()
    enable_compilation_cache()
    maybe_initialize_distributed()
    try:
        if _MODE.value == "prepare":
            prepare(config, workdir)
        elif _MODE.value == "eval":
            from xtc_jax import eval_mode

            eval_mode.run(config, workdir, _SPLIT.value)
        else:
            from xtc_jax import experiment

            experiment.run(config, workdir)
    except XtcError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
