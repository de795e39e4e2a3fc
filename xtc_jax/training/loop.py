"""`train_and_evaluate(method, train, workdir)`: the resumable training loop of every method.

One reading order, as in google/flax examples and big_vision: set up the
mesh and state, the input pipeline, restore the latest checkpoint (state,
the method's host-side meta and the Grain iterator position), then step.
The loop knows steps, checkpoints, evaluation cadence, logging, preemption
and the non-finite guard, and nothing about any method (`method.py` says
what a method supplies). Metrics are fetched a step late so the host never
waits on the device, except before a checkpoint, which is only written once
the step it holds is known to be finite.

`train` is a config's `train` section: steps, eval_every, checkpoint_every,
keep_checkpoints, best_metric, log_every_seconds, on_nonfinite; `seed`
seeds the state.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import numpy as np

from xtc_jax.data import pipeline
from xtc_jax.errors import ConfigError
from xtc_jax.infra import checkpoint as ckpt_lib
from xtc_jax.infra import sharding
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.infra.writers import MetricWriter, Progress, log
from xtc_jax.training import nonfinite
from xtc_jax.training.method import Method
from xtc_jax.training.preemption import Preempted, PreemptionSignal


def check_train_config(train) -> None:
    """ConfigError for train settings that cannot work together, before any compilation."""
    nonfinite.check_mode(train.get("on_nonfinite", "raise"))
    for field in ("steps", "eval_every", "checkpoint_every"):
        if train[field] < 1:
            raise ConfigError(f"train.{field}={train[field]} must be a positive number of steps.")
    if train.best_metric and train.checkpoint_every % train.eval_every:
        raise ConfigError(
            f"train.best_metric={train.best_metric!r} ranks checkpoints by evaluation, so "
            f"train.checkpoint_every ({train.checkpoint_every}) must be a multiple of "
            f"train.eval_every ({train.eval_every})."
        )


def _host(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def train_and_evaluate(
    method: Method, train, seed: int, workdir: str, log: Callable[[str], None] = log
) -> dict:
    """Trains `method` in run folder `workdir` (resuming its checkpoints); returns the final
    validation metrics plus "export" (the exported model's folder) and the method's meta.

    Raises `Preempted` after saving a checkpoint when SIGTERM arrives, and
    `NonFiniteError` for a non-finite step unless train.on_nonfinite is "skip".
    """
    check_train_config(train)
    skip_nonfinite = train.get("on_nonfinite", "raise") == "skip"
    os.makedirs(workdir, exist_ok=True)

    # --- Mesh and state: replicated on every device; constants are never donated.
    mesh = sharding.make_mesh()
    replicated = sharding.replicated(mesh)
    state = method.init_state(jax.random.PRNGKey(seed))
    # Every leaf its own buffer (initialisers may share zeros), as donation requires.
    state = jax.device_put(jax.tree.map(np.array, jax.device_get(state)), replicated)
    constants = jax.device_put(method.constants(), replicated)

    # --- Input pipeline.
    iterator = iter(method.train_data())

    # --- Load checkpoint.
    checkpoint_dir = workdir_lib.checkpoints(workdir)
    checkpoints = ckpt_lib.Checkpoints(
        checkpoint_dir, keep=train.keep_checkpoints, save_every=train.checkpoint_every,
        best_metric=train.best_metric or None,
    )  # fmt: skip
    start = checkpoints.latest_step() or 0
    skipped = 0
    if start:
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=replicated), state
        )
        state, meta = checkpoints.restore(start, abstract_state=abstract, data_iterator=iterator)
        skipped = int(meta.pop("skipped_updates", 0))
        method.restore_meta(meta)
        log(f"resumed from step {start} in {workdir}")

    # --- Train loop.
    total = train.steps
    state_sharding = jax.tree.map(lambda _: replicated, state)
    compiled: dict = {}
    writer = MetricWriter(workdir_lib.logs(workdir))
    progress = Progress(total, every_seconds=train.log_every_seconds)
    pending = None  # (done, device metrics, finite flag, host batch) of the step before
    metrics: dict[str, float] = {}
    last_good = start or None
    log(f"training {method.describe()} for {total} steps from step {start}, "
        f"{len(jax.devices())} device(s)")  # fmt: skip

    def settle(done, device_metrics, finite, batch) -> None:
        """Fetches one step's metrics: logged, or the run stopped if they are not finite."""
        nonlocal skipped
        host = _host(device_metrics)
        if not bool(finite):
            if not skip_nonfinite:
                path = nonfinite.save_batch(workdir_lib.nonfinite(workdir), done, batch)
                checkpoints.close()
                raise nonfinite.error(done, host, path, last_good, checkpoint_dir)
            skipped += 1
            log(f"step {done}: non-finite update skipped "
                f"({', '.join(nonfinite.nonfinite_names(host)) or 'update'}); {skipped} so far")
        progress.update(done, host)
        if skip_nonfinite:  # the count of skipped updates goes with the losses
            host = dict(host, skipped_updates=skipped)
        writer.write_scalars(done, host, split="train")

    def save(done: int, evaluated: bool) -> None:
        """A checkpoint of `done`; ranked by the val metrics when they are this step's."""
        nonlocal last_good
        meta = dict(method.checkpoint_meta(), skipped_updates=skipped)
        checkpoints.save(done, state, data_iterator=iterator, meta=meta, force=True,
                         metrics=metrics if train.best_metric and evaluated else None)
        last_good = done

    with PreemptionSignal() as preemption:
        for step in range(start, total):
            key, state = method.step_variant(step, state)
            if key not in compiled:
                fn = nonfinite.guard(method.make_step(key), skip_nonfinite)
                compiled[key] = jax.jit(fn, donate_argnums=0,
                                        out_shardings=(state_sharding, replicated, replicated))
            batch = next(iterator)
            batch.pop(pipeline.INDEX_KEY, None)
            global_batch = sharding.host_batch_to_global(batch, mesh)
            state, new_metrics, finite = compiled[key](state, constants, global_batch)
            if pending is not None:
                settle(*pending)
            done = step + 1
            pending = (done, new_metrics, finite, batch)
            stop = preemption.requested(done)
            due_checkpoint = done % train.checkpoint_every == 0 or done == total or stop
            if due_checkpoint:  # only a step known to be finite is saved
                settle(*pending)
                pending = None
            evaluated = done % train.eval_every == 0 or done == total
            if evaluated:
                metrics = method.evaluate(state, constants, done, writer)
            if due_checkpoint:
                save(done, evaluated)
            if stop:
                checkpoints.wait()
                checkpoints.close()
                writer.close()
                log(f"SIGTERM: saved a checkpoint of step {done} in {checkpoint_dir}; "
                    "rerun the same command to resume")
                raise Preempted(done, checkpoint_dir)
    checkpoints.wait()  # the last step was a checkpoint step: every step's metrics are settled
    checkpoints.close()
    if not metrics and start >= total:
        metrics = method.evaluate(state, constants, total, writer)
    writer.close()

    # --- Export.
    export_dir = workdir_lib.export(workdir)
    method.export(state, export_dir)
    if hasattr(iterator, "close"):
        iterator.close()
    return dict(metrics, export=export_dir, **method.checkpoint_meta())
