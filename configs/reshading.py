"""rgb -> reshading with perceptual consistency (the original's `multiperceptual_reshading`)."""

from xtc_jax.consistency.config import consistency_config

PERCEPTUAL = [
    "principal_curvature",
    "edge_texture",
    "normal",
    "depth_zbuffer",
    "keypoints2d",
    "keypoints3d",
    "edge_occlusion",
]


def get_config(preset: str = ""):
    return consistency_config("reshading", PERCEPTUAL, preset)
