"""The main command: `python -m xtc_jax.main --config=configs/normal.py[:preset] --workdir=DIR`.

Modes:
  train    (default) train the config's experiment end to end. Consistency
           configs (`consistency/experiment.py`): data, frozen perceptual
           networks, baseline and consistency models, then their held-out
           errors side by side. Multi-task configs (configs/mtl_*.py,
           `mtl/experiment.py`): the single-task, multi-task and xtask models,
           their test metrics side by side. The taxonomy config
           (configs/taxonomy.py, `taxonomy/experiment.py`, also run by
           `python -m xtc_jax.taxonomy`): task networks, transfers, the
           tournament and the supervision BIP. Resumes after a kill; SIGTERM
           saves a checkpoint and exits 0.
  prepare  make the config's data ready (render the built-in synthetic
           Taskonomy if no data.path is set, build array_record shards),
           stream a few batches through the Grain pipeline, report
           throughput and value ranges per domain, and write a preview grid
           {workdir}/data_preview.png (`data/prepare.py`).
  eval     evaluate every model the workdir holds (baseline, consistency,
           the frozen rgb->K networks) on --split (default data.val_split):
           masked L1; normals: mean/median angle, % under 11.25/22.5/30 deg;
           depth: abs rel, RMSE, delta<1.25. Written to {workdir}/eval/.
           Multi-task configs: every model of config.compare on --split
           (default test), `mtl/commands.py`. The taxonomy config: its tables
           and figures again from the saved transfers.

Config fields are overridden with --config.FIELD=VALUE, e.g.
--config.data.path=/data/taskonomy --config.data.resolution=128.
Kept short on purpose: flags, distributed start-up and the modes' registry.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from xtc_jax.infra import cli

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
    "Join a multi-process run with jax.distributed (one process per host or GPU). Default: on "
    "when SLURM, JAX_COORDINATOR_ADDRESS or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX with "
    "JAX_NUM_PROCESSES > 1) announce several processes. A lost process ends the others after "
    "$XTC_PEER_TIMEOUT_SECONDS (default 120).",
)


#: What each mode runs for each method (config.method; the consistency configs have none):
#: "module:function", called as function(config, workdir, option).
METHODS = {
    "consistency": {"train": "xtc_jax.energy.after_training:run",
                    "prepare": "xtc_jax.data.prepare:report",
                    "eval": "xtc_jax.consistency.evaluate_exports:run"},
    "mtl": {"train": "xtc_jax.mtl.experiment:run",
            "prepare": "xtc_jax.mtl.commands:prepare",
            "eval": "xtc_jax.mtl.commands:evaluate"},
    "taxonomy": {"train": "xtc_jax.taxonomy.experiment:run",
                 "prepare": "xtc_jax.data.prepare:report",
                 "eval": "xtc_jax.taxonomy.experiment:rebuild"},
}  # fmt: skip


def _run_mode(mode: str, config, workdir: str, *options) -> None:
    import importlib

    method = config.get("method", "consistency")
    if method not in METHODS:
        cli.fail(f"config.method={method!r}: use one of {', '.join(METHODS)}.")
    module, function = METHODS[method][mode].split(":")
    getattr(importlib.import_module(module), function)(config, workdir, *options)


def _train(config, workdir: str) -> None:
    _run_mode("train", config, workdir)


def _prepare(config, workdir: str) -> None:
    _run_mode("prepare", config, workdir, _BATCHES.value)


def _eval(config, workdir: str) -> None:
    _run_mode("eval", config, workdir, _SPLIT.value)


MODES = {"train": _train, "prepare": _prepare, "eval": _eval}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value; "
                 "--help lists them).")
    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        cli.fail("--config and --workdir are required (--help lists every flag).")
    from jax import errors as jax_errors

    from xtc_jax.data import prepare
    from xtc_jax.errors import XtcError
    from xtc_jax.infra import distributed, runtime
    from xtc_jax.training.preemption import Preempted

    try:
        prepare.check_room(config.data, workdir)  # before anything is rendered or compiled
    except XtcError as error:
        cli.fail(str(error))
    runtime.quiet_library_logs()
    runtime.enable_compilation_cache()
    if distributed.wanted(_DISTRIBUTED.value):
        distributed.initialize()
    try:
        MODES[_MODE.value](config, workdir)
        distributed.finish()
    except Preempted:
        distributed.finish()  # every process stopped at the same step
        sys.exit(0)  # the loop saved a checkpoint and said so; rerun to resume
    except jax_errors.JaxRuntimeError as error:
        if not distributed.wanted(_DISTRIBUTED.value):
            raise
        from xtc_jax.infra import watchdog

        watchdog.end_after_failed_collective(error)  # a peer died; never returns
    except XtcError as error:
        cli.fail(str(error))


if __name__ == "__main__":
    cli.run(main)
