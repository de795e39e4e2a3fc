"""Training checkpoints (Orbax CheckpointManager) and standalone model exports.

`Checkpoints` saves, per step, three items of one Orbax checkpoint
``<directory>/<step>/``:

- "state": any pytree of jax/numpy arrays (params of the trainable networks,
  optimizer state, step, rng key, win-rate statistics), `StandardSave`;
- "data": the grain iterator's position (`pipeline.save_args`), optional;
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
preempted run resumes from where it stopped.

`export_model`/`load_exported` write and read a standalone inference export
(``params/`` Orbax checkpoint + ``model.json``) that needs no training state.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from xtc_jax.data import pipeline
from xtc_jax.errors import ConfigError, DataError

STATE, DATA, META = "state", "data", "meta"
EXPORT_PARAMS, EXPORT_CONFIG = "params", "model.json"
_policies = ocp.checkpoint_managers
_barrier_ids = itertools.count()


def _to_json(value: Any, what: str) -> Any:
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
      save_every: `save` writes when step % save_every == 0, on preemption
        (a SIGTERM registered with jax's preemption sync manager), or with force=True.
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
            save_decision_policy=_policies.AnySavePolicy(
                [
                    _policies.FixedIntervalPolicy(save_every),
                    _policies.PreemptionCheckpointingPolicy(),
                ]
            ),
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

    def should_save(self, step: int) -> bool:
        """Whether `save(step, ...)` would write (interval or preemption); cheap to ask."""
        return self._manager.should_save(step)

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
            META: ocp.args.JsonSave(_to_json(dict(meta or {}), "checkpoint meta")),
        }
        if data_iterator is not None:
            items[DATA] = pipeline.save_args(data_iterator)
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

    def reached_preemption(self, step: int) -> bool:
        """True once a preemption signal reached every process (then save and exit)."""
        return self._manager.reached_preemption(step)

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
            items[DATA] = pipeline.restore_args(data_iterator)
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


def _is_export(directory: epath.Path) -> bool:
    return (directory / EXPORT_PARAMS).is_dir() and (directory / EXPORT_CONFIG).is_file()


def _sync(name: str) -> None:
    ocp.multihost.sync_global_processes(f"xtc_export_{name}_{next(_barrier_ids)}")


def export_model(
    directory: str | epath.PathLike,
    params: Any,
    model_config: Mapping[str, Any],
    overwrite: bool = True,
) -> epath.Path:
    """Writes ``directory/params/`` (Orbax) and ``directory/model.json`` for inference.

    `model_config` says how to rebuild the network (arch, downsample,
    out_channels, width, resolution, domain names, ...). Written into a
    hidden sibling folder and renamed into place when complete, so a crash
    never leaves a half export at `directory`. An existing export there is
    replaced (unless `overwrite` is False); any other existing path is an
    error. Call it on every process.
    """
    directory = epath.Path(directory).absolute()
    config_text = json.dumps(_to_json(dict(model_config), "model_config"), indent=2)
    if directory.exists() and not (overwrite and _is_export(directory)):
        raise DataError(
            f"{directory} already exists: export to a new directory"
            + (", or pass overwrite=True." if _is_export(directory) else " or delete it.")
        )
    tmp = directory.parent / f".{directory.name}.export-tmp"
    primary = jax.process_index() == 0
    if primary:
        if tmp.exists():
            tmp.rmtree()  # left by an interrupted export
        tmp.mkdir(parents=True)
    _sync("start")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp / EXPORT_PARAMS, params)
        checkpointer.wait_until_finished()
    if primary:
        (tmp / EXPORT_CONFIG).write_text(config_text)
        if directory.exists():
            old = directory.parent / f".{directory.name}.export-old"
            if old.exists():
                old.rmtree()
            directory.rename(old)
            tmp.rename(directory)
            old.rmtree()
        else:
            tmp.rename(directory)
    _sync("done")
    return directory


def load_exported(
    directory: str | epath.PathLike, sharding: jax.sharding.Sharding | None = None
) -> tuple[Any, dict[str, Any]]:
    """Reads an `export_model` directory: (params, model_config).

    Params come back as NumPy arrays, or as jax Arrays placed with `sharding`.
    """
    directory = epath.Path(directory).absolute()
    how = "export one with xtc_jax.checkpoint.export_model(directory, params, model_config)"
    if not directory.exists():
        raise DataError(f"{directory} does not exist: {how}.")
    if not _is_export(directory):
        raise DataError(
            f"{directory} is not an exported model: expected {EXPORT_PARAMS}/ and "
            f"{EXPORT_CONFIG}; {how}."
        )
    try:
        model_config = json.loads((directory / EXPORT_CONFIG).read_text())
    except ValueError as error:
        raise DataError(
            f"{directory / EXPORT_CONFIG} is not valid JSON ({error}): export the model again."
        ) from error
    path = directory / EXPORT_PARAMS
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.metadata(path).item_metadata.tree
        if sharding is None:
            restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
            with ocp.PyTreeCheckpointer() as reader:
                params = reader.restore(
                    path, args=ocp.args.PyTreeRestore(restore_args=restore_args)
                )
        else:
            abstract = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree
            )
            params = checkpointer.restore(path, abstract)
    return params, model_config
