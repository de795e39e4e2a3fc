"""xtask_mt's multi-task model on NYUv2 (seg + depth, task-transfer networks).

Usage: python -m xtc_jax.main --config=configs/mtl_nyu.py[:cpu] --workdir=DIR
       --config.data.path=ROOT
See docs/mtl.md.
"""

from xtc_jax.mtl.config import mtl_config


def get_config(preset: str = ""):
    return mtl_config("nyuv2", preset)
