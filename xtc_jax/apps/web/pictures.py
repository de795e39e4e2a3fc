"""Arrays as the PNGs the page shows: predictions, coloured energy maps, the colour scale
and the image's energy against the reference distribution.

Everything is encoded here, on the server, so the page needs no plotting
script (nothing comes from a CDN). PNGs travel to the page as data URLs.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

ENERGY_CMAP = "magma"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def rgb_image(rgb: np.ndarray) -> Image.Image:
    """(H, W, 3) in [0, 1] as an 8-bit RGB image."""
    return Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def prediction_png(values: np.ndarray, domain: str) -> bytes:
    """A prediction as the demo saves it (normals RGB, other targets gray)."""
    from xtc_jax.apps.demo import prediction_image

    return png_bytes(prediction_image(values, domain))


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def coloured(values: np.ndarray, low: float, high: float, cmap: str = ENERGY_CMAP) -> np.ndarray:
    """An (H, W) map as (H, W, 3) uint8 in `cmap`, on the scale [low, high] (clipped)."""
    scaled = np.clip((np.asarray(values, np.float64) - low) / max(high - low, 1e-12), 0, 1)
    return (_colormap(cmap)(scaled)[..., :3] * 255 + 0.5).astype(np.uint8)


def energy_png(energy: np.ndarray, low: float, high: float) -> bytes:
    """The (H, W) energy map coloured on the fixed scale [low, high]."""
    return png_bytes(Image.fromarray(coloured(energy, low, high)))


def map_png(values: np.ndarray, cmap: str) -> bytes:
    """An (H, W) map coloured from its own 1st to 99th percentile (depth, multi-task energy)."""
    low, high = np.percentile(np.asarray(values, np.float64), [1, 99])
    return png_bytes(Image.fromarray(coloured(values, low, high, cmap)))


def colour_bar_png(width: int = 256, height: int = 12) -> bytes:
    """The energy colour scale, low (left) to high (right)."""
    ramp = np.tile(np.linspace(0, 1, width)[None, :], (height, 1))
    return png_bytes(Image.fromarray(coloured(ramp, 0.0, 1.0)))


def reference_png(reference: np.ndarray, value: float, percentile: float | None) -> bytes:
    """Histogram of the reference images' energies with this image's energy marked."""
    from xtc_jax.energy.report import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(3.6, 2.2), dpi=100)
    if len(reference):
        axes.hist(reference, bins=min(30, max(5, len(reference) // 4)), color="#8fa8c8")
    axes.axvline(value, color="#c0392b", linewidth=2)
    label = f"this image: {value:.2f}"
    if percentile is not None:
        label += f" (above {percentile:.0f}% of the reference)"
    axes.set_title(label, fontsize=8)
    axes.set_xlabel("image energy (MADs from the reference mean)", fontsize=7)
    axes.set_ylabel("reference images", fontsize=7)
    axes.tick_params(labelsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
