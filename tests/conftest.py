"""Test session setup: a persistent XLA compilation cache shared by the session's processes.

Compiling a UNet step on CPU takes longer than running it; tests that build
the same shapes in several processes (subprocess runs of the main command)
reuse each other's compiled code through this cache.
"""

from __future__ import annotations

import os
import tempfile

import jax

_CACHE = os.environ.setdefault(
    "XTC_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "xtc_jax_test_compilation_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
