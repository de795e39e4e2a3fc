"""The frozen networks of a consistency run: where each one lives, and loading it.

Each frozen edge ("normal->principal_curvature", "rgb->reshading", ...) comes
from `networks[edge].checkpoint` (an exported model folder) when the config
names one, else from the cache `{networks_dir}/{src}__{dst}/export`. This
module only reads: the experiment (`experiment.ensure_networks`) trains a
cache miss first, with the transfer config. Unlike the original's train.py
(xtconsistency.md §5 quirk 1), frozen networks are never random.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax

from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import export as export_lib
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.models.edges import split_edge


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
    return config.get("networks_dir") or workdir_lib.networks_dir(workdir)


def cache_dir(config, workdir: str, edge: str) -> str:
    """The run folder edge's network is trained into when the config names no checkpoint."""
    return workdir_lib.network_run(networks_dir(config, workdir), *split_edge(edge))


def export_dir(config, workdir: str, edge: str) -> str:
    """Where `edge`'s network is read from: networks[edge].checkpoint, else its cache export."""
    return config.networks[edge].get("checkpoint") or workdir_lib.export(
        cache_dir(config, workdir, edge)
    )


def missing(config, workdir: str, edges: Sequence[str]) -> list[str]:
    """The learned `edges` whose export does not exist yet."""
    return [e for e in edges if config.networks[e]["arch"] != "sobel"
            and not os.path.isdir(export_dir(config, workdir, e))]  # fmt: skip


def _check_shapes(edge: str, params, expected) -> None:
    got = jax.tree.map(lambda x: tuple(x.shape), params)
    want = jax.tree.map(lambda x: tuple(x.shape), expected)
    if got != want:
        raise ConfigError(
            f"the checkpoint of {edge!r} does not fit its configured network "
            f"(parameter shapes differ). Re-export it with the same arch/downsample/width, or "
            "clear networks[...].checkpoint to retrain it."
        )


def load(config, graph, edges: Sequence[str], workdir: str) -> dict:
    """{edge: params} for the frozen `edges` ({} for the analytic Sobel), checked against graph.

    DataError naming the folder when an export is missing: run the experiment
    (`python -m xtc_jax.main`), which trains missing frozen networks first.
    """
    params = {}
    for edge in edges:
        if graph.specs[edge]["arch"] == "sobel":
            params[edge] = {}
            continue
        path = export_dir(config, workdir, edge)
        if not os.path.isdir(path):
            raise DataError(
                f"the frozen network {edge!r} has no export at {path}: train it first (the "
                "main command does, python -m xtc_jax.main --config=... --workdir=...) or set "
                f"networks[{edge!r}].checkpoint to an exported model."
            )
        loaded, _ = export_lib.load_exported(path)
        expected = jax.eval_shape(
            lambda e=edge: graph.init(jax.random.PRNGKey(0), config.data.resolution, [e])[e]
        )
        _check_shapes(edge, loaded, expected)
        params[edge] = loaded
    return params
