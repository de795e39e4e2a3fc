"""The non-finite guard: a NaN or Inf in a step's losses or update never reaches a checkpoint.

`guard(step_fn, skip)` wraps any method's step. Inside the same jitted
function it checks every metric and every floating leaf of the new state;
the step then returns a third output, `finite` (a bool scalar). With
`skip=True` (train.on_nonfinite = "skip") a non-finite update is dropped on
the device: the old state is kept, leaf by leaf. Otherwise the loop stops
the run (`NonFiniteError`) after writing the offending batch to
`{run}/nonfinite/step_N.npz`, leaving the last good checkpoint as the one
a rerun resumes from.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from xtc_jax.errors import ConfigError, XtcError
from xtc_jax.infra import atomic

ON_NONFINITE = ("raise", "skip")


class NonFiniteError(XtcError):
    """A training step produced a non-finite loss or update; the message says which and where."""


def check_mode(mode: str) -> str:
    if mode not in ON_NONFINITE:
        raise ConfigError(f"train.on_nonfinite={mode!r}: use one of {', '.join(ON_NONFINITE)}.")
    return mode


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def guard(step_fn, skip: bool):
    """step(state, constants, batch) -> (state, metrics, finite); see the module doc."""

    def guarded(state, constants, batch):
        new_state, metrics = step_fn(state, constants, batch)
        finite = _all_finite(metrics) & _all_finite(new_state)
        if skip:
            new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
        return new_state, metrics, finite

    return guarded


def nonfinite_names(metrics: Mapping[str, float]) -> list[str]:
    """The metric names whose host values are NaN or infinite."""
    return [name for name, value in metrics.items() if not math.isfinite(float(value))]


def save_batch(directory: str, step: int, batch: Mapping[str, np.ndarray]) -> str:
    """Writes `batch` to {directory}/step_{step}.npz atomically (one file per process)."""
    os.makedirs(directory, exist_ok=True)
    suffix = f"_process{jax.process_index()}" if jax.process_count() > 1 else ""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in batch.items()})
    return atomic.write_bytes(os.path.join(directory, f"step_{step}{suffix}.npz"),
                              buffer.getvalue())  # fmt: skip


def error(step: int, metrics: Mapping[str, float], batch_path: str, last_good: int | None,
          checkpoint_dir: str) -> NonFiniteError:  # fmt: skip
    """The one message of a stopped run: the step, what was non-finite, and what to do."""
    names = nonfinite_names(metrics)
    what = (f"non-finite {', '.join(names)}" if names
            else "a non-finite update (gradient or new parameters) while every loss was finite")
    resume = (f"the last good checkpoint is step {last_good} in {checkpoint_dir}, which a rerun "
              "resumes from" if last_good else "no checkpoint was written yet")  # fmt: skip
    return NonFiniteError(
        f"step {step}: {what}. The batch is in {batch_path}; {resume}. Lower "
        "optimizer.learning_rate, check that batch's data, or set train.on_nonfinite=skip "
        "to skip such updates."
    )
