"""The original's `example_normal`: rgb -> normal with curvature and Edge-2D perceptual
losses, k = 2 (Edge-2D's direct term is the analytic sobel of rgb). Presets: "" or "cpu"."""

from xtc_jax.consistency.config import consistency_config


def get_config(preset: str = ""):
    config = consistency_config("normal", ["principal_curvature", "edge_texture"], preset)
    config.selection.k = 2
    return config
