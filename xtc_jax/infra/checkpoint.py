"""Training checkpoints: one Orbax CheckpointManager, async, atomic, keep the last or best N.

`Checkpoints` saves, per step, three items of one Orbax checkpoint
``<directory>/<step>/``:

- "state": any pytree of jax/numpy arrays (params of the trainable networks,
  optimizer state, step, rng key, win-rate statistics), `StandardSave`;
- "data": the grain iterator's position, optional;
- "meta": JSON (chosen losses, a config snapshot, ...).

Atomic. Orbax writes each step into ``<step>.orbax-checkpoint-tmp-<n>/`` and
renames it to ``<step>/`` only when every item (and every process) is done,
so a crash mid-save leaves a tmp folder that `latest_step`/`restore` ignore
(and that the next `Checkpoints` on the directory deletes); the previous
checkpoints are untouched. Saves are asynchronous by default: `save` returns
once the arrays are copied off the device and the write goes on in a
background thread; `wait`/`close` block until it is on disk.

Multi-host: every process calls `save`/`restore` with the same step; Orbax
writes each array shard once, from the process that holds it, and
synchronises the processes around the rename. The grain position is written
per process (``process_<i>-of-<n>.json``).

Retention: the latest `keep` checkpoints; with `best_metric`, the `keep` best
by that metric (among saves given `metrics`) plus always the latest one, so a
preempted run resumes from where it stopped (the training loop saves the
current step when SIGTERM arrives, `training/preemption.py`).

Inference exports (the trained network alone) are `infra/export.py`.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from xtc_jax.errors import ConfigError, DataError

STATE, DATA, META = "state", "data", "meta"
_policies = ocp.checkpoint_managers


def to_json(value: Any, what: str) -> Any:
    """`value` as plain JSON types (NumPy/JAX scalars and arrays become numbers and lists)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
            return np.asarray(obj).tolist()
        if isinstance(obj, (tuple, set, frozenset)):
            return list(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        return json.loads(json.dumps(value, default=default))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{what} must be JSON-serialisable (dicts, lists, numbers, str): {error}."
        ) from error


def _path_str(path: tuple[Any, ...]) -> str:
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
        else:
            names.append(str(key))
    return "/".join(names)


class Checkpoints:
    """Orbax CheckpointManager over ``directory``: async, atomic, keeps the last/best `keep`.

    Args:
      directory: where the step folders live (created if missing; gs:// works).
      keep: checkpoints retained (the latest, or the best with `best_metric`).
      save_every: `save` writes when step % save_every == 0, or with force=True (the
        training loop forces its saves, including the one it makes on SIGTERM).
      best_metric: key of the `metrics` given to `save` to rank checkpoints by.
      best_mode: "min" (e.g. a loss) or "max" (e.g. an accuracy).
      async_save: write in a background thread (False: `save` blocks).
    """

    def __init__(
        self,
        directory: str | epath.PathLike,
        keep: int = 3,
        save_every: int = 1000,
        best_metric: str | None = None,
        best_mode: str = "min",
        async_save: bool = True,
    ):
        if keep < 1:
            raise ConfigError(f"keep={keep}: keep at least one checkpoint.")
        if save_every < 1:
            raise ConfigError(f"save_every={save_every} must be a positive number of steps.")
        if best_mode not in ("min", "max"):
            raise ConfigError(f"best_mode={best_mode!r}; choose 'min' or 'max'.")
        self.directory = epath.Path(directory).absolute()
        self.best_metric = best_metric
        self.best_mode = best_mode
        best_fn = None if best_metric is None else operator.itemgetter(best_metric)
        preservation = _policies.LatestN(n=keep)
        if best_fn is not None:  # the best `keep` (sorted descending: the best come last)
            best = _policies.BestN(
                get_metric_fn=best_fn,
                reverse=best_mode == "min",
                n=keep,
                keep_checkpoints_without_metrics=False,
            )
            preservation = _policies.AnyPreservationPolicy([_policies.LatestN(n=1), best])
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=_policies.FixedIntervalPolicy(save_every),
            preservation_policy=preservation,
            best_fn=best_fn,  # overridden by preservation_policy; makes orbax store the metrics
            best_mode=best_mode,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                STATE: ocp.StandardCheckpointHandler(),
                META: ocp.JsonCheckpointHandler(),
                DATA: grain.checkpoint.CheckpointHandler(),
            },
        )

    def save(
        self,
        step: int,
        state: Any,
        data_iterator: grain.DatasetIterator | None = None,
        meta: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Saves step `step` if due (or `force`); returns whether it did.

        Call it on every process. `metrics` (name -> number) rank the
        checkpoint when `best_metric` is set. An existing step is never
        overwritten (returns False).
        """
        if not force and not self._manager.should_save(step):
            return False
        if step in self._manager.all_steps():
            return False
        if metrics is not None:
            metrics = {name: float(np.asarray(value)) for name, value in metrics.items()}
            if self.best_metric is not None and self.best_metric not in metrics:
                raise ConfigError(
                    f"metrics {sorted(metrics)} lack best_metric {self.best_metric!r}: "
                    "pass it to save() or change best_metric."
                )
        items = {
            STATE: ocp.args.StandardSave(state),
            META: ocp.args.JsonSave(to_json(dict(meta or {}), "checkpoint meta")),
        }
        if data_iterator is not None:
            items[DATA] = grain.checkpoint.CheckpointSave(item=data_iterator)
        return self._manager.save(
            step, args=ocp.args.Composite(**items), metrics=metrics, force=force
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (tmp folders are not counted), or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def best_step(self) -> int | None:
        """The kept step with the best `best_metric` (None without best_metric)."""
        return None if self.best_metric is None else self._manager.best_step()

    def restore(
        self,
        step: int | None = None,
        abstract_state: Any = None,
        data_iterator: grain.DatasetIterator | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Restores (state, meta) of `step` (default: the latest).

        `abstract_state` is a tree of `jax.ShapeDtypeStruct` with shardings
        (e.g. `jax.eval_shape` of the state initialiser, each leaf given the
        mesh's replicated `NamedSharding`); the arrays come back with those
        shapes, dtypes and shardings. None restores them as saved (only on the
        same device layout). `data_iterator` (a fresh iterator of the same
        pipeline) is moved in place to the saved position.
        """
        self._manager.wait_until_finished()
        steps = self.all_steps()
        if step is None:
            step = self.latest_step()
            if step is None:
                raise DataError(
                    f"no complete checkpoint in {self.directory}: start from scratch or point "
                    "at the workdir of a run that saved one."
                )
        elif step not in steps:
            raise DataError(f"no checkpoint for step {step} in {self.directory}; have {steps}.")
        if abstract_state is not None:
            self._check_compatible(step, abstract_state)
        items = {STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}
        if data_iterator is not None:
            if not (self.directory / str(step) / DATA).exists():
                raise DataError(
                    f"checkpoint {self.directory / str(step)} holds no data iterator position "
                    "(saved without data_iterator): restore without data_iterator."
                )
            items[DATA] = grain.checkpoint.CheckpointRestore(item=data_iterator)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored[STATE], dict(restored[META] or {})

    def _check_compatible(self, step: int, abstract_state: Any) -> None:
        """DataError naming the first leaf whose path or shape differs from the checkpoint's."""
        saved_tree = self._manager.item_metadata(step)[STATE].tree
        saved = {_path_str(p): m for p, m in jax.tree_util.tree_flatten_with_path(saved_tree)[0]}
        wanted = {
            _path_str(p): a for p, a in jax.tree_util.tree_flatten_with_path(abstract_state)[0]
        }
        where = self.directory / str(step)
        fix = "the config (networks, optimizer, losses) differs from the run that wrote it"
        missing, extra = sorted(wanted.keys() - saved.keys()), sorted(saved.keys() - wanted.keys())
        if missing or extra:
            raise DataError(
                f"checkpoint {where} does not match the state: missing {missing[:5]}, "
                f"unexpected {extra[:5]}; {fix}. Use the same config or a fresh workdir."
            )
        for name, want in wanted.items():
            if jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
                continue  # stored as its raw key data
            if tuple(saved[name].shape) != tuple(want.shape):
                raise DataError(
                    f"checkpoint {where}: {name!r} has shape {tuple(saved[name].shape)} but the "
                    f"state expects {tuple(want.shape)}; {fix}. Use the same config or a fresh "
                    "workdir."
                )

    def wait(self) -> None:
        """Blocks until the pending asynchronous save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager's threads."""
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
