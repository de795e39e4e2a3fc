"""xtask_mt's multi-task model on the built-in synthetic data (seg + depth, task-transfer networks).

Usage: python -m xtc_jax.main --config=configs/mtl_synthetic.py[:cpu] --workdir=DIR
See docs/mtl.md.
"""

from xtc_jax.mtl.config import mtl_config


def get_config(preset: str = ""):
    return mtl_config("synthetic", preset)
