"""Process setup shared by the command-line entry points (main, energy, demo)."""

from __future__ import annotations

import os


def enable_compilation_cache() -> None:
    """Persist compiled steps across runs ($XTC_COMPILATION_CACHE, default ~/.cache/xtc_jax/jax).

    On a CPU compiling a step takes longer than running hundreds of them; the
    frozen networks of one config share shapes, and reruns reuse everything.
    """
    import jax

    path = os.environ.get("XTC_COMPILATION_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "xtc_jax", "jax"
    )
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def quiet_library_logs() -> None:
    """Our own progress lines are the output; absl INFO lines and TFDS bars are noise."""
    import tensorflow_datasets as tfds
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    tfds.disable_progress_bar()
