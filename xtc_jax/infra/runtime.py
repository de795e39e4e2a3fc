"""Process setup shared by the command-line entry points (main, energy, demo)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from importlib import metadata

#: XLA CPU flags set at `import xtc_jax`, unless XLA_FLAGS already names them.
#: An empty YNNPACK fusion list keeps reductions (GroupNorm statistics) and small
#: convolutions on XLA's own kernels: jaxlib >= 0.10 sends them to YNNPACK, which
#: made the `:cpu` consistency step 13% slower here (BENCHMARKS.md; jax-ml/jax#37465).
CPU_XLA_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": ""}
#: The first jaxlib these flags are known to exist in (an unknown flag aborts XLA).
CPU_XLA_FLAGS_SINCE = (0, 10)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def set_cpu_xla_flags(environ: MutableMapping[str, str] = os.environ,
                      jaxlib_version: str | None = None) -> str:  # fmt: skip
    """Append CPU_XLA_FLAGS to environ["XLA_FLAGS"]; returns the resulting XLA_FLAGS.

    Flags the user already set are kept as they are, and XTC_XLA_DEFAULTS=0 turns
    this off. It must run before JAX starts its CPU backend, hence at import.
    """
    flags = environ.get("XLA_FLAGS", "")
    if environ.get("XTC_XLA_DEFAULTS", "1") == "0":
        return flags
    if jaxlib_version is None:
        try:
            jaxlib_version = metadata.version("jaxlib")
        except metadata.PackageNotFoundError:
            return flags
    if _version(jaxlib_version) < CPU_XLA_FLAGS_SINCE:
        return flags
    added = [f"--{name}={value}" for name, value in CPU_XLA_FLAGS.items() if name not in flags]
    if added:
        environ["XLA_FLAGS"] = " ".join(filter(None, [flags, *added]))
    return environ.get("XLA_FLAGS", "")


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
