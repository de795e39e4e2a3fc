"""What the main command trains for a config: baseline vs consistency, end to end.

The orchestrator: it decides what runs in which order, and it is the only
place that trains a missing frozen network. For a consistency config (one
with perceptual losses), in {workdir} (`infra/workdir.py`):
  data/        the prepared data (synthetic Taskonomy unless data.path is set)
  networks/    the frozen perceptual and direct networks, trained first if missing
  baseline/    rgb -> target with the direct loss only, train.baseline_steps + train.steps
  warmstart/   the baseline's export at train.baseline_steps
  consistency/ started from warmstart, train.steps more with the perceptual losses
Both models see the same number of steps and data; the comparison is printed
on held-out buildings (the val split). Any other config (a transfer, the
direct baseline) is trained once in {workdir}. Every stage resumes from its
checkpoints, so a killed run is continued by rerunning the same command.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence

import ml_collections

from xtc_jax.consistency import frozen
from xtc_jax.consistency.config import transfer_config
from xtc_jax.consistency.imagenet import add_imagenet_term
from xtc_jax.consistency.method import train
from xtc_jax.consistency.plan import make_plan
from xtc_jax.data import prepare
from xtc_jax.errors import ConfigError
from xtc_jax.infra import atomic, run_config
from xtc_jax.infra import export as export_lib
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.infra.writers import log as log_line
from xtc_jax.training.loop import check_train_config

STAGES = (workdir_lib.BASELINE, workdir_lib.CONSISTENCY)


def baseline_config(config) -> ml_collections.ConfigDict:
    """The config's supervised network alone: the mae loss, nothing frozen or perceptual."""
    plan = make_plan(config)
    mae, edge = plan.supervised, plan.target_edge
    baseline = copy.deepcopy(config)
    pred, target = list(config.paths[mae.pred]), list(config.paths[mae.target])
    with baseline.unlocked():
        baseline.networks = ml_collections.ConfigDict({edge: config.networks[edge].to_dict()})
        baseline.paths = ml_collections.ConfigDict({"x": pred[:1], "y": target, "n_x": pred})
        baseline.losses = ml_collections.ConfigDict(
            {"mae": dict(kind="mae", pred="n_x", target="y", loss=mae.loss, weight=mae.weight)}
        )
        baseline.freeze = []
        baseline.plots = ["x", "y", "n_x"]
        baseline.selection.k = 0
    return baseline


def resolve(config, workdir: str) -> ml_collections.ConfigDict:
    """A copy of `config` as every command runs it, after the command line's overrides: the
    data cache and networks folder default into `workdir`, and `imagenet_weights` adds its
    perceptual term (`consistency/imagenet.py`)."""
    config = copy.deepcopy(add_imagenet_term(config))
    with config.unlocked():
        config.data.cache_dir = config.data.cache_dir or workdir_lib.data_dir(workdir)
        config.networks_dir = config.networks_dir or workdir_lib.networks_dir(workdir)
    return config


def model_dirs(workdir: str) -> dict[str, str]:
    """Run folders of the experiment's trained models: {"baseline": dir, "consistency": dir}."""
    return {name: workdir_lib.stage(workdir, name) for name in STAGES}


def _frozen_network_config(config, workdir: str, edge: str) -> ml_collections.ConfigDict:
    """The transfer config that trains the frozen network `edge` from ground truth."""
    transfer = transfer_config(f"{edge},{config.preset}")
    transfer.networks[edge] = config.networks[edge]
    transfer.seed = config.seed
    transfer.train.steps = config.transfer_steps
    for field in ("path", "format", "layout", "split_file", "resolution", "synthetic"):
        transfer.data[field] = config.data[field]
    transfer.data.cache_dir = config.data.cache_dir or workdir_lib.data_dir(workdir)
    transfer.data.train_examples = 0  # frozen networks learn from the whole train split
    return transfer


def check_frozen(config, workdir: str, edges: Sequence[str]) -> None:
    """Checks the transfer config of every edge of `edges` that `ensure_networks` would train."""
    for edge in frozen.missing(config, workdir, edges):
        transfer = _frozen_network_config(config, workdir, edge)
        make_plan(transfer)
        check_train_config(transfer.train)


def check(config, workdir: str):
    """Validates every stage's config before the first one runs; returns the config's Plan.

    The frozen networks' transfer configs, the baseline's and the consistency run's are
    all built and checked here, so a mistake in any of them ends the command before data
    is rendered or anything compiles (ConfigError naming the field).
    """
    plan = make_plan(config)
    check_train_config(config.train)
    if config.train.init_from and not os.path.isfile(
        os.path.join(config.train.init_from, export_lib.MODEL_JSON)
    ):
        raise ConfigError(
            f"train.init_from={config.train.init_from!r} is not an exported model (no "
            f"{export_lib.MODEL_JSON}): point it at a run's export folder ({{run}}/export) "
            "or a converted published model, or set it to ''."
        )
    check_frozen(config, workdir, plan.frozen)
    if plan.perceptual:
        make_plan(baseline_config(config))
    return plan


def ensure_networks(config, workdir: str, edges: Sequence[str],
                    log: Callable[[str], None] = log_line) -> None:  # fmt: skip
    """Trains every edge of `edges` whose export is missing from ground truth, with
    `configs/transfer.py`'s config (same architecture, preset and data), into its cache folder."""
    for edge in frozen.missing(config, workdir, edges):
        transfer = _frozen_network_config(config, workdir, edge)
        run_dir = frozen.cache_dir(config, workdir, edge)
        log(f"training frozen network {edge} ({transfer.train.steps} steps) into {run_dir}")
        train(transfer, run_dir, log)


def consistency_stage_config(config, warmstart: str) -> ml_collections.ConfigDict:
    """The consistency stage's config: started from the warm start (unless train.init_from
    names another model), at optimizer.consistency_learning_rate when that is set."""
    config = copy.deepcopy(config)
    with config.unlocked():
        if config.train.baseline_steps:
            config.train.init_from = config.train.init_from or warmstart
        if config.optimizer.get("consistency_learning_rate"):
            config.optimizer.learning_rate = config.optimizer.consistency_learning_rate
    return config


def run(config, workdir: str, log: Callable[[str], None] = log_line) -> dict:
    """Runs the experiment of `config` in `workdir`; returns {"baseline": m, "consistency": m}."""
    plan = check(resolve(config, workdir), workdir)  # every stage's errors before any work
    run_config.save(config, workdir)
    config = resolve(config, workdir)
    prepare.data_location(config.data, workdir)  # the data stage first: every run reads it
    ensure_networks(config, workdir, plan.frozen, log)
    if not plan.perceptual:
        return {"model": train(config, workdir, log)}

    warmstart = workdir_lib.stage(workdir, workdir_lib.WARMSTART)
    stage_dirs = model_dirs(workdir)
    baseline = baseline_config(config)
    if config.train.baseline_steps and not os.path.isdir(warmstart):
        log(f"== baseline warm start: {config.train.baseline_steps} steps")
        with baseline.unlocked():
            baseline.train.steps = config.train.baseline_steps
        result = train(baseline, stage_dirs[workdir_lib.BASELINE], log)
        atomic.copy_tree(result["export"], warmstart)
    log(f"== baseline: {config.train.baseline_steps + config.train.steps} steps in total")
    with baseline.unlocked():
        baseline.train.steps = config.train.baseline_steps + config.train.steps
    baseline_metrics = train(baseline, stage_dirs[workdir_lib.BASELINE], log)

    log(f"== consistency: {config.train.steps} steps from the warm start")
    consistency = consistency_stage_config(config, warmstart)
    consistency_metrics = train(consistency, stage_dirs[workdir_lib.CONSISTENCY], log)
    results = {"baseline": baseline_metrics, "consistency": consistency_metrics}
    log(comparison_table(results))
    return results


def comparison_table(results: dict) -> str:
    """Held-out metrics side by side (lower is better for every metric here)."""
    names = [k for k, v in results["baseline"].items() if isinstance(v, float)]
    lines = ["held-out error (val buildings)       baseline   consistency"]
    for name in names:
        b, c = results["baseline"][name], results["consistency"].get(name, float("nan"))
        lines.append(f"  {name:<32} {b:>9.4f}   {c:>11.4f}")
    return "\n".join(lines)
