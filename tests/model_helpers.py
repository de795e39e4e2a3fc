"""Random network parameters for tests, drawn on the host (no compiled Flax init)."""

from __future__ import annotations

import jax
import numpy as np

from xtc_jax.models import param_shapes


def random_params(model, resolution: int, in_channels: int, rng: np.random.Generator):
    """A params tree with the structure of ``model.init`` (via ``param_shapes``).

    He-scaled kernels and non-trivial GroupNorm scale/bias and conv biases, so every
    parameter (and a wrong mapping of any of them) affects the output. Drawing on the host
    avoids compiling Flax's jitted init, whose threefry kernels compile slowly on small CPUs.
    """

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.normal(0, np.sqrt(2.0 / fan_in), leaf.shape).astype(np.float32)
        if "'var'" in name:  # BatchNorm running variance: positive
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        base = 1.0 if "scale" in name else 0.0
        return (base + 0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, param_shapes(model, resolution, in_channels))
