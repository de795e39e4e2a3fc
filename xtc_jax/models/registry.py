"""Network registry: build an edge network by name, initialise it, count its parameters.

Networks are Flax modules used functionally: ``params = init_params(module, rng, 256, 3)``
once, then ``module.apply({"params": params}, x)`` as a pure function of (params, NHWC x).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xtc_jax.models.dense1by1 import ConvBlock, Dense1by1Net
from xtc_jax.models.resnet import ResNet
from xtc_jax.models.sobel import SobelEdges
from xtc_jax.models.unet import (
    DownBlock,
    ModelError,
    UNet,
    UNetDepth,
    UNetReshade,
    UpBlock,
    scaled_channels,
    upsample_bilinear_2x,
)
from xtc_jax.models.unet_old import UNetOld2

MODELS: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "unet_reshade": UNetReshade,
    "unet_depth": UNetDepth,
    "dense1by1": Dense1by1Net,
    "unet_old2": UNetOld2,  # principal_curvature -> normal of the original's energy edges
    "resnet": ResNet,  # torchvision's ResNet trunk: the "imagenet" perceptual net, an encoder
    "sobel": SobelEdges,  # the original's analytic rgb -> sobel_edges; no parameters
}

__all__ = [
    "MODELS",
    "ConvBlock",
    "Dense1by1Net",
    "DownBlock",
    "ModelError",
    "ResNet",
    "UNet",
    "UNetDepth",
    "UNetReshade",
    "UpBlock",
    "build",
    "count_params",
    "init_params",
    "model_fields",
    "param_shapes",
    "scaled_channels",
    "upsample_bilinear_2x",
]


def model_fields(arch: str) -> tuple[str, ...]:
    """Constructor fields accepted by ``build(arch, ...)`` (Flax's parent/name excluded)."""
    cls = _lookup(arch)
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name"))


def _lookup(arch: str) -> type[nn.Module]:
    if arch not in MODELS:
        raise ModelError(f"unknown model arch {arch!r}; known archs: {', '.join(sorted(MODELS))}")
    return MODELS[arch]


def build(arch: str, **kwargs: Any) -> nn.Module:
    """Instantiate the network registered as ``arch`` with constructor fields ``kwargs``.

    Raises ModelError (a ConfigError and ValueError) for an unknown arch or field, naming the
    known ones, and for invalid values (e.g. width <= 0) before anything is traced.
    """
    cls = _lookup(arch)
    allowed = model_fields(arch)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ModelError(
            f"model {arch!r} ({cls.__name__}) does not take {', '.join(unknown)}; "
            f"its fields are: {', '.join(allowed)}"
        )
    return cls(**kwargs)


def _dummy_input(resolution: int | Sequence[int], in_channels: int) -> jax.Array:
    if isinstance(resolution, int):
        height = width = resolution
    else:
        height, width = resolution
    return jnp.zeros((1, height, width, in_channels), jnp.float32)


def init_params(
    module: nn.Module, rng: jax.Array, resolution: int | Sequence[int], in_channels: int
) -> Any:
    """Initialise ``module`` with a dummy NHWC batch of one image; returns the params tree.

    ``resolution`` is an int (square) or (height, width). Pure and traceable, so
    ``jax.eval_shape(lambda r: init_params(m, r, 256, 3), rng)`` gives shapes without
    allocating (see ``param_shapes``). Jitted, since eager init dispatches op by op. The
    input check runs while tracing, before compilation.
    """
    dummy = _dummy_input(resolution, in_channels)
    # .get: a parameterless module (e.g. the analytic Sobel edge) has no "params" collection.
    return jax.jit(lambda key: module.init(key, dummy).get("params", {}))(rng)


def param_shapes(module: nn.Module, resolution: int | Sequence[int], in_channels: int) -> Any:
    """The params tree as jax.ShapeDtypeStruct leaves, without materialising any weights."""
    return jax.eval_shape(
        lambda rng: init_params(module, rng, resolution, in_channels), jax.random.key(0)
    )


def count_params(params: Any) -> int:
    """Total number of scalars in a params tree (arrays or ShapeDtypeStructs)."""
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params)))
