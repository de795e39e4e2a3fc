"""The main command's prepare and eval modes for multi-task configs.

- prepare: opens the train, validation and test splits (rendering the built-in
  data on first use), streams `batches` augmented training batches and reports
  the split sizes, the batch shapes, value ranges and label histogram.
- eval: evaluates every model of config.compare that the workdir holds
  (`{workdir}/{name}/export`, the best checkpoint) on --split (train, val or
  test; default test) and writes `{workdir}/eval/{name}_{split}.json`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from xtc_jax.data import pipeline
from xtc_jax.data.mtl import sources
from xtc_jax.data.mtl.example import MultiTaskTransform
from xtc_jax.errors import ConfigError
from xtc_jax.infra import atomic
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.infra.writers import log as log_line
from xtc_jax.mtl import model as model_lib
from xtc_jax.mtl.evaluate import MultiTaskEvaluator
from xtc_jax.mtl.experiment import check, variant_config


def prepare(config, workdir: str, batches: int = 4, log: Callable[[str], None] = log_line) -> dict:
    check(config)
    splits = sources.open_splits(config.data, workdir, "normal" in config.model.tasks)
    log("multi-task data: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    data = pipeline.make_dataset(
        splits["train"], (), 0, config.batch_size, config.seed, augment=config.data.augment,
        on_error=config.data.on_error,
        example_fn=MultiTaskTransform(*config.data.size, config.data.depth_kind),
    )  # fmt: skip
    classes = sources.class_names(config.data)
    counts = np.zeros(len(classes) + 1)
    for i, batch in zip(range(batches), data, strict=False):
        labels = batch["seg"]
        counts += np.bincount(labels.ravel() + 1, minlength=len(classes) + 1)
        if i == 0:
            for k, v in batch.items():
                if k != pipeline.INDEX_KEY:
                    log(f"  {k:<12} {v.shape!s:<20} {v.dtype}  [{v.min():.4g}, {v.max():.4g}]")
    share = counts / max(counts.sum(), 1)
    log(f"labels in the first batches: unlabelled {share[0]:.1%}; " + ", ".join(
        f"{name} {s:.1%}" for name, s in zip(classes, share[1:], strict=True)))
    return {k: len(v) for k, v in splits.items()}


def evaluate(config, workdir: str, split: str = "", log: Callable[[str], None] = log_line) -> dict:
    split = split or "test"
    if split not in sources.SPLITS:
        raise ConfigError(f"--split={split!r}: a multi-task run has {', '.join(sources.SPLITS)}.")
    check(config)
    splits = sources.open_splits(config.data, workdir, "normal" in config.model.tasks)
    results = {}
    for name in config.compare:
        export = workdir_lib.export(os.path.join(workdir, name))
        if not os.path.isdir(export):
            log(f"{name}: no export in {export}; skipped")
            continue
        network, variables, _ = model_lib.load_export(export)
        variant = variant_config(config, name)
        metrics = MultiTaskEvaluator(variant, network, splits[split],
                                     sources.num_classes(config.data)).metrics(variables)
        os.makedirs(workdir_lib.eval_dir(workdir), exist_ok=True)
        path = os.path.join(workdir_lib.eval_dir(workdir), f"{name}_{split}.json")
        atomic.write_json(path, metrics)
        log(f"{name} on {split}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                               if not k.startswith("normal_pct")) + f" -> {path}")
        results[name] = metrics
    if not results:
        raise ConfigError(f"{workdir} holds none of the models {', '.join(config.compare)}: "
                          "train them with the main command first.")  # fmt: skip
    return results
