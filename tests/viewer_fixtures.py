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
from xtc_jax.consistency import experiment
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.infra import export as export_lib

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
        experiment.save_config(config, root)
    return root


def copy_without_statistics(workdir: str, root: str) -> str:
    """A copy of `workdir` (networks cache included) whose energy statistics are gone."""
    shutil.copytree(workdir, root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("energy_stats.json"))  # fmt: skip
    return root
