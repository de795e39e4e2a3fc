"""The analytic rgb -> edge_texture edge: the original's `SobelKernel`, in JAX.

Channel mean -> Gaussian blur sigma 2 (17 taps, mirrored border, as
scipy.ndimage.gaussian_filter) -> Sobel along x and y (zero border, as
scipy's mode='constant') -> hypot. No parameters; it is a graph edge like any
network so paths such as [rgb, edge_texture] need no special case. It equals
`domains.sobel_edges`, the pipeline's NumPy version (tests check).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

SIGMA = 2.0


def _gaussian_taps(sigma: float = SIGMA) -> np.ndarray:
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _correlate(image: jnp.ndarray, taps: np.ndarray, axis: int, mode: str) -> jnp.ndarray:
    """1D correlation of (B, H, W, 1) along axis 1 (H) or 2 (W) with scipy's border modes."""
    radius = len(taps) // 2
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode="symmetric" if mode == "reflect" else "constant")
    shape = (len(taps), 1, 1, 1) if axis == 1 else (1, len(taps), 1, 1)
    kernel = jnp.asarray(taps.reshape(shape))
    return lax.conv_general_dilated(
        padded, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


class SobelEdges(nn.Module):
    """rgb (B, H, W, 3) in [0, 1] -> unnormalised edge magnitude (B, H, W, 1)."""

    @nn.compact
    def __call__(self, rgb: jnp.ndarray) -> jnp.ndarray:
        gray = jnp.mean(rgb.astype(jnp.float32), axis=-1, keepdims=True)
        taps = _gaussian_taps()
        blurred = _correlate(_correlate(gray, taps, 1, "reflect"), taps, 2, "reflect")
        derivative = np.array([-1.0, 0.0, 1.0], np.float32)
        smooth = np.array([1.0, 2.0, 1.0], np.float32)
        gx = _correlate(_correlate(blurred, derivative, 2, "constant"), smooth, 1, "constant")
        gy = _correlate(_correlate(blurred, derivative, 1, "constant"), smooth, 2, "constant")
        return jnp.hypot(gx, gy)
