"""Grain input pipeline: shuffle, shard by process, decode/augment, batch, checkpoint.

Pipeline (grain's `MapDataset` API, then one `IterDataset` stage)::

  range(len(source))                 source indices
  .shuffle(seed)                     a new permutation every epoch (grain reseeds by epoch)
  .slice(p : N//P*P : P)             this process's shard: equal length on every process,
                                     so all processes step in lockstep (N % P dropped)
  .map_with_index(load+transform)    record -> {domain: float32 HWC, "index": int32}
  .batch(B/P, fill corrupt slots)    per-process batch, remainder dropped for training
  .repeat(num_epochs)
  .to_iter_dataset(threads)          threaded reads inside each process / worker
  .mp_prefetch(worker_count)         worker w produces batches w, w+W, ...; interleaved back
  .map(count skipped)                main process: warn and count unreadable examples

Batches are formed at the `MapDataset` level, before `mp_prefetch` slices the
work among workers, so batch b always holds the same examples whatever the
worker count: the output is a pure function of (source, seed, process
index/count, batch size). Augmentation draws from a generator seeded by
(seed, epoch, source index), so it is also independent of workers and of the
process layout.

Unreadable examples. A corrupt or wrongly formatted PNG raises `DataError` in
the transform. With ``on_error="skip"`` (default) the example is dropped from
its batch and its slot is filled with another example of the same batch (so
every batch keeps its static shape for the jitted step); the main process logs
a warning naming building/point/view/domain and counts it in
`DataPipeline.stats`. With ``on_error="raise"`` the DataError propagates. A
batch whose every example is unreadable always raises.

Checkpointing. ``iter(pipeline)`` is a `grain.DatasetIterator`; save and
restore it with Orbax through grain's `grain.checkpoint.CheckpointSave` /
`CheckpointRestore`, handled by `grain.checkpoint.CheckpointHandler` (one JSON
file per process; `infra/checkpoint.py` does this for training runs). A restored
iterator continues with exactly the batches the saved one would have produced.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grain
import numpy as np

from xtc_jax import domains as domains_lib
from xtc_jax.data import transforms
from xtc_jax.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: Batch key with each example's source index (int32).
INDEX_KEY = "index"
# Internal batch key carrying skip messages from the workers to the main process.
_SKIPPED_KEY = "_skipped"
ON_ERROR = ("skip", "raise")


#: A custom per-example transform: (record, rng or None when not augmenting) -> arrays.
ExampleFn = Callable[[Any, "np.random.Generator | None"], dict]


class RandomAccessSource(Protocol):
    """What the pipeline reads: records of 'building', 'point', 'view' and PNG bytes per domain."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


@dataclasses.dataclass
class PipelineStats:
    """Counters updated in the main process as batches are consumed.

    `skipped` counts unreadable examples since this pipeline object was made
    (not restored from checkpoints); `last_errors` keeps the latest messages.
    """

    skipped: int = 0
    last_errors: list[str] = dataclasses.field(default_factory=list)
    max_kept: int = 20

    def record(self, message: str) -> None:
        self.skipped += 1
        self.last_errors = [*self.last_errors, message][-self.max_kept :]


@dataclasses.dataclass(frozen=True)
class _Skipped:
    """Marker returned instead of an example whose files could not be read."""

    message: str


class _LoadExample:
    """map_with_index transform: (position, source index) -> example dict or _Skipped."""

    def __init__(
        self,
        source: RandomAccessSource,
        domains: tuple[str, ...],
        resolution: int,
        seed: int,
        augment: bool,
        shard_len: int,
        on_error: str,
        example_fn: ExampleFn | None = None,
    ):
        self.example_fn = example_fn
        self.source = source
        self.domains = domains
        self.resolution = resolution
        self.seed = seed
        self.augment = augment
        self.shard_len = shard_len
        self.on_error = on_error

    def __call__(self, position: int, source_index: Any) -> dict[str, np.ndarray] | _Skipped:
        source_index = int(source_index)
        epoch = position // self.shard_len
        rng = np.random.default_rng((self.seed, epoch, source_index)) if self.augment else None
        try:
            record = self.source[source_index]
            if self.example_fn is not None:
                example = self.example_fn(record, rng)
            else:
                augment = transforms.draw_augment(rng) if rng is not None else transforms.NO_AUGMENT
                example = transforms.transform_example(record, self.domains, self.resolution,
                                                       augment)  # fmt: skip
        except DataError as error:
            if self.on_error == "raise":
                raise
            return _Skipped(f"example {source_index} skipped: {error}")
        example[INDEX_KEY] = np.int32(source_index)
        return example


def _stack_or_fill(examples: Sequence[dict[str, np.ndarray] | _Skipped]) -> dict[str, np.ndarray]:
    """Stacks examples into a batch; unreadable slots get another example of the batch."""
    good = [e for e in examples if not isinstance(e, _Skipped)]
    skipped = [e.message for e in examples if isinstance(e, _Skipped)]
    if not good:
        raise DataError(
            f"every example of a batch of {len(examples)} is unreadable; first error: {skipped[0]}"
        )
    if skipped:
        filled, k = [], 0
        for example in examples:
            if isinstance(example, _Skipped):
                example, k = good[k % len(good)], k + 1
            filled.append(example)
    else:
        filled = good
    batch = {key: np.stack([e[key] for e in filled]) for key in good[0]}
    batch[_SKIPPED_KEY] = np.array(skipped, dtype=np.str_)
    return batch


class _CountSkipped:
    """Main-process map: pops the skip messages, logs and counts them."""

    def __init__(self, stats: PipelineStats):
        self.stats = stats

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for message in batch.pop(_SKIPPED_KEY).tolist():
            self.stats.record(message)
            logger.warning("%s (%d skipped so far)", message, self.stats.skipped)
        return batch


@dataclasses.dataclass
class DataPipeline:
    """A built input pipeline: iterate it for per-process batches (dicts of NumPy arrays).

    Each batch maps every requested domain to float32 (B, H, W, C) and
    "index" to the int32 source indices, B = `per_process_batch_size`.
    """

    dataset: grain.IterDataset
    stats: PipelineStats
    domains: tuple[str, ...]
    per_process_batch_size: int
    steps_per_epoch: int
    process_index: int
    process_count: int

    def __iter__(self) -> grain.DatasetIterator:
        return iter(self.dataset)


def _process_layout(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ConfigError(f"process_index {process_index} not in [0, {process_count}).")
    return process_index, process_count


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
    """global_batch_size / process_count, with a ConfigError if it does not divide."""
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ConfigError(
            f"global_batch_size={global_batch_size} must be a positive multiple of the number "
            f"of processes ({process_count}): each process loads an equal share. Use e.g. "
            f"{max(1, round(global_batch_size / process_count)) * process_count}."
        )
    return global_batch_size // process_count


def _ensure_absl_flags_parsed() -> None:
    """Grain's worker start-up reads absl flags; outside an absl app nobody parsed them.

    Marking them parsed keeps their defaults; an absl app that parses its
    command line later (or already did) is unaffected.
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_dataset(
    source: RandomAccessSource,
    domains: Sequence[str],
    resolution: int,
    global_batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    augment: bool = False,
    worker_count: int = 0,
    *,
    drop_remainder: bool = True,
    on_error: str = "skip",
    read_threads: int = 4,
    prefetch_batches: int = 4,
    worker_buffer_size: int = 2,
    process_index: int | None = None,
    process_count: int | None = None,
    example_fn: ExampleFn | None = None,
) -> DataPipeline:
    """Builds the Grain pipeline over `source` for this JAX process.

    Args:
      source: random-access records (see `RandomAccessSource`); must be
        picklable when `worker_count` > 0.
      domains: domain names (or aliases) to produce, e.g. ["rgb", "normal", "mask_valid"].
      resolution: output height = width.
      global_batch_size: batch size over all processes; each process yields
        global_batch_size / process_count examples per batch.
      seed: seeds the shuffle (a new order every epoch) and the augmentation.
      shuffle: shuffle the examples (False: source order, e.g. for evaluation).
      num_epochs: passes over the data; None repeats forever.
      augment: the original's zoom crop and rgb colour jitter (training only).
      worker_count: worker processes for decoding (0: threads in this process).
        The output does not depend on it.
      drop_remainder: drop each epoch's last partial batch (keep True for training).
      on_error: "skip" unreadable examples with a warning, or "raise" their DataError.
      read_threads: decoding threads in this process or in each worker.
      prefetch_batches: batches buffered ahead by the reading threads.
      worker_buffer_size: batches buffered per worker process.
      process_index, process_count: override jax.process_index()/process_count().
      example_fn: a per-example transform of the source's records instead of the
        Taskonomy domains' decoding (`domains` and `resolution` are then unused):
        `example_fn(record, rng)`, rng a seeded Generator when augmenting, else None.
    """
    domain_names = tuple(domains_lib.get(name).name for name in domains)
    if not domain_names and example_fn is None:
        raise ConfigError("domains is empty: name at least one domain to load.")
    if example_fn is None and resolution <= 0:
        raise ConfigError(f"resolution must be positive, got {resolution}.")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error={on_error!r}; choose one of {ON_ERROR}.")
    if num_epochs is not None and num_epochs <= 0:
        raise ConfigError(f"num_epochs must be positive or None, got {num_epochs}.")
    if worker_count < 0:
        raise ConfigError(f"worker_count must be >= 0, got {worker_count}.")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), got {seed}.")
    process_index, process_count = _process_layout(process_index, process_count)
    batch_size = per_process_batch_size(global_batch_size, process_count)

    num_examples = len(source)
    shard_len = num_examples // process_count
    steps = shard_len // batch_size if drop_remainder else -(-shard_len // batch_size)
    if steps == 0:
        raise ConfigError(
            f"the source has {num_examples} examples: {shard_len} per process, fewer than one "
            f"batch of {batch_size}. Use more data or a smaller global_batch_size."
        )

    ds = grain.MapDataset.range(num_examples)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.slice(slice(process_index, shard_len * process_count, process_count))
    ds = ds.map_with_index(
        _LoadExample(source, domain_names, resolution, seed, augment, shard_len, on_error,
                     example_fn)
    )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=_stack_or_fill)
    ds = ds.repeat(num_epochs)
    iter_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    )
    if worker_count > 0:
        _ensure_absl_flags_parsed()
        iter_ds = iter_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
            )
        )
    stats = PipelineStats()
    iter_ds = iter_ds.map(_CountSkipped(stats))
    return DataPipeline(
        dataset=iter_ds,
        stats=stats,
        domains=domain_names,
        per_process_batch_size=batch_size,
        steps_per_epoch=steps,
        process_index=process_index,
        process_count=process_count,
    )
