"""The page's example images: views of the built-in synthetic data, with ground truth.

Nothing is shipped as a file: a few views of rooms no model trained on
(building indices from FIRST_BUILDING on) are rendered when first asked for,
at the models' resolution, in a fraction of a second each. Because they come
from the renderer, each carries every domain's ground truth, decoded as the
data pipeline decodes files, which the pages show beside the predictions.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

FIRST_BUILDING = 900
COUNT = 3


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    rgb: np.ndarray  # (R, R, 3) float32 in [0, 1]
    truth: dict[str, np.ndarray]  # {domain: (R, R, C) float32}, the models' encoding


@functools.lru_cache(maxsize=8)
def examples(resolution: int | tuple[int, int], seed: int = 0) -> tuple[Example, ...]:
    """COUNT example views at `resolution` (cached): a side, or (height, width) for the
    multi-task models (rendered square, then centre-cropped, without ground truth)."""
    from PIL import Image

    from xtc_jax.data import images
    from xtc_jax.data.synthetic import flythrough, generate

    frame = tuple(resolution) if isinstance(resolution, (tuple, list)) else None
    out = []
    for i in range(COUNT):
        building = FIRST_BUILDING + i
        view = generate.render_view(seed, building, 0, 0, max(frame) if frame else resolution)
        truth = flythrough.decode_truth(view.arrays, ("rgb", *flythrough.TRUTH_DOMAINS))
        if frame:
            rgb = images.resize_center_crop(Image.fromarray(view.arrays["rgb"]), frame)
            out.append(Example(f"room {building}", np.asarray(rgb, np.float32) / 255.0, {}))
        else:
            out.append(Example(f"room {building}", truth["rgb"], truth))
    return tuple(out)
