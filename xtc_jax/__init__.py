"""xtc_jax: cross-task consistency learning (Zamir, Sax et al., CVPR 2020) in JAX/Flax."""

__version__ = "0.1.0"
