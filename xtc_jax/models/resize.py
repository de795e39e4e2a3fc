"""×2 bilinear upsampling with PyTorch's ``align_corners=True``, as xtask_mt's networks use.

With aligned corners the first and last pixels of input and output coincide:
output pixel j of 2n samples the source at j·(n − 1)/(2n − 1). The weights
depend only on the static shape, so they are NumPy constants and the op is
two gathers and a blend per axis (XLA fuses them); `models/unet.py` has the
``align_corners=False`` variant the consistency networks use.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _taps(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, upper weight) of every output pixel of a 2n axis."""
    out = 2 * n
    source = np.arange(out, dtype=np.float64) * ((n - 1) / (out - 1) if out > 1 else 0.0)
    lower = np.floor(source).astype(np.int32)
    upper = np.minimum(lower + 1, n - 1)
    return lower, upper, (source - lower).astype(np.float32)


def upsample_bilinear_2x_aligned(x: jnp.ndarray) -> jnp.ndarray:
    """NHWC ``x`` upsampled ×2: torch's ``F.interpolate(scale_factor=2, mode="bilinear",
    align_corners=True)``."""
    for axis in (1, 2):
        lower, upper, weight = _taps(x.shape[axis])
        shape = [1] * x.ndim
        shape[axis] = weight.size
        w = jnp.asarray(weight.reshape(shape), x.dtype)
        x = jnp.take(x, lower, axis=axis) * (1 - w) + jnp.take(x, upper, axis=axis) * w
    return x
