"""rgb -> normal with perceptual consistency (the original's `multiperceptual_normal`).

Seven perceptual domains (the original's eighth, ImageNet features, needs weight
import). Presets: `configs/normal.py` (the paper's setting) or `configs/normal.py:cpu`.
"""

from xtc_jax.consistency.config import consistency_config

PERCEPTUAL = [
    "principal_curvature",
    "edge_texture",
    "reshading",
    "depth_zbuffer",
    "keypoints2d",
    "keypoints3d",
    "edge_occlusion",
]


def get_config(preset: str = ""):
    return consistency_config("normal", PERCEPTUAL, preset)
