"""`python -m xtc_jax.taxonomy`: every stage of the taxonomy in one workdir, resumable.

In {workdir} (the same layout as the main command's):
  data/                     the prepared data (the built-in synthetic Taskonomy unless data.path)
  tasks/{task}/             Stage I: the task-specific network's run (checkpoints, export)
  taxonomy/transfers/{t}.npz Stage II: every transfer into t, scored per test image
  taxonomy/...              Stages III-IV: the tables and figures of `outputs.py`
A killed run is continued by rerunning the same command: finished task networks (DONE.json)
and targets (.npz) are reused, an unfinished network resumes from its checkpoint.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable

from xtc_jax.data import prepare
from xtc_jax.errors import ConfigError
from xtc_jax.infra import atomic, run_config
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.infra.writers import log as log_line
from xtc_jax.taxonomy import config as config_lib
from xtc_jax.taxonomy import outputs, stage_transfers
from xtc_jax.taxonomy.task_method import TaskNetworkMethod
from xtc_jax.training.loop import check_train_config, train_and_evaluate

TASKS_DIR = "tasks"
OUT_DIR = "taxonomy"
DONE = "DONE.json"


def out_dir(workdir: str) -> str:
    return os.path.join(workdir, OUT_DIR)


def open_splits(config, workdir: str, log: Callable[[str], None]) -> dict:
    """{"train", "transfer", "test"}: Stage I's images and the two disjoint held-out splits."""
    d = config.data
    names = {"train": d.train_split, "transfer": d.transfer_split, "test": d.test_split}
    if len(set(names.values())) < 3:
        raise ConfigError(f"config.data: train_split, transfer_split and test_split must differ "
                          f"(got {names}): the transfers need images no task network saw.")
    location = prepare.data_location(d, workdir)
    splits = {role: prepare.open_split(d, location, split) for role, split in names.items()}
    for role, source in splits.items():
        if len(source) == 0:
            raise ConfigError(f"the {names[role]} split ({role}) of {location} is empty: the "
                              "taxonomy needs images in train, transfer and test splits.")
    log("taxonomy data: " + ", ".join(f"{role} ({names[role]}) {len(s)}"
                                      for role, s in splits.items()))  # fmt: skip
    return splits


def train_task_networks(config, workdir: str, splits: dict,
                        log: Callable[[str], None]) -> dict[str, str]:  # fmt: skip
    """Stage I: {task: its export folder}, training the networks not yet done."""
    exports = {}
    for i, task in enumerate(config.tasks):
        run_dir = os.path.join(workdir, TASKS_DIR, task)
        exports[task] = os.path.join(run_dir, workdir_lib.EXPORT)
        done = os.path.join(run_dir, DONE)
        if os.path.exists(done):
            log(f"task network [{i + 1}/{len(config.tasks)}] {task}: done before, reused")
            continue
        log(f"task network [{i + 1}/{len(config.tasks)}] {task}")
        start = time.time()
        method = TaskNetworkMethod(config, task, splits["train"], splits["transfer"], log)
        seed = config.seed * 100 + config_lib.TASK_SEEDS.index(task)
        result = train_and_evaluate(method, config.train, seed, run_dir, log)
        atomic.write_json(done, {"val_loss": result["loss"], "seconds": time.time() - start})
    return exports


def run(config, workdir: str, log: Callable[[str], None] = log_line) -> dict:
    """Every stage; returns the summary (`outputs.write_all`)."""
    config_lib.check(config)
    check_train_config(config.train)
    run_config.save(config, workdir)  # the web demo's /taxonomy page rebuilds from it
    config = copy.deepcopy(config)
    with config.unlocked():
        config.data.cache_dir = config.data.cache_dir or workdir_lib.data_dir(workdir)
    start = time.time()
    splits = open_splits(config, workdir, log)
    exports = train_task_networks(config, workdir, splits, log)
    log(f"Stage I done ({time.time() - start:.0f} s so far)")
    results = stage_transfers.run(config, exports, splits, out_dir(workdir), log)
    log(f"Stage II done ({time.time() - start:.0f} s so far)")
    summary = outputs.write_all(config, results, out_dir(workdir), log)
    log(f"taxonomy done in {time.time() - start:.0f} s: outputs in {out_dir(workdir)}")
    return summary


def rebuild(config, workdir: str, split: str = "") -> dict:
    """--mode=eval: the tables and figures again from the saved Stage II losses (e.g. after
    changing config.solver); nothing is trained."""
    del split
    config_lib.check(config)
    folder = os.path.join(out_dir(workdir), "transfers")
    missing = [t for t in config.tasks if not os.path.exists(os.path.join(folder, f"{t}.npz"))]
    if missing:
        raise ConfigError(f"{folder} has no Stage II results for {', '.join(missing)}: run "
                          "python -m xtc_jax.taxonomy with this config and workdir first.")
    results = {t: stage_transfers.load(os.path.join(folder, f"{t}.npz")) for t in config.tasks}
    return outputs.write_all(config, results, out_dir(workdir), log_line)
