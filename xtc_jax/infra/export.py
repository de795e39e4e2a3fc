"""Inference exports: a trained network alone, written atomically, read back as a callable.

An export folder holds ``params/`` (an Orbax checkpoint of the parameters)
and ``model.json`` (how to rebuild the network: arch, downsample, width,
edge, src, dst, resolution). It needs no training state, so the demo, the
energy and the evaluation load it without a config.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from xtc_jax import domains as domains_lib
from xtc_jax.errors import DataError
from xtc_jax.infra.checkpoint import to_json
from xtc_jax.models.edges import edge_key, edge_network

PARAMS, MODEL_JSON = "params", "model.json"
_barrier_ids = itertools.count()


def _is_export(directory: epath.Path) -> bool:
    return (directory / PARAMS).is_dir() and (directory / MODEL_JSON).is_file()


def _sync(name: str) -> None:
    ocp.multihost.sync_global_processes(f"xtc_export_{name}_{next(_barrier_ids)}")


def export_model(
    directory: str | epath.PathLike,
    params: Any,
    model_config: Mapping[str, Any],
    overwrite: bool = True,
) -> epath.Path:
    """Writes ``directory/params/`` (Orbax) and ``directory/model.json`` for inference.

    `model_config` says how to rebuild the network (arch, downsample,
    out_channels, width, resolution, domain names, ...). Written into a
    hidden sibling folder and renamed into place when complete, so a crash
    never leaves a half export at `directory`. An existing export there is
    replaced (unless `overwrite` is False); any other existing path is an
    error. Call it on every process.
    """
    directory = epath.Path(directory).absolute()
    config_text = json.dumps(to_json(dict(model_config), "model_config"), indent=2)
    if directory.exists() and not (overwrite and _is_export(directory)):
        raise DataError(
            f"{directory} already exists: export to a new directory"
            + (", or pass overwrite=True." if _is_export(directory) else " or delete it.")
        )
    tmp = directory.parent / f".{directory.name}.export-tmp"
    primary = jax.process_index() == 0
    if primary:
        if tmp.exists():
            tmp.rmtree()  # left by an interrupted export
        tmp.mkdir(parents=True)
    _sync("start")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp / PARAMS, params)
        checkpointer.wait_until_finished()
    if primary:
        (tmp / MODEL_JSON).write_text(config_text)
        if directory.exists():
            old = directory.parent / f".{directory.name}.export-old"
            if old.exists():
                old.rmtree()
            directory.rename(old)
            tmp.rename(directory)
            old.rmtree()
        else:
            tmp.rename(directory)
    _sync("done")
    return directory


def read_model_config(directory: str | epath.PathLike) -> dict[str, Any]:
    """The model.json of an export folder, without reading its weights."""
    directory = epath.Path(directory).absolute()
    how = "export one with xtc_jax.infra.export.export_model(directory, params, model_config)"
    if not directory.exists():
        raise DataError(f"{directory} does not exist: {how}.")
    if not _is_export(directory):
        raise DataError(
            f"{directory} is not an exported model: expected {PARAMS}/ and "
            f"{MODEL_JSON}; {how}."
        )
    try:
        return json.loads((directory / MODEL_JSON).read_text())
    except ValueError as error:
        raise DataError(
            f"{directory / MODEL_JSON} is not valid JSON ({error}): export the model again."
        ) from error


def load_exported(
    directory: str | epath.PathLike, sharding: jax.sharding.Sharding | None = None
) -> tuple[Any, dict[str, Any]]:
    """Reads an `export_model` directory: (params, model_config).

    Params come back as NumPy arrays, or as jax Arrays placed with `sharding`.
    """
    directory = epath.Path(directory).absolute()
    model_config = read_model_config(directory)
    path = directory / PARAMS
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.metadata(path).item_metadata.tree
        if sharding is None:
            restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
            with ocp.PyTreeCheckpointer() as reader:
                params = reader.restore(
                    path, args=ocp.args.PyTreeRestore(restore_args=restore_args)
                )
        else:
            abstract = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree
            )
            params = checkpointer.restore(path, abstract)
    return params, model_config


#: model.json fields that describe the export rather than the network.
_EXPORT_ONLY = ("edge", "src", "dst", "resolution", "checkpoint", "batch_counts")


def network_spec(model_config: dict) -> dict:
    """The `config.networks[edge]` spec stored in a model.json."""
    return {k: v for k, v in model_config.items() if k not in _EXPORT_ONLY}


def checkpoint_spec(directory: str, model_config: dict | None = None) -> dict:
    """The `config.networks[edge]` spec that loads this export: its architecture, and the
    folder as `checkpoint`."""
    model_config = model_config if model_config is not None else read_model_config(directory)
    return dict(network_spec(model_config), checkpoint=str(epath.Path(directory).absolute()))


@dataclasses.dataclass
class ExportedNetwork:
    """src -> dst network loaded from an export folder; call it on (B, H, W, C) float arrays."""

    path: str
    src: str
    dst: str
    resolution: int
    params: dict
    spec: dict

    def __post_init__(self):
        self.edge = edge_key(self.src, self.dst)
        module = edge_network(self.edge, self.spec)
        self._apply = jax.jit(lambda params, x: module.apply({"params": params}, x))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W, C) float32 in the src domain's encoding -> (N, H, W, C') of dst."""
        x = np.asarray(x, np.float32)
        channels = domains_lib.get(self.src).channels
        if x.ndim != 4 or x.shape[-1] != channels:
            raise DataError(
                f"{self.path} ({self.edge}) takes (N, H, W, {channels}) arrays of "
                f"{self.src}; got shape {x.shape}. Add a batch axis with x[None] if needed."
            )
        return np.asarray(self._apply(self.params, x))

    def jax_apply(self, params, x):
        """The traceable function, for use inside another jitted function."""
        return self._apply(params, x)


def load_network(path: str) -> ExportedNetwork:
    """ExportedNetwork of `path`; DataError naming it if it is not an export."""
    params, model_config = load_exported(path)
    return ExportedNetwork(path, model_config["src"], model_config["dst"],
                           int(model_config.get("resolution", 256)), params,
                           network_spec(model_config))  # fmt: skip
