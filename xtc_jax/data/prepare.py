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
from collections.abc import Callable, Sequence

import ml_collections

from xtc_jax import domains as domains_lib
from xtc_jax.data import synthetic, taskonomy
from xtc_jax.errors import ConfigError, DataError

SPLIT_CSV = "train_val_test_synthetic.csv"


def _log(message: str) -> None:
    print(message, flush=True)


def default_cache_dir(workdir: str) -> str:
    """Where prepared data lives: $XTC_DATA_DIR, else {workdir}/data."""
    return os.environ.get("XTC_DATA_DIR") or os.path.join(workdir, "data")


def synthetic_tree(
    settings: ml_collections.ConfigDict, cache_dir: str, log: Callable[[str], None] = _log
) -> str:
    """Renders the synthetic Taskonomy for `settings` unless already complete; returns its root."""
    name = "synthetic_b{buildings}_v{views}_s{size}_seed{seed}".format(**settings.to_dict())
    root = os.path.join(cache_dir, name)
    if os.path.exists(os.path.join(root, SPLIT_CSV)):
        return root
    log(
        f"rendering the synthetic Taskonomy ({settings.buildings} buildings x {settings.views} "
        f"views at {settings.size}px) into {root}"
    )
    synthetic.generate(
        root,
        buildings=settings.buildings,
        views=settings.views,
        size=settings.size,
        seed=settings.seed,
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
    log: Callable[[str], None] = _log,
) -> str:
    """Builds array_record shards of `tree` (the `stored` domains) once; returns their folder."""
    out = os.path.join(cache_dir, _shards_name(tree, stored))
    if taskonomy.find_datasets(out):
        return out
    log(f"building array_record shards of {tree} ({', '.join(stored)}) into {out}")
    taskonomy.build_dataset(
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
    cache_dir = data.get("cache_dir") or default_cache_dir(workdir)
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
    if taskonomy.find_datasets(data.path) or data.format == "raw":
        return data.path
    stored = domains_lib.stored_domains_for(list(data.domains))
    return built_shards(data.path, stored, cache_dir, data.split_file)


def open_split(data: ml_collections.ConfigDict, location: str, split: str):
    """A random-access source over `split` of the prepared data at `location`."""
    options = {}
    if not taskonomy.find_datasets(location):
        options = dict(layout=data.layout, split_file=data.split_file or None)
    return taskonomy.open_source(location, split, list(data.domains), **options)
