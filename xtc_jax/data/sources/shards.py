"""Taskonomy trees -> random-access sources and TFDS array_record shards, without TensorFlow.

Two ways to feed the Grain pipeline, both yielding the same records:
  - `RawFolderSource` reads the files of an indexed tree directly (no copy);
  - `build_dataset` writes a TFDS dataset (array_record shards) holding each
    stored domain's ORIGINAL encoded PNG bytes, after checking every file
    (format, bit depth, channels, size, full decode). Views with a bad or
    missing file are skipped and counted, never stored.
`open_source` opens either, or several built folders concatenated.

Record contract: {"building": str (bytes from TFDS), "point": int, "view": int,
<stored domain>: encoded bytes as on disk, ...}; derived domains (edge_texture,
mask_valid) are requested through their stored source (rgb, depth_zbuffer).

Preparing full Taskonomy (~4.5 M views, 11 TB): run one builder per building
chunk in parallel (`--chunk I/N`, each into its own dataset folder, then
`open_source(OUT)` concatenates them), or use TFDS's Apache Beam support
(`tfds.download.DownloadConfig(beam_runner=...)`) with a Beam-based builder;
this module does not depend on apache-beam.

CLI: python -m xtc_jax.data.sources.shards --root TREE --out DATA_DIR --domains rgb,normal ...
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from xtc_jax import domains as domains_lib
from xtc_jax.data.sources import splits as splits_lib
from xtc_jax.data.sources.index import EXAMPLES_PER_REASON, build_index, check_domains, stored_names
from xtc_jax.data.sources.raw import ConcatSource, RawFolderSource
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import atomic
from xtc_jax.infra.png import decode_png, png_header

SUMMARY_FILE = "taskonomy_summary.json"
VERSION = "1.0.0"


def check_view(paths: Mapping[str, str], data: Mapping[str, bytes]) -> tuple[str, str] | None:
    """(reason, detail) of the first invalid file of a view, or None if every file is sound.

    PNGs: bit depth and channels must match the Domain, the size must match
    the view's rgb (or first) image, and the file must fully decode.
    """
    size = None
    for domain in sorted(paths, key=lambda d: d != "rgb"):
        path, blob = paths[domain], data[domain]
        if path.endswith(".json"):
            try:
                json.loads(blob)
            except ValueError as error:
                return "bad_json", f"{path} ({error})"
            continue
        if path.endswith(".npy"):
            try:
                np.load(io.BytesIO(blob), allow_pickle=False)
            except (ValueError, OSError) as error:
                return "bad_npy", f"{path} ({error})"
            continue
        try:
            header = png_header(blob, path)
        except DataError:
            return "not_png", f"{path} ({len(blob)} bytes, no PNG signature)"
        spec = domains_lib.DOMAINS.get(domain)
        if spec is not None and header.bit_depth != spec.bit_depth:
            return "wrong_bit_depth", f"{path} ({header.bit_depth}-bit, expected {spec.bit_depth})"
        if spec is not None and header.channels not in spec.stored_channels:
            expected = spec.stored_channels
            return "wrong_channels", f"{path} ({header.channels} channels, expected {expected})"
        if size is None:
            size = (header.width, header.height)
        elif (header.width, header.height) != size:
            got = f"{header.width}x{header.height}"
            return "wrong_size", f"{path} ({got}, the view's rgb is {size[0]}x{size[1]})"
        try:
            decode_png(blob, path)
        except DataError as error:
            return "corrupt", str(error).split(". Re-download")[0]
    return None


def _read_and_check(source: RawFolderSource, index: int) -> tuple[dict | None, str, str]:
    paths = source.paths(index)
    try:
        data = {}
        for domain, path in paths.items():
            with open(path, "rb") as f:
                data[domain] = f.read()
    except OSError as error:
        return None, "unreadable", f"{error.filename} ({error.strerror})"
    problem = check_view(paths, data)
    if problem is not None:
        return None, *problem
    building, point, view = source.view(index)
    return {"building": building, "point": point, "view": view, **data}, "", ""


def _builder_class(name: str):
    """A TFDS GeneratorBasedBuilder subclass named `name` (imports TFDS lazily)."""
    import tensorflow_datasets as tfds

    class TaskonomyBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Stores the original encoded bytes of each requested domain, one record per view."""

        RELEASE_NOTES: ClassVar = {VERSION: "Original encoded PNG bytes per domain, checked."}
        VERSION = tfds.core.Version(VERSION)

        def __init__(self, *, sources, workers, log, **kwargs):
            self._sources, self._workers, self._log = sources, workers, log
            self._domains = next(iter(sources.values())).domains
            self.counts = {
                s: {"written": 0, "skipped": dict(x.skipped)} for s, x in sources.items()
            }
            self.examples = {}
            for source in sources.values():
                self.examples.update({k: list(v) for k, v in source.skipped_examples.items()})
            super().__init__(**kwargs)

        # TFDS prints "Downloading and preparing dataset Unknown size ..." and "... downloaded
        # and prepared" around a build; nothing is downloaded, and our own lines say the rest.
        def _log_download_bytes(self) -> None:
            pass

        def _log_download_done(self) -> None:
            pass

        def _info(self):
            features = {
                "building": tfds.features.Text(),
                "point": tfds.features.Scalar(dtype=np.int32),
                "view": tfds.features.Scalar(dtype=np.int32),
                **{d: tfds.features.Tensor(shape=(), dtype=np.object_) for d in self._domains},
            }

            class LocalDatasetInfo(tfds.core.DatasetInfo):
                """Never looks for published metadata on GCS: TFDS's version leaves an empty
                temp folder in /tmp each time a builder opens, only to find GCS disabled."""

                def initialize_from_bucket(self) -> None:
                    return None

            return LocalDatasetInfo(
                builder=self,
                description="Taskonomy views: original encoded files per domain (xtc_jax).",
                features=tfds.features.FeaturesDict(features),
                disable_shuffling=True,  # records keep the sorted (building, point, view) order
            )

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s, src in self._sources.items() if len(src)}

        def _generate_examples(self, split):
            source, counts = self._sources[split], self.counts[split]
            chunk, start, written = 64 * self._workers, time.time(), 0
            with ThreadPoolExecutor(self._workers) as pool:
                for begin in range(0, len(source), chunk):
                    indices = range(begin, min(begin + chunk, len(source)))
                    for record, reason, detail in pool.map(
                        lambda i: _read_and_check(source, i), indices
                    ):
                        if record is None:
                            counts["skipped"][reason] = counts["skipped"].get(reason, 0) + 1
                            examples = self.examples.setdefault(reason, [])
                            if len(examples) < EXAMPLES_PER_REASON:
                                examples.append(detail.replace(source.root + os.sep, ""))
                            continue
                        yield written, record
                        written += 1
                    counts["written"] = written
                    self._log(
                        f"[{split}] {indices.stop}/{len(source)} views checked, {written} written, "
                        f"{indices.stop - written} skipped, {time.time() - start:.0f} s"
                    )

    TaskonomyBuilder.name = name
    # TFDS looks for the builder's code through the package when __module__ is dotted, which
    # needs the optional importlib_resources; a plain module name skips that (nothing to find).
    TaskonomyBuilder.__module__ = "xtc_jax_taskonomy_builder"
    return TaskonomyBuilder


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike,
    domains: Sequence[str] | str,
    *,
    splits: Mapping[str, Sequence[str]] | None = None,
    split_file: str | os.PathLike | None = None,
    subset: str | None = None,
    layout: str = "auto",
    buildings: Sequence[str] | None = None,
    name: str = "taskonomy",
    workers: int = 8,
    allow_missing_buildings: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = _stderr,
) -> dict:
    """Checks and writes the views of `root` as a TFDS dataset in {out}/{name}/1.0.0.

    Splits come from `splits` ({split: buildings}), else `split_file`/`subset`,
    else {root}/train_val_test_synthetic.csv. `buildings` restricts to a chunk.
    Returns the summary, also written to {dataset}/taskonomy_summary.json.
    """
    start, log = time.time(), log or (lambda message: None)
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise DataError(f"Taskonomy root {os.path.abspath(root)} {what}. Check --root.")
    domains = stored_names(domains)
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name != name.lower():
        raise ConfigError(f"name={name!r}: use lower-case letters, digits and _ (e.g. taskonomy).")
    source_name = "splits argument"
    if splits is None:
        table, source_name = splits_lib.split_table(root, split_file, subset)
        if table is None:
            raise ConfigError(
                "no splits given: pass --split_file (a split CSV from splits_taskonomy.zip, or a "
                "list of buildings, one per line, all written as split 'train') or --subset tiny."
            )
        splits = {"train": table["all"]} if "all" in table else table
    wanted = {s: list(b) for s, b in splits.items()}
    if buildings is not None:
        listed = {b for bs in wanted.values() for b in bs}
        unknown = [b for b in buildings if b not in listed]
        if unknown:
            raise ConfigError(f"--buildings {', '.join(unknown)} are in no split of {source_name}.")
        wanted = {s: [b for b in bs if b in set(buildings)] for s, bs in wanted.items()}
    keep = sorted({b for bs in wanted.values() for b in bs})
    if not keep:
        raise ConfigError(f"no buildings selected (splits from {source_name}, --buildings).")
    index = build_index(root, domains, layout, buildings=keep)
    # Buildings first: a split that names none of the tree's buildings is the real mistake.
    chosen_of = {
        split: splits_lib.check_present(
            split, split_buildings, index.buildings, source_name, allow_missing_buildings
        )
        for split, split_buildings in wanted.items()
        if split_buildings
    }
    check_domains(index, domains)
    sources = {}
    for split, chosen in chosen_of.items():
        sources[split] = RawFolderSource.from_index(index, domains, chosen, split)
    if not any(len(s) for s in sources.values()):
        raise DataError(
            f"no complete views to write under {index.root} for buildings {keep[:12]}: "
            f"{ {s: src.summary()['skipped'] for s, src in sources.items()} }."
        )
    dataset_dir = os.path.join(os.path.abspath(out), name, VERSION)
    if os.path.exists(dataset_dir):
        if not overwrite:
            raise ConfigError(
                f"{dataset_dir} already exists. Pass --overwrite to rebuild it, or a new --name."
            )
        shutil.rmtree(dataset_dir)
    seconds = time.time() - start
    log(f"indexed {index.counts['indexed']} files of {len(keep)} buildings in {seconds:.1f} s "
        f"(layout {index.layout}); checking and writing ...")  # fmt: skip
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()  # our own per-split lines report progress; TFDS's bars are noise
    builder = _builder_class(name)(
        sources=sources, workers=workers, log=log, data_dir=out, file_format="array_record"
    )
    try:
        with tempfile.TemporaryDirectory() as scratch:  # TFDS's (unused) download folder
            builder.download_and_prepare(
                download_dir=scratch, download_config=tfds.download.DownloadConfig()
            )
    except AssertionError as error:  # TFDS refuses to write a split where every view failed
        raise DataError(f"{error}: every view of that split failed the checks.") from error
    summary = {
        "dataset": dataset_dir,
        "root": index.root,
        "layout": index.layout,
        "domains": list(domains),
        "splits": {
            s: {"buildings": len(src.selected), "views": len(src), **builder.counts[s]}
            for s, src in sources.items()
        },
        "skipped_examples": builder.examples,
        "seconds": round(time.time() - start, 2),
    }
    atomic.write_json(os.path.join(dataset_dir, SUMMARY_FILE), summary)
    return summary


def find_datasets(path: str) -> list[str]:
    """Built dataset folders (holding dataset_info.json) at `path` or up to two levels below."""
    found = []
    for depth in range(3):
        pattern = os.path.join(path, *["*"] * depth, "dataset_info.json")
        found = sorted(os.path.dirname(p) for p in glob.glob(pattern))
        if found:
            break
    return found


def open_source(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    split: str,
    domains: Sequence[str] | str | None = None,
    **raw_options,
):
    """A random-access source of `split` from built dataset folder(s) or raw tree(s).

    A folder holding dataset_info.json (or datasets one/two levels below, as
    {out}/{name}/1.0.0) opens as TFDS ArrayRecordDataSources, concatenated when
    several; any other folder is read as a raw tree with RawFolderSource
    (`domains` required; `raw_options` go to it). Split "all" joins every split.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else path_or_paths
    if not paths:
        raise ConfigError("open_source: no path given.")
    parts = []
    for path in map(os.fspath, paths):
        if not os.path.exists(path):
            raise DataError(f"{path} does not exist. Pass a built dataset folder or a raw tree.")
        datasets = find_datasets(path)
        if datasets:
            parts.extend(_open_built(d, split, domains) for d in datasets)
        elif domains is None:
            raise ConfigError(f"{path} is a raw tree: pass domains (e.g. rgb,normal) to read it.")
        else:
            parts.append([RawFolderSource(path, domains, split, **raw_options)])
    parts = [p for part in parts for p in part]
    if not parts:
        raise DataError(f"split {split!r} is in none of the datasets in {list(paths)}.")
    return parts[0] if len(parts) == 1 else ConcatSource(parts)


def _open_built(dataset_dir: str, split: str, domains) -> list:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(dataset_dir)
    stored = [k for k in builder.info.features if k not in ("building", "point", "view")]
    for domain in stored_names(domains) if domains is not None else ():
        if domain not in stored:
            raise DataError(
                f"domain {domain!r} is not stored in {dataset_dir} (it has {', '.join(stored)}). "
                "Rebuild with it in --domains, or drop it."
            )
    available = list(builder.info.splits)
    if split not in (*available, "all") and split not in splits_lib.SPLITS:
        raise ConfigError(f"split={split!r} is unknown; {dataset_dir} has {available}.")
    names = available if split == "all" else [s for s in available if s == split]
    return [builder.as_data_source(split=s) for s in names]


def format_summary(summary: dict) -> str:
    """The build summary as lines for a terminal."""
    lines = [f"dataset {summary['dataset']} ({summary['seconds']} s, layout {summary['layout']})"]
    for split, info in summary["splits"].items():
        skipped = ", ".join(f"{k}: {v}" for k, v in info["skipped"].items()) or "none"
        lines.append(
            f"  {split}: {info['written']} views written from {info['buildings']} buildings; "
            f"skipped: {skipped}"
        )
    for reason, examples in summary["skipped_examples"].items():
        lines.append(f"  e.g. {reason}: " + "; ".join(examples))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xtc_jax.data.sources.shards",
        description="Check a Taskonomy tree and write its views as TFDS array_record shards "
        "(original PNG bytes; no TensorFlow). Bad or incomplete views are skipped and counted.",
        epilog="Full Taskonomy in parallel: run one job per --chunk I/N (each gets its own "
        "dataset folder under --out), then open_source(OUT, split, domains) joins them.",
    )
    parser.add_argument("--root", required=True, help="the tree (any of the 4 layouts)")
    parser.add_argument("--out", required=True, help="TFDS data dir; writes OUT/NAME/1.0.0")
    parser.add_argument("--domains", required=True, help="e.g. rgb,normal,depth_zbuffer")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--split_file", help="split CSV (id,train,val,test) or building list")
    group.add_argument("--subset", choices=splits_lib.SUBSETS, help="named Taskonomy subset")
    parser.add_argument("--layout", default="auto", help="auto, plain, xtc, omnidata, by_domain")
    parser.add_argument("--buildings", help="comma list: only these buildings (a chunk)")
    parser.add_argument("--chunk", help="I/N: the I-th (0-based) of N chunks of the buildings")
    parser.add_argument("--name", help="dataset name (default taskonomy[_partIofN])")
    parser.add_argument("--workers", type=int, default=8, help="reader/checker threads")
    parser.add_argument("--allow_missing_buildings", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)
    buildings = args.buildings.split(",") if args.buildings else None
    name = args.name or "taskonomy"
    try:
        if args.chunk:
            table, _ = splits_lib.split_table(args.root, args.split_file, args.subset)
            every = sorted({b for bs in (table or {}).values() for b in bs} or set(buildings or ()))
            try:
                i, n = (int(x) for x in args.chunk.split("/"))
                assert 0 <= i < n
            except (ValueError, AssertionError):
                raise ConfigError(f"--chunk {args.chunk}: use I/N with 0 <= I < N.") from None
            buildings = [b for b in every[i::n] if buildings is None or b in buildings]
            name = args.name or f"taskonomy_part{i}of{n}"
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
        summary = build_dataset(
            args.root, args.out, args.domains, split_file=args.split_file, subset=args.subset,
            layout=args.layout, buildings=buildings, name=name, workers=args.workers,
            allow_missing_buildings=args.allow_missing_buildings, overwrite=args.overwrite,
        )  # fmt: skip
    except (DataError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
