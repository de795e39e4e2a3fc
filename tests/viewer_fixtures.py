"""A tiny workdir as the main command leaves it, for the viewers' tests (demo, web, video).

Random-weight baseline and consistency exports at 16 px, and the config saved
as the main command saves it; no energy statistics, so the first viewer that
loads it fits them (`energy/first_use.py`): the energy's one learned path is
edge_texture -> normal (rgb -> edge_texture is the analytic Sobel), trained
for a few steps on a tiny synthetic set.
"""

from __future__ import annotations

import os
import shutil

import jax

from configs import normal
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.infra import export as export_lib
from xtc_jax.infra import run_config

RES = 16


def tiny_config():
    config = normal.get_config("cpu")
    config.data.resolution = RES
    config.data.synthetic.update(buildings=3, views=16, size=32)
    config.batch_size = 8
    config.transfer_steps = 30
    config.train.eval_batches = 1
    config.energy.middles = ["edge_texture"]
    config.energy.reference_images = 16
    for spec in config.networks.values():
        if spec.arch != "sobel":
            spec.downsample = 2
    return config


def _export(path: str, config, seed: int) -> None:
    edge = "rgb->normal"
    spec = config.networks[edge].to_dict()
    graph = TaskGraph({edge: spec})
    params = jax.device_get(graph.init(jax.random.PRNGKey(seed), RES, [edge])[edge])
    export_lib.export_model(path, params, dict(spec, edge=edge, src="rgb", dst="normal",
                                               resolution=RES))  # fmt: skip


def make_workdir(root: str, save_config: bool = True) -> str:
    """A workdir with both models' exports (different weights) and, if asked, its config."""
    config = tiny_config()
    _export(os.path.join(root, "baseline", "export"), config, 0)
    _export(os.path.join(root, "consistency", "export"), config, 1)
    if save_config:
        run_config.save(config, root)
    return root


def copy_without_statistics(workdir: str, root: str) -> str:
    """A copy of `workdir` (networks cache included) whose energy statistics are gone."""
    shutil.copytree(workdir, root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("energy_stats.json"))  # fmt: skip
    return root


TAXONOMY_TASKS = ["normal", "reshading", "autoencoder"]


def make_taxonomy_workdir(root: str) -> str:
    """A taxonomy run's workdir as the page reads it: random-weight Stage I networks of three
    tasks at 16 px, the saved config and an affinity table (no Stage II training)."""
    import json

    from xtc_jax.models.taskonomy_net import ScratchNetwork
    from xtc_jax.taxonomy import tasks
    from xtc_jax.taxonomy.config import taxonomy_config

    config = taxonomy_config("cpu")
    config.tasks = list(TAXONOMY_TASKS)
    config.data.resolution = RES
    config.data.synthetic.update(dict(buildings=4, views=8, size=32))
    config.batch_size = 4
    config.transfer.update(dict(steps=4, batch_size=4))
    m = config.model
    for i, task in enumerate(TAXONOMY_TASKS):
        network = ScratchNetwork(tasks.get(task).channels, m.width, m.rep_channels)
        params = network.init(jax.random.PRNGKey(i), jax.numpy.zeros((1, RES, RES, 3)))["params"]
        export_lib.export_model(os.path.join(root, "tasks", task, "export"),
                                jax.device_get(params), {"arch": "taskonomy_task", "task": task,
                                                         "resolution": RES})  # fmt: skip
    run_config.save(config, root)
    affinity = {"reshading__normal": 0.6, "autoencoder__normal": 0.1, "self__normal": 0.3,
                "normal__reshading": 0.7, "autoencoder__reshading": 0.2}  # fmt: skip
    os.makedirs(os.path.join(root, "taxonomy"), exist_ok=True)
    with open(os.path.join(root, "taxonomy", "affinities.json"), "w") as f:
        json.dump(affinity, f)
    return root


def add_multitask_export(workdir: str, size=(32, 64)) -> str:
    """A random-weight multi-task (xtask) export with transfer nets in {workdir}/xtask/export,
    as a configs/mtl_*.py run leaves it (non-square input frame)."""
    from xtc_jax.mtl import model as model_lib
    from xtc_jax.mtl.config import mtl_config
    from xtc_jax.mtl.method import export_config

    config = mtl_config("synthetic", "cpu")
    config.model.encoder_width = 0.125
    config.model.mid_features = 8
    config.data.size = size
    network = model_lib.build(config)
    variables = model_lib.init_variables(network, jax.random.PRNGKey(0), size)
    export_lib.export_model(os.path.join(workdir, "xtask", "export"), jax.device_get(variables),
                            export_config(config))  # fmt: skip
    return workdir
