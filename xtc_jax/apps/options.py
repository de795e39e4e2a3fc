"""Command-line options the viewers (demo, web demo, video tool) share."""

from __future__ import annotations


def define_config_for_energy():
    """--config: only to fit the energy statistics of a workdir that has no saved config."""
    from ml_collections import config_flags

    return config_flags.DEFINE_config_file(
        "config", None, "Only to fit missing energy statistics of a workdir trained before "
        "configs were saved in it: the config it was trained with.")  # fmt: skip
