"""The main command's train mode for consistency configs: the experiment, then its energy.

`consistency/experiment.py` trains the frozen networks, the baseline and the
consistency model. When it has trained a consistency model, this fits the
consistency energy's statistics for it (`config.energy.fit_after_training`, on
by default): the K -> target networks the cache lacks, then the reference
images' terms. They are cheap beside the training, and with them the demo, the
web demo and the video tool show energy maps from the start.
"""

from __future__ import annotations

from collections.abc import Callable

from xtc_jax.consistency import experiment
from xtc_jax.energy import command
from xtc_jax.infra.writers import log as log_line


def run(config, workdir: str, log: Callable[[str], None] = log_line) -> dict:
    """`experiment.run`, then the energy statistics of its consistency model."""
    results = experiment.run(config, workdir, log)
    if "consistency" in results and (config.get("energy") or {}).get("fit_after_training"):
        log("== consistency energy: statistics for the demo, the web demo and the video tool")
        command.fit_statistics_for(config, workdir, log=log)
    return results
