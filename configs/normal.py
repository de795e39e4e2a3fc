"""rgb -> normal with perceptual consistency (the original's `multiperceptual_normal`).

Seven perceptual domains; the original's eighth, ImageNet ResNet-50 features, is added by
--config.imagenet_weights=DIR (torchvision's resnet50-*.pth converted with
`python -m xtc_jax.convert`). Presets: `configs/normal.py` (the paper's setting) or
`configs/normal.py:cpu`.
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
