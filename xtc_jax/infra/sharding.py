"""Device mesh, shardings, and host batches -> global `jax.Array`s.

One mesh over every device of every process. The batch is split along the
"data" axis (and "fsdp" when a mesh has one: FSDP shards the batch too);
parameters are replicated for now (`replicated`), leaving room for an
"fsdp" axis that shards them later. No pmap: the jitted step takes global
arrays with these `NamedSharding`s.

Each process's input pipeline yields only its own share of the global batch
(`data/pipeline.py`); `host_batch_to_global` stitches the shares into one
global array per key with `jax.make_array_from_process_local_data`, so the
step sees the same (global_batch, ...) shapes on one host or many.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from xtc_jax.errors import ConfigError

#: Mesh axes the batch dimension is split over (those present in the mesh, in this order).
BATCH_AXES = ("data", "fsdp")


def make_mesh(
    axis_names: Sequence[str] = ("data",),
    axis_sizes: Sequence[int] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A mesh over all devices (of all processes).

    Args:
      axis_names: mesh axis names, e.g. ("data",) or ("data", "fsdp").
      axis_sizes: size per axis; None puts every device on the first axis
        (size 1 for the others). One entry may be -1: the remaining devices.
      devices: defaults to jax.devices().

    Axes are `AxisType.Auto`: shardings are given to jit as `NamedSharding`s
    and XLA propagates them (not JAX's explicit-sharding mode).
    """
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(axis_names)
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"mesh axis_names must be distinct and non-empty, got {names}.")
    if axis_sizes is None:
        sizes = [len(devices)] + [1] * (len(names) - 1)
    else:
        sizes = list(axis_sizes)
        if len(sizes) != len(names):
            raise ConfigError(f"axis_sizes {sizes} must have one entry per axis of {names}.")
        if sizes.count(-1) > 1:
            raise ConfigError(f"at most one of axis_sizes may be -1, got {sizes}.")
        if -1 in sizes:
            known = math.prod(s for s in sizes if s != -1)
            sizes[sizes.index(-1)] = len(devices) // max(known, 1)
    if math.prod(sizes) != len(devices) or min(sizes) < 1:
        raise ConfigError(
            f"mesh axis sizes {dict(zip(names, sizes, strict=True))} must multiply to the "
            f"{len(devices)} available devices."
        )
    return jax.make_mesh(
        tuple(sizes), names, axis_types=(AxisType.Auto,) * len(names), devices=devices
    )


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes the batch dimension is split over."""
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    if not axes:
        raise ConfigError(f"the mesh has no batch axis {BATCH_AXES}; its axes: {mesh.axis_names}.")
    return axes


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the batch axes, other dimensions whole."""
    axes = batch_axes(mesh)
    return NamedSharding(mesh, PartitionSpec(axes if len(axes) > 1 else axes[0]))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_shard_count(mesh: Mesh) -> int:
    """How many pieces the batch is split into (product of the batch axes' sizes)."""
    return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def host_batch_to_global(batch: Any, mesh: Mesh) -> Any:
    """This process's batch (a pytree of arrays, batch-major) -> global jax.Arrays.

    Every process must call this with the same pytree structure and the same
    per-process batch size B; the result has leading dimension
    B * jax.process_count(), split over the batch axes. Non-array leaves
    (Python scalars) are rejected rather than silently replicated.
    """
    sharding = batch_sharding(mesh)
    process_count = jax.process_count()
    shards = batch_shard_count(mesh)
    local_shards = max(1, shards // process_count)

    def to_global(path: Any, leaf: Any) -> jax.Array:
        name = jax.tree_util.keystr(path)
        array = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if array.ndim == 0:
            raise ConfigError(f"batch leaf {name} is a scalar; batch leaves need a batch dim.")
        if array.shape[0] % local_shards:
            raise ConfigError(
                f"batch leaf {name}: per-process batch {array.shape[0]} is not divisible by "
                f"the {local_shards} batch shards on this process (mesh {dict(mesh.shape)}). "
                "Choose a global batch size divisible by the number of devices."
            )
        global_shape = (array.shape[0] * process_count, *array.shape[1:])
        return jax.make_array_from_process_local_data(sharding, array, global_shape)

    return jax.tree_util.tree_map_with_path(to_global, batch)
