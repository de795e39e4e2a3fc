"""xtc_jax: cross-task consistency learning (Zamir, Sax et al., CVPR 2020) in JAX/Flax."""

from xtc_jax.infra.runtime import set_cpu_xla_flags

__version__ = "0.1.0"

# Before JAX starts a backend: XLA reads XLA_FLAGS once, when it starts.
set_cpu_xla_flags()
