"""Train one edge src -> dst from ground truth: how perceptual and direct networks are made.

Usage: --config=configs/transfer.py:normal->principal_curvature[,cpu]
The original trained its perceptual networks (X -> Y, X != rgb) with L2 and its
rgb -> X networks with L1 (XTConsistency issue #3); this config does the same.
"""

from xtc_jax.consistency.config import transfer_config


def get_config(spec: str = ""):
    return transfer_config(spec)
