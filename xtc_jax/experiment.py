"""What the main command trains for a config: baseline vs consistency, end to end.

For a consistency config (one with perceptual losses), in {workdir}:
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
import shutil
from collections.abc import Callable

import jax
import ml_collections

from xtc_jax.data import prepare
from xtc_jax.graph import path_edges
from xtc_jax.step import loss_terms
from xtc_jax.train import train_and_evaluate


def _log(message: str) -> None:
    """Run log lines, from process 0 only (every process runs the same loop)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def baseline_config(config) -> ml_collections.ConfigDict:
    """The config's supervised network alone: the mae loss, nothing frozen or perceptual."""
    terms = loss_terms(config)
    mae = next(t for t in terms.values() if t.kind == "mae")
    baseline = copy.deepcopy(config)
    pred, target = list(config.paths[mae.pred]), list(config.paths[mae.target])
    edge = path_edges(pred)[-1]
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


def _copy_atomic(src: str, dst: str) -> None:
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.replace(tmp, dst)


def resolve_dirs(config, workdir: str) -> ml_collections.ConfigDict:
    """A copy of `config` whose data cache and networks folder default into `workdir`."""
    config = copy.deepcopy(config)
    with config.unlocked():
        config.data.cache_dir = config.data.cache_dir or prepare.default_cache_dir(workdir)
        config.networks_dir = config.networks_dir or os.path.join(workdir, "networks")
    return config


def model_dirs(workdir: str) -> dict[str, str]:
    """Run folders of the experiment's trained models: {"baseline": dir, "consistency": dir}."""
    return {name: os.path.join(workdir, name) for name in ("baseline", "consistency")}


def run(config, workdir: str, log: Callable[[str], None] = _log) -> dict:
    """Runs the experiment of `config` in `workdir`; returns {"baseline": m, "consistency": m}."""
    config = resolve_dirs(config, workdir)
    if not any(t.kind == "percep" for t in loss_terms(config).values()):
        return {"model": train_and_evaluate(config, workdir, log)}

    warmstart = os.path.join(workdir, "warmstart")
    baseline = baseline_config(config)
    if config.train.baseline_steps and not os.path.isdir(warmstart):
        log(f"== baseline warm start: {config.train.baseline_steps} steps")
        with baseline.unlocked():
            baseline.train.steps = config.train.baseline_steps
        result = train_and_evaluate(baseline, model_dirs(workdir)["baseline"], log)
        _copy_atomic(result["export"], warmstart)
    log(f"== baseline: {config.train.baseline_steps + config.train.steps} steps in total")
    with baseline.unlocked():
        baseline.train.steps = config.train.baseline_steps + config.train.steps
    baseline_metrics = train_and_evaluate(baseline, model_dirs(workdir)["baseline"], log)

    log(f"== consistency: {config.train.steps} steps from the warm start")
    with config.unlocked():
        if config.train.baseline_steps:
            config.train.init_from = config.train.init_from or warmstart
    consistency_metrics = train_and_evaluate(config, model_dirs(workdir)["consistency"], log)
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
