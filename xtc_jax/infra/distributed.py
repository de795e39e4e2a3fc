"""Joining the processes of a multi-host run (jax.distributed), from SLURM, Kubernetes or env.

`wanted(flag)` decides whether to join: the --distributed flag, else on
when SLURM or JAX_COORDINATOR_ADDRESS announce several processes.
`initialize()` calls `jax.distributed.initialize`: SLURM is detected by JAX;
our launchers (launch/local_processes.sh, the Kubernetes manifest) set
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.
"""

from __future__ import annotations

import os


def wanted(flag: bool | None, environ=os.environ) -> bool:
    """Whether this process should join a multi-process run."""
    if flag is not None:
        return flag
    return bool(environ.get("JAX_COORDINATOR_ADDRESS")) or int(environ.get("SLURM_NTASKS", "1")) > 1


def initialize() -> None:
    """Joins the processes of a multi-host run, so jax.devices() spans every host."""
    import jax

    count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only runs
    jax.distributed.initialize(
        num_processes=int(count) if count else None,
        process_id=int(index) if index else None,
    )
    print(f"process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.device_count()} devices in all", flush=True)  # fmt: skip
