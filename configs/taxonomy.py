"""Taskonomy's transfer taxonomy on the built-in data: task networks, transfers, tournament, BIP.

Usage: python -m xtc_jax.taxonomy --config=configs/taxonomy.py[:cpu] --workdir=DIR
See docs/taxonomy.md.
"""

from xtc_jax.taxonomy.config import taxonomy_config


def get_config(preset: str = ""):
    return taxonomy_config(preset)
