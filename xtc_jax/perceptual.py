"""The frozen networks of a consistency run: loaded, or trained first when missing.

Each frozen edge ("normal->principal_curvature", "rgb->reshading", ...) comes
from `networks[edge].checkpoint` (an exported model folder) when the config
names one, else from the cache `{networks_dir}/{src}__{dst}/export`. A cache
miss trains the edge from ground truth with `configs/transfer.py`'s config
(same architecture, preset and data) into that folder, so one command runs
end to end; a later run reuses it. Unlike the original's train.py
(xtconsistency.md §5 quirk 1), frozen networks are never random.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax

from xtc_jax import checkpoint as ckpt_lib
from xtc_jax.config_defaults import transfer_config
from xtc_jax.data import prepare
from xtc_jax.errors import ConfigError
from xtc_jax.graph import TaskGraph, split_edge


def check_checkpoints(config) -> None:
    """ConfigError for a frozen network whose configured checkpoint folder does not exist."""
    for edge in config.freeze:
        path = config.networks[edge].get("checkpoint", "")
        if path and not os.path.isdir(path):
            raise ConfigError(
                f"networks[{edge!r}].checkpoint={path!r} does not exist. Point it at a model "
                "exported by a transfer run ({workdir}/export), or set it to '' to train the "
                "network into the cache first."
            )


def networks_dir(config, workdir: str) -> str:
    return config.get("networks_dir") or os.path.join(workdir, "networks")


def cache_dir(config, workdir: str, edge: str) -> str:
    src, dst = split_edge(edge)
    return os.path.join(networks_dir(config, workdir), f"{src}__{dst}")


def export_dir(config, workdir: str, edge: str) -> str:
    """Where `edge`'s network is read from: networks[edge].checkpoint, else its cache export."""
    return config.networks[edge].get("checkpoint") or os.path.join(
        cache_dir(config, workdir, edge), "export"
    )


def _train_transfer(config, edge: str, workdir: str, log: Callable[[str], None]) -> str:
    """Trains `edge` from ground truth into its cache folder; returns the export folder."""
    from xtc_jax.train import train_and_evaluate  # train imports this module

    transfer = transfer_config(f"{edge},{config.preset}")
    transfer.networks[edge] = config.networks[edge]
    transfer.seed = config.seed
    transfer.train.steps = config.transfer_steps
    for field in ("path", "format", "layout", "split_file", "resolution", "synthetic", "cache_dir"):
        transfer.data[field] = config.data[field]
    transfer.data.cache_dir = config.data.cache_dir or prepare.default_cache_dir(workdir)
    run_dir = cache_dir(config, workdir, edge)
    log(f"training frozen network {edge} ({transfer.train.steps} steps) into {run_dir}")
    result = train_and_evaluate(transfer, run_dir, log=log)
    return result["export"]


def _check_shapes(edge: str, params, expected) -> None:
    got = jax.tree.map(lambda x: tuple(x.shape), params)
    want = jax.tree.map(lambda x: tuple(x.shape), expected)
    if got != want:
        raise ConfigError(
            f"the checkpoint of {edge!r} does not fit its configured network "
            f"(parameter shapes differ). Re-export it with the same arch/downsample/width, or "
            "clear networks[...].checkpoint to retrain it."
        )


def frozen_params(
    config,
    graph: TaskGraph,
    edges: Sequence[str],
    workdir: str,
    log: Callable[[str], None],
) -> dict:
    """{edge: params} for the frozen `edges`, training cache misses first."""
    params = {}
    for edge in edges:
        if graph.specs[edge]["arch"] == "sobel":
            params[edge] = {}
            continue
        path = export_dir(config, workdir, edge)
        if not os.path.isdir(path):
            path = _train_transfer(config, edge, workdir, log)
        loaded, _ = ckpt_lib.load_exported(path)
        expected = jax.eval_shape(
            lambda e=edge: graph.init(jax.random.PRNGKey(0), config.data.resolution, [e])[e]
        )
        _check_shapes(edge, loaded, expected)
        params[edge] = loaded
    return params
