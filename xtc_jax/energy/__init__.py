"""Consistency energy: per-pixel and per-image disagreement of paths into one domain.

`python -m xtc_jax.energy --config=configs/normal.py:cpu --workdir=DIR` (see
`__main__.py`). The path terms and their standardisation are `terms.py`, the
networks `model.py`, scoring data `scoring.py`, the written report `report.py`.
"""

from xtc_jax.energy.terms import Standardisation, image_terms, pixel_terms, term_name

__all__ = ["Standardisation", "image_terms", "pixel_terms", "term_name"]
