"""rgb -> depth_zbuffer with perceptual consistency (the original's `multiperceptual_depth`)."""

from xtc_jax.consistency.config import consistency_config

PERCEPTUAL = [
    "principal_curvature",
    "edge_texture",
    "normal",
    "reshading",
    "keypoints2d",
    "keypoints3d",
    "edge_occlusion",
]


def get_config(preset: str = ""):
    return consistency_config("depth_zbuffer", PERCEPTUAL, preset)
