"""What the main command trains for a multi-task config (`config.method == "mtl"`).

`config.compare` names the models, each trained in {workdir}/{name} on the
same data, and their best checkpoints' test metrics are printed side by side
and written to {workdir}/results.json:
  stl_seg    the segmentation decoder alone (single-task baseline)
  stl_depth  the depth decoder alone
  mtl        both decoders on the shared encoder, no transfer nets
  xtask      the config's model: both decoders and the task-transfer nets
The synthetic config compares all four; the NYUv2 and Cityscapes configs
train "xtask" alone. Every run resumes from its checkpoints.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

from xtc_jax.data.mtl import sources
from xtc_jax.errors import ConfigError
from xtc_jax.infra import atomic
from xtc_jax.infra.writers import log as log_line
from xtc_jax.losses import task_weighting
from xtc_jax.mtl import model as model_lib
from xtc_jax.mtl.method import train
from xtc_jax.training.loop import check_train_config

VARIANTS = {
    "stl_seg": dict(tasks=("seg",), transfer=False),
    "stl_depth": dict(tasks=("depth",), transfer=False),
    "mtl": dict(transfer=False),
    "xtask": {},
}
RESULTS_JSON = "results.json"
COLUMNS = ("miou", "pixel_acc", "miou_legacy", "depth_abs", "depth_rel", "energy")


def variant_config(config, name: str):
    """The config of model `name` of `config.compare`."""
    if name not in VARIANTS:
        raise ConfigError(f"config.compare has {name!r}: use names from {', '.join(VARIANTS)}.")
    variant = copy.deepcopy(config)
    with variant.unlocked():
        for field, value in VARIANTS[name].items():
            variant.model[field] = value
        if len(variant.model.tasks) == 1:  # one task: nothing to balance (the original's
            variant.weighting = "fixed"  # main_stl.py trains the plain loss)
            variant.weighting_options.weights = ()
    return variant


def check(config) -> None:
    """Every run's config errors before any data is read or anything compiles."""
    sources.check(config.data)
    task_weighting.get(config.weighting)
    for name in config.compare:
        variant = variant_config(config, name)
        model_lib.check(variant)
    train = config.train.copy_and_resolve_references()
    with train.unlocked():
        train.steps = train.steps or max(1, train.epochs)
        train.eval_every = train.eval_every or 1
        train.checkpoint_every = train.checkpoint_every or train.eval_every
    check_train_config(train)


def run(config, workdir: str, log: Callable[[str], None] = log_line) -> dict:
    """Trains every model of config.compare; returns {name: {"test": ..., "best_step": ...}}."""
    check(config)
    normals = "normal" in config.model.tasks
    splits = sources.open_splits(config.data, workdir, normals=normals)
    log("multi-task data: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    results = {}
    for name in config.compare:
        log(f"== {name}")
        result = train(variant_config(config, name), os.path.join(workdir, name), splits, log)
        results[name] = {"test": result.test, "validation": result.validation,
                         "best_step": result.best_step, "export": result.export}  # fmt: skip
    atomic.write_json(os.path.join(workdir, RESULTS_JSON), results)
    log(comparison_table(results))
    return results


def comparison_table(results: dict) -> str:
    """Test metrics of each model side by side (mIoU, accuracy in %; higher is better)."""
    names = list(results)
    lines = [f"test split ({'best checkpoint by validation loss'}){'':<4}" +
             "".join(f"{n:>12}" for n in names)]
    for column in COLUMNS:
        values = [results[n]["test"].get(column) for n in names]
        if all(v is None for v in values):
            continue
        cells = "".join(f"{v:>12.4f}" if v is not None else f"{'-':>12}" for v in values)
        lines.append(f"  {column:<46}{cells}")
    return "\n".join(lines)
