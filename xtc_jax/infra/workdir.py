"""Every folder of a workdir, named once.

A workdir (`--workdir`) holds the prepared data, the networks cache and one
run folder per stage; a run folder holds the run's checkpoints, logs, plots,
export and any non-finite batches:

  {workdir}/data/                    prepared data ($XTC_DATA_DIR overrides)
  {workdir}/networks/{src}__{dst}/   a frozen network's own run (a transfer)
  {workdir}/baseline/  consistency/  the consistency experiment's two runs
  {workdir}/warmstart/               the baseline's export the consistency run starts from
  {workdir}/energy/{model}/          the energy command's report
  {workdir}/eval/                    --mode=eval results
  {run}/checkpoints/ logs/ plots/ export/ nonfinite/
A run whose config is a single transfer uses the workdir itself as its run folder.
"""

from __future__ import annotations

import os

DATA = "data"
NETWORKS = "networks"
BASELINE = "baseline"
CONSISTENCY = "consistency"
WARMSTART = "warmstart"
ENERGY = "energy"
EVAL = "eval"
#: Inside a run folder.
CHECKPOINTS = "checkpoints"
LOGS = "logs"
PLOTS = "plots"
EXPORT = "export"
NONFINITE = "nonfinite"


def data_dir(workdir: str) -> str:
    """Where prepared data lives: $XTC_DATA_DIR, else {workdir}/data."""
    return os.environ.get("XTC_DATA_DIR") or os.path.join(workdir, DATA)


def networks_dir(workdir: str) -> str:
    return os.path.join(workdir, NETWORKS)


def network_run(networks: str, src: str, dst: str) -> str:
    """The run folder of edge src->dst inside a networks cache folder."""
    return os.path.join(networks, f"{src}__{dst}")


def stage(workdir: str, name: str) -> str:
    """A stage's run folder ({workdir}/baseline, .../consistency) or the warm-start export."""
    return os.path.join(workdir, name)


def energy_dir(workdir: str, model: str) -> str:
    return os.path.join(workdir, ENERGY, model)


def eval_dir(workdir: str) -> str:
    return os.path.join(workdir, EVAL)


def checkpoints(run: str) -> str:
    return os.path.join(run, CHECKPOINTS)


def logs(run: str) -> str:
    return os.path.join(run, LOGS)


def plots(run: str) -> str:
    return os.path.join(run, PLOTS)


def export(run: str) -> str:
    """The trained network alone, for inference (`infra/export.py`)."""
    return os.path.join(run, EXPORT)


def nonfinite(run: str) -> str:
    """Batches that gave a non-finite loss or update (`training/nonfinite.py`)."""
    return os.path.join(run, NONFINITE)


def check_workdir(workdir: str, need_bytes: int = 0, need_dir: str = "", what: str = "") -> None:
    """ConfigError unless `workdir` can be created and written, and the filesystem of
    `need_dir` (default: the workdir) has `need_bytes` free for `what`.

    Runs before any stage, so a folder that cannot be made or a full disk ends the command
    at once instead of after minutes of rendering.
    """
    import shutil
    import tempfile

    from xtc_jax.errors import ConfigError

    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"--workdir={workdir}: cannot create or write it ({reason}); choose "
                          "a folder you can write to.") from None  # fmt: skip
    if need_bytes <= 0:
        return
    target = need_dir or workdir
    probe = target
    while not os.path.exists(probe):  # the data folder may not exist yet
        probe = os.path.dirname(probe) or "."
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise ConfigError(
            f"{target} has {free / 1e9:.2f} GB free, but {what or 'this run'} needs about "
            f"{need_bytes / 1e9:.2f} GB there: free some space, or put the data elsewhere "
            "(--config.data.cache_dir=DIR or XTC_DATA_DIR)."
        )
