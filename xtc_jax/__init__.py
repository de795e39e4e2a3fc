"""xtc_jax: cross-task consistency learning (Zamir, Sax et al., CVPR 2020) in JAX/Flax.

The stable entry point for scripts: ``xtc_jax.load_network(path)`` returns the
network of an export folder (``.src``, ``.dst``, ``.resolution``; called on an
(N, H, W, C) float32 array it returns (N, H, W, C')).
"""

from xtc_jax.infra.runtime import set_cpu_xla_flags

__version__ = "0.1.0"
__all__ = ["load_network"]

# Before JAX starts a backend: XLA reads XLA_FLAGS once, when it starts.
set_cpu_xla_flags()


def __getattr__(name: str):
    """`load_network` is imported on first use: `import xtc_jax` stays free of JAX."""
    if name == "load_network":
        from xtc_jax.infra.export import load_network

        return load_network
    raise AttributeError(f"module 'xtc_jax' has no attribute {name!r}")
