"""The original's `example_normal_direct`: the supervised baseline, rgb -> normal with the
direct (mae) loss only and nothing frozen. Presets: "" or "cpu"."""

from xtc_jax.consistency.config import consistency_config


def get_config(preset: str = ""):
    return consistency_config("normal", [], preset, with_direct=False)
