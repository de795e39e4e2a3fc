"""Joining the processes of a multi-host run (jax.distributed), from SLURM, Kubernetes or env.

`wanted(flag)` decides whether to join: the --distributed flag, else on
when SLURM, JAX_COORDINATOR_ADDRESS or a Kubernetes Indexed Job
(JOB_COMPLETION_INDEX with JAX_NUM_PROCESSES > 1) announce several processes.
`initialize()` calls `jax.distributed.initialize`: SLURM is detected by JAX;
our launchers (launch/local_processes.sh, the manifest of infra/kubernetes.py)
set JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES, and the process id comes
from JAX_PROCESS_ID, else Kubernetes' JOB_COMPLETION_INDEX. It then starts the
watchdog (infra/watchdog.py) that ends this process, naming the lost one, when
a peer stops responding for XTC_PEER_TIMEOUT_SECONDS (default 120).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

PEER_TIMEOUT_ENV = "XTC_PEER_TIMEOUT_SECONDS"
DEFAULT_PEER_TIMEOUT_S = 120.0


def wanted(flag: bool | None, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process should join a multi-process run."""
    if flag is not None:
        return flag
    processes = int(environ.get("JAX_NUM_PROCESSES") or 1)
    indexed_job = "JOB_COMPLETION_INDEX" in environ and processes > 1
    slurm = int(environ.get("SLURM_NTASKS", "1")) > 1
    return bool(environ.get("JAX_COORDINATOR_ADDRESS")) or slurm or indexed_job


def process_id(environ: Mapping[str, str] = os.environ) -> int | None:
    """JAX_PROCESS_ID, else JOB_COMPLETION_INDEX (Kubernetes Indexed Job), else None (JAX's)."""
    index = environ.get("JAX_PROCESS_ID") or environ.get("JOB_COMPLETION_INDEX")
    return int(index) if index else None


def peer_timeout_s(seconds: float | None = None, environ: Mapping[str, str] = os.environ) -> float:
    """How long a silent peer is waited for: `seconds`, else XTC_PEER_TIMEOUT_SECONDS, else 120."""
    if seconds is None:
        seconds = float(environ.get(PEER_TIMEOUT_ENV) or DEFAULT_PEER_TIMEOUT_S)
    if not seconds > 0:
        raise ValueError(f"{PEER_TIMEOUT_ENV}={seconds}: the peer timeout must be > 0 seconds.")
    return seconds


def initialize(peer_timeout_seconds: float | None = None) -> None:
    """Joins the processes of a multi-host run, so jax.devices() spans every host.

    A process lost later ends the others within about `peer_timeout_s` seconds (the
    watchdog); jax's own heartbeat gets twice that, as a backstop.
    """
    import jax
    from jax._src import distributed as jax_distributed  # its client: no public accessor

    from xtc_jax.infra import watchdog

    timeout = peer_timeout_s(peer_timeout_seconds)
    count = os.environ.get("JAX_NUM_PROCESSES")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only runs
    jax.distributed.initialize(
        num_processes=int(count) if count else None,
        process_id=process_id(),
        heartbeat_timeout_seconds=math.ceil(2 * timeout),
    )
    print(f"process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.device_count()} devices in all", flush=True)  # fmt: skip
    state = jax_distributed.global_state
    if state.num_processes > 1:
        watchdog.Watchdog(state.client, state.process_id, state.num_processes, timeout).start()


def finish() -> None:
    """Marks this process's run finished for the watchdog (a no-op without one)."""
    from xtc_jax.infra import watchdog

    watchdog.mark_done()
