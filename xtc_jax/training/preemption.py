"""SIGTERM (what SLURM and Kubernetes send before killing a job): save, say so, exit 0.

`PreemptionSignal` is a context manager installing a SIGTERM handler that
only sets a flag; the loop asks `requested(step)` after each step and, once
it is true, saves a checkpoint of that step, logs one line and raises
`Preempted`, which the command line turns into exit status 0. Rerunning the
same command resumes from that checkpoint.

With several processes every one must stop at the same step, so the
question goes through JAX's preemption sync point (jax.distributed installs
its own SIGTERM notifier for it) instead of a local flag.
"""

from __future__ import annotations

import signal
import threading

import jax


class Preempted(Exception):
    """The run saved a checkpoint at `step` after SIGTERM; rerun the same command to resume."""

    def __init__(self, step: int, directory: str):
        super().__init__(f"stopped at step {step} after SIGTERM; checkpoint in {directory}")
        self.step = step
        self.directory = directory


class PreemptionSignal:
    """Within `with`, SIGTERM sets a flag instead of killing the process."""

    def __init__(self):
        self._received = threading.Event()
        self._previous = None
        self._installed = False

    def __enter__(self) -> PreemptionSignal:
        local = jax.process_count() == 1
        if local and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame) -> None:
        self._received.set()

    def requested(self, step: int) -> bool:
        """True once SIGTERM arrived (on every process at the same `step` when distributed)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self._received.is_set()

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
