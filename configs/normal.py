"""rgb -> normal with perceptual consistency losses (the paper's `multiperceptual_normal`).

Presets: `configs/normal.py` (the paper's setting) or `configs/normal.py:cpu`.
"""

import ml_collections

from xtc_jax.config_defaults import check_preset, data_config

TARGET = "normal"
#: The 7 perceptual domains of the original (its eighth, ImageNet features, needs weight import).
PERCEPTUAL = [
    "principal_curvature",
    "edge_texture",
    "reshading",
    "depth_zbuffer",
    "keypoints2d",
    "keypoints3d",
    "edge_occlusion",
]


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    preset = check_preset(preset)
    config = ml_collections.ConfigDict()
    config.preset = preset
    config.seed = 0
    config.target = TARGET
    config.perceptual = list(PERCEPTUAL)
    config.data = data_config(["rgb", TARGET, *PERCEPTUAL], preset)
    config.batch_size = 8 if preset == "cpu" else 64
    return config
