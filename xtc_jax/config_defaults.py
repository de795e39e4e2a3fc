"""Defaults shared by the experiment configs in configs/ (ml_collections).

Config files are thin: they pick the target, the domains and the preset.
Presets come through the `:preset` suffix of `--config=configs/x.py:preset`:
"" (the paper's setting: 256x256, batch 64) or "cpu" (a small version a
2-core CPU finishes in minutes).
"""

from __future__ import annotations

import ml_collections

from xtc_jax.errors import ConfigError

PRESETS = ("", "paper", "cpu")


def check_preset(preset: str) -> str:
    preset = (preset or "").strip()
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown config preset {preset!r}; use one of: (none), paper, cpu "
            "(e.g. --config=configs/normal.py:cpu)."
        )
    return "paper" if preset == "" else preset


def data_config(domains: list[str], preset: str) -> ml_collections.ConfigDict:
    """The `data` section: where examples come from and how they are fed.

    path: a Taskonomy tree or a built shard folder; "" = the built-in synthetic
      Taskonomy, generated under the workdir on first use.
    format: "shards" (build array_record shards once, then stream them) or
      "raw" (read the tree's PNGs directly; no copy).
    """
    preset = check_preset(preset)
    cpu = preset == "cpu"
    data = ml_collections.ConfigDict()
    data.path = ""
    data.format = "shards"
    data.layout = "auto"
    data.split_file = ""  # Taskonomy CSV or building list; "" = tiny/synthetic default
    data.train_split = "train"
    data.val_split = "val"
    data.domains = list(domains)
    data.resolution = 64 if cpu else 256
    data.augment = False
    data.worker_count = 0 if cpu else 8
    data.on_error = "skip"
    data.synthetic = ml_collections.ConfigDict(
        dict(buildings=6 if cpu else 12, views=48 if cpu else 400, size=64 if cpu else 256, seed=0)
    )
    return data
