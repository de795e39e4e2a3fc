"""The original's `example_cascade_two_networks`: rgb -> normal with one perceptual loss
(curvature), k = 1. Presets: "" or "cpu"."""

from xtc_jax.consistency.config import consistency_config


def get_config(preset: str = ""):
    config = consistency_config("normal", ["principal_curvature"], preset)
    config.selection.k = 1
    return config
