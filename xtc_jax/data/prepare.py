"""From a config's `data` section to random-access sources, preparing data on first use.

- `data.path == ""`: the built-in synthetic Taskonomy. It is rendered once into
  a cache folder named after its settings (so another setting renders anew),
  then built into array_record shards with every stored domain.
- `data.path` = a built shard folder: opened as it is.
- `data.path` = a raw Taskonomy tree: with `data.format == "shards"` it is
  built into shards under the workdir on first use (the config's domains);
  with `data.format == "raw"` it is read in place, no copy.

A tree counts as rendered only once its split CSV exists (the generator
writes it last), and shards only once TFDS finished writing them, so an
interrupted preparation is redone rather than half used.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence

import ml_collections

from xtc_jax import domains as domains_lib
from xtc_jax.data.sources import shards
from xtc_jax.data.synthetic import generate
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.infra.writers import log

SPLIT_CSV = "train_val_test_synthetic.csv"


def synthetic_style(settings: ml_collections.ConfigDict) -> str:
    """data.synthetic.style, checked: "base" (training data) or "shifted"."""
    style = settings.get("style", "base")
    if style not in generate.STYLES:
        raise ConfigError(
            f"data.synthetic.style={style!r}: use one of {', '.join(generate.STYLES)} "
            '("shifted": held-out textures, lighting and shapes).'
        )
    return style


def _synthetic_root(settings: ml_collections.ConfigDict, cache_dir: str) -> str:
    name = "synthetic_b{buildings}_v{views}_s{size}_seed{seed}".format(**settings.to_dict())
    style = synthetic_style(settings)
    return os.path.join(cache_dir, name if style == "base" else f"{name}_{style}")


def synthetic_tree(
    settings: ml_collections.ConfigDict, cache_dir: str, log: Callable[[str], None] = log
) -> str:
    """Renders the synthetic Taskonomy for `settings` unless already complete; returns its root."""
    root = _synthetic_root(settings, cache_dir)
    if os.path.exists(os.path.join(root, SPLIT_CSV)):
        return root
    style = synthetic_style(settings)
    log(
        f"rendering the synthetic Taskonomy ({settings.buildings} buildings x {settings.views} "
        f"views at {settings.size}px{', shifted style' if style != 'base' else ''}) into {root}"
    )
    generate.generate(
        root,
        buildings=settings.buildings,
        views=settings.views,
        size=settings.size,
        seed=settings.seed,
        style=style,
    )
    return root


def _shards_name(tree: str, stored: Sequence[str]) -> str:
    digest = hashlib.sha1(f"{os.path.abspath(tree)}|{','.join(sorted(stored))}".encode())
    return "shards_" + digest.hexdigest()[:10]


def built_shards(
    tree: str,
    stored: Sequence[str],
    cache_dir: str,
    split_file: str = "",
    log: Callable[[str], None] = log,
) -> str:
    """Builds array_record shards of `tree` (the `stored` domains) once; returns their folder."""
    out = os.path.join(cache_dir, _shards_name(tree, stored))
    if shards.find_datasets(out):
        return out
    log(f"building array_record shards of {tree} ({', '.join(stored)}) into {out}")
    shards.build_dataset(
        tree,
        out,
        list(stored),
        split_file=split_file or None,
        overwrite=True,
        log=log,
    )
    return out


def data_location(data: ml_collections.ConfigDict, workdir: str) -> str:
    """The folder sources are opened from (shards or, with format "raw", the tree).

    In a multi-process run, process 0 prepares the data while the others wait
    at a barrier, then every process finds it ready.
    """
    import jax

    if jax.process_count() == 1:
        return _data_location(data, workdir)
    from jax.experimental import multihost_utils

    location = _data_location(data, workdir) if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("xtc_jax data prepared")
    return location or _data_location(data, workdir)


def _data_location(data: ml_collections.ConfigDict, workdir: str) -> str:
    if data.format not in ("shards", "raw"):
        raise ConfigError(f'data.format={data.format!r}: use "shards" or "raw".')
    cache_dir = data.get("cache_dir") or workdir_lib.data_dir(workdir)
    if not data.path:
        tree = synthetic_tree(data.synthetic, cache_dir)
        if data.format == "raw":
            return tree
        return built_shards(tree, domains_lib.STORED_DOMAINS, cache_dir)
    if not os.path.exists(data.path):
        raise DataError(
            f"data.path={data.path!r} does not exist. Point it at a Taskonomy tree or a "
            'built shard folder, or set data.path="" for the built-in synthetic data.'
        )
    if shards.find_datasets(data.path) or data.format == "raw":
        return data.path
    stored = domains_lib.stored_domains_for(list(data.domains))
    return built_shards(data.path, stored, cache_dir, data.split_file)


def shifted(data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `data` that reads the built-in data rendered in the shifted style."""
    if data.path:
        raise ConfigError(
            f"the style shift is a setting of the built-in synthetic data, but data.path="
            f"{data.path!r}; for your own shifted images pass a folder (--ood=FOLDER)."
        )
    data = data.copy_and_resolve_references()
    with data.unlocked():
        data.synthetic.style = "shifted"
    return data


def open_split(data: ml_collections.ConfigDict, location: str, split: str):
    """A random-access source over `split` of the prepared data at `location`."""
    options = {}
    if not shards.find_datasets(location):
        options = dict(layout=data.layout, split_file=data.split_file or None)
    return shards.open_source(location, split, list(data.domains), **options)


class EvenSubset:
    """`count` examples of a random-access source, evenly spaced over it (every building)."""

    def __init__(self, source, count: int):
        self.source = source
        n = len(source)
        self.indices = [i * n // count for i in range(count)]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[self.indices[index]]


def labelled_subset(source, count: int):
    """`source`, or `count` of its examples evenly spaced (data.train_examples; 0 = all)."""
    if not count:
        return source
    if count < 0 or count > len(source):
        raise ConfigError(
            f"data.train_examples={count}: the train split has {len(source)} examples; use "
            f"1..{len(source)}, or 0 for all of them."
        )
    return EvenSubset(source, count)


def report(config, workdir: str, batches: int = 4) -> dict:
    """--mode=prepare: prepares the data, streams a few batches and reports on them.

    Prints the examples per split, the pipeline's throughput and every
    domain's shape and value range, and writes {workdir}/data_preview.png.
    """
    import numpy as np

    from xtc_jax.data import pipeline, preview

    data = config.data
    location = data_location(data, workdir)
    sources = {split: open_split(data, location, split)
               for split in (data.train_split, data.val_split)}  # fmt: skip
    result = {"location": location, "splits": {k: len(v) for k, v in sources.items()}}
    print("examples per split: " + ", ".join(f"{k} {v}" for k, v in result["splits"].items()))
    stream = pipeline.make_dataset(
        sources[data.train_split], list(data.domains), resolution=data.resolution,
        global_batch_size=config.batch_size, seed=config.seed, augment=data.augment,
        worker_count=data.worker_count, on_error=data.on_error,
    )  # fmt: skip
    iterator = iter(stream)
    first = next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * config.batch_size / (time.perf_counter() - start)
    print(f"pipeline: {rate:.1f} examples/s ({data.worker_count} workers, "
          f"batch {config.batch_size})")  # fmt: skip
    for domain in stream.domains:
        values = first[domain]
        print(
            f"  {domain:<20} {values.shape!s:<20} "
            f"min {np.min(values):8.3f}  mean {np.mean(values):8.3f}  max {np.max(values):8.3f}"
        )
    path = preview.write_grid(os.path.join(workdir, "data_preview.png"), first, stream.domains)
    print(f"preview of the first batch: {path}")
    result.update(examples_per_second=rate, preview=path, skipped=stream.stats.skipped)
    return result


#: Bytes of a rendered synthetic view and its shards, per pixel of one domain and per view:
#: measured 2026-12-02 (4 buildings x 16 views at 256 px: 26.6 MB; 6 x 48 at 64 px: 24.4 MB,
#: tree and shards); this formula is above both.
_BYTES_PER_PIXEL, _BYTES_PER_VIEW = 8, 60_000


def planned_bytes(data: ml_collections.ConfigDict, workdir: str) -> tuple[str, int]:
    """(folder, bytes) the data stage will write: the synthetic Taskonomy it would render,
    or (folder, 0) when it is there already or the data is the user's own (data.path)."""
    cache_dir = data.get("cache_dir") or workdir_lib.data_dir(workdir)
    if data.path:
        return cache_dir, 0
    settings = data.synthetic
    if os.path.exists(os.path.join(_synthetic_root(settings, cache_dir), SPLIT_CSV)):
        return cache_dir, 0
    views = settings.buildings * settings.views
    return cache_dir, views * (settings.size**2 * _BYTES_PER_PIXEL + _BYTES_PER_VIEW)


def check_room(data: ml_collections.ConfigDict, workdir: str) -> None:
    """ConfigError unless the workdir can be written and the data stage has the disk it needs."""
    folder, need = planned_bytes(data, workdir)
    settings = data.synthetic
    what = (f"the synthetic Taskonomy ({settings.buildings} buildings x {settings.views} views "
            f"at {settings.size} px, with its shards)")  # fmt: skip
    workdir_lib.check_workdir(workdir, need, folder, what)
