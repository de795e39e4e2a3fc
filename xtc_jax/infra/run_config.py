"""A run's config saved in its workdir ({workdir}/config.json), for tools given only the workdir.

The main command writes the config it runs (with the command line's
overrides) before any work, so the viewers (demo, web demo, video tool) can
rebuild what they need from the workdir alone: the energy statistics of a
consistency run, the transfers of a taxonomy run.
"""

from __future__ import annotations

import json
import os

import ml_collections

from xtc_jax.errors import ConfigError
from xtc_jax.infra import atomic

CONFIG_FILE = "config.json"


def save(config, workdir: str) -> str:
    """Writes `config` as {workdir}/config.json, atomically."""
    os.makedirs(workdir, exist_ok=True)
    return atomic.write_bytes(os.path.join(workdir, CONFIG_FILE),
                              config.to_json(indent=2).encode())  # fmt: skip


def load(workdir: str) -> ml_collections.ConfigDict | None:
    """The config `save` wrote into `workdir`, or None when there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except ValueError as error:
        raise ConfigError(f"{path} is not a config ({error}): delete it, or pass --config=CONFIG "
                          "(the config the workdir was trained with).") from None
