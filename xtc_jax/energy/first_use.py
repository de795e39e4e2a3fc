"""Energy statistics fitted on first use, for the viewers (demo, web demo, video tool).

The energy maps need standardisation statistics fitted on reference images
(`terms.Standardisation`). The main command fits them when it trains a
consistency model (`consistency/experiment.py`); for a workdir trained
before that, or for the published models, a viewer calls `fit` instead of
showing no energy:
  - a workdir: with the config saved in it ({workdir}/config.json, or the
    one given), exactly as `python -m xtc_jax.energy` would, training any
    missing rgb->K / K->target network into its cache first;
  - a models folder (the published networks, converted): the paper preset at
    the model's resolution (256 px for the published ones) on REFERENCE_IMAGES
    images of the built-in synthetic data, rendered into
    {models_dir}/energy_reference (as the README's energy command).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from xtc_jax import domains as domains_lib
from xtc_jax.errors import ConfigError

#: Reference images and the synthetic rooms they come from, for the published models.
REFERENCE_IMAGES = 32
REFERENCE_BUILDINGS, REFERENCE_VIEWS = 4, 16


def published_reference_config(domain: str, resolution: int = 256):
    """The paper preset for rgb -> `domain` at the model's `resolution` (the published: 256),
    every other image domain a candidate middle K (the energy keeps those whose published
    rgb->K and K->target networks are there)."""
    from xtc_jax.consistency.config import consistency_config

    candidates = [d for d in ("principal_curvature", "edge_texture", "reshading",
                              "depth_zbuffer", "keypoints2d", "keypoints3d", "edge_occlusion",
                              "normal") if d != domain]  # fmt: skip
    config = consistency_config(domain, candidates, "")
    with config.unlocked():
        config.batch_size = 8
        config.energy.reference_images = REFERENCE_IMAGES
        config.data.synthetic.buildings = REFERENCE_BUILDINGS
        config.data.synthetic.views = REFERENCE_VIEWS
        config.data.resolution = config.data.synthetic.size = resolution
        # The energy's networks come from the folder, with their own specs; the config's
        # others only have to be valid at this resolution (a small model's, in tests).
        fits = (resolution & -resolution).bit_length() - 1  # 2^fits divides the resolution
        for spec in config.networks.values():
            if spec.get("downsample", 0) > fits:
                spec.downsample = fits
    return config


def fit(domain: str, consistency_export: str, stats_file: str, workdir: str | None = None,
        models_dir: str | None = None, config=None,
        log: Callable[[str], None] = print) -> str | None:  # fmt: skip
    """Fits the statistics of `consistency_export` (rgb -> `domain`); returns their path, or
    None (with a message) for a workdir that has no saved config and none is given."""
    from xtc_jax.energy import command
    from xtc_jax.infra import run_config

    if workdir:
        config = config if config is not None else run_config.load(workdir)
        if config is None:
            log(f"no energy statistics at {stats_file}, and {workdir} holds no "
                f"{run_config.CONFIG_FILE} to fit them with (it was trained before configs were "
                "saved): energy maps skipped. Pass --config=CONFIG, the config it was trained "
                f"with, or run python -m xtc_jax.energy --config=CONFIG --workdir={workdir} once.")
            return None
        target = domains_lib.get(config.target).name
        if target != domain:
            raise ConfigError(f"{workdir} was trained for rgb->{target}, not rgb->{domain}: "
                              f"choose --task for {target}.")  # fmt: skip
        reference, models_dir = workdir, ""
        how = "with the workdir's config (once; missing path networks are trained first)"
    else:
        from xtc_jax.infra import export

        resolution = export.load_network(consistency_export).resolution
        config = published_reference_config(domain, resolution)
        reference = os.path.join(models_dir or ".", "energy_reference")
        how = (f"on {REFERENCE_IMAGES} synthetic images at {resolution} px rendered into "
               f"{reference} (once)")  # fmt: skip
    log(f"no energy statistics at {stats_file}: fitting them {how}")
    start = time.perf_counter()
    command.fit_statistics_for(config, reference, model_name=os.path.abspath(consistency_export),
                               models_dir=models_dir, log=log)  # fmt: skip
    from xtc_jax.energy.model import stats_path

    path = stats_path(consistency_export)
    log(f"energy statistics fitted in {time.perf_counter() - start:.0f} s: {path}")
    return path
