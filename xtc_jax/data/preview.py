"""A batch as one PNG grid: one row per example, one column per domain.

People would rather look than read: the main command writes this after
preparing data, so a user sees at once whether the domains line up.
"""

from __future__ import annotations

import numpy as np

from xtc_jax.infra import atomic
from xtc_jax.infra.png import encode_png


def to_rgb8(values: np.ndarray) -> np.ndarray:
    """A float (H, W, C) map as uint8 RGB: 3 channels as they are, 1 channel stretched to gray."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape[-1] == 3:
        return np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    channel = values[..., 0]
    low, high = np.percentile(channel, [1, 99])
    scaled = (channel - low) / max(high - low, 1e-6)
    return np.repeat(np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, -1)


def batch_grid(batch: dict[str, np.ndarray], domains: list[str], rows: int = 4) -> np.ndarray:
    """uint8 (rows*H, len(domains)*W, 3) grid of the first `rows` examples."""
    rows = min(rows, len(batch[domains[0]]))
    return np.concatenate(
        [np.concatenate([to_rgb8(batch[d][i]) for d in domains], axis=1) for i in range(rows)],
        axis=0,
    )


def write_grid(path: str, batch: dict[str, np.ndarray], domains: list[str], rows: int = 4) -> str:
    """Writes the grid atomically (temp file + rename); returns `path`."""
    return atomic.write_bytes(path, encode_png(batch_grid(batch, domains, rows), compress_level=6))
