"""Random-access sources of Taskonomy records: a raw tree read in place, and concatenations.

A record is one view: {"building", "point", "view", and per stored domain the
encoded PNG bytes exactly as on disk}. The pipeline (`data/pipeline.py`) reads
records from these or from TFDS ArrayRecordDataSources built by
`shards.py`, which return the same dicts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from xtc_jax.data.sources import splits as splits_lib
from xtc_jax.data.sources.index import (
    EXAMPLES_PER_REASON,
    TreeIndex,
    build_index,
    check_domains,
    stored_names,
    unpack_keys,
)
from xtc_jax.errors import DataError


class RawFolderSource:
    """Random-access records read from the files of a Taskonomy tree.

    Only views having a file for every requested domain are records; the
    others are counted in `summary()`. Holds plain data only (strings, NumPy
    arrays, no open files), so Grain workers can pickle it.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        domains: Sequence[str] | str,
        split: str = "all",
        layout: str = "auto",
        *,
        split_file: str | os.PathLike | None = None,
        subset: str | None = None,
        buildings: Sequence[str] | None = None,
        allow_missing_buildings: bool = False,
    ):
        domains = stored_names(domains)
        table, source = splits_lib.split_table(root, split_file, subset)
        keep = None if table is None else splits_lib.buildings_of(table, split)
        if keep is not None and buildings is not None:
            chunk = set(buildings)
            keep = [b for b in keep if b in chunk]
        elif buildings is not None:
            keep = list(buildings)
        if keep is not None and not keep:
            among = "" if buildings is None else f" among {', '.join(buildings)}"
            raise DataError(f"split {split!r} of {source} lists no buildings{among}.")
        index = build_index(root, domains, layout, buildings=keep)
        check_domains(index, domains)
        if keep is None:
            chosen = splits_lib.resolve_split(split, root, available=index.buildings)
        else:
            chosen = splits_lib.check_present(
                split, keep, index.buildings, source, allow_missing_buildings
            )
        self._init_from_index(index, domains, chosen, split)

    @classmethod
    def from_index(
        cls, index: TreeIndex, domains: Sequence[str], buildings: Sequence[str], split: str = ""
    ) -> RawFolderSource:
        """A source over `buildings` of an existing index (no second walk)."""
        self = cls.__new__(cls)
        self._init_from_index(index, stored_names(domains), list(buildings), split)
        return self

    def _init_from_index(
        self, index: TreeIndex, domains: tuple[str, ...], buildings: list[str], split: str
    ) -> None:
        check_domains(index, domains)
        self.root, self.layout, self.domains, self.split = index.root, index.layout, domains, split
        self.buildings, self.selected = index.buildings, tuple(buildings)
        ids = [index.buildings.index(b) for b in buildings if b in index.buildings]
        union = np.unique(np.concatenate([index.files[d][0] for d in domains]))
        union = union[np.isin(unpack_keys(union)[0], ids)]
        complete = np.ones(len(union), bool)
        self.skipped: dict[str, int] = {}
        self.skipped_examples: dict[str, list[str]] = {}
        for domain in domains:
            present = np.isin(union, index.files[domain][0])
            complete &= present
            if not present.all():
                reason = f"missing_{domain}"
                self.skipped[reason] = int((~present).sum())
                self.skipped_examples[reason] = [
                    self._view_name(k) for k in union[~present][:EXAMPLES_PER_REASON]
                ]
        self.keys = union[complete]
        self.locs = {}
        for domain in domains:
            keys, locs = index.files[domain]
            self.locs[domain] = locs[np.searchsorted(keys, self.keys)]
        self._dirs, self._loc_table = index.dirs, index.locs
        chosen = set(self.keys.tolist()) if index.names else set()
        self._names = {dk: n for dk, n in index.names.items() if dk[1] in chosen}
        self.views_indexed = len(union)

    def _view_name(self, key: int) -> str:
        b, p, v = (int(x) for x in unpack_keys(np.int64(key)))
        return f"{self.buildings[b]} point_{p}_view_{v}"

    def __len__(self) -> int:
        return len(self.keys)

    def view(self, index: int) -> tuple[str, int, int]:
        """(building, point, view) of record `index`."""
        b, p, v = (int(x) for x in unpack_keys(self.keys[index]))
        return self.buildings[b], p, v

    def paths(self, index: int) -> dict[str, str]:
        """Absolute path of each requested domain's file for record `index`."""
        key, out = int(self.keys[index]), {}
        for domain in self.domains:
            loc = int(self.locs[domain][index])
            name = self._names.get((domain, key))
            if name is None:
                _, p, v = (int(x) for x in unpack_keys(np.int64(key)))
                _, token, ext = self._loc_table[loc]
                name = f"point_{p}_view_{v}_domain_{token}.{ext}"
            out[domain] = os.path.join(self.root, self._dirs[self._loc_table[loc][0]], name)
        return out

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        building, point, view = self.view(index)
        record: dict = {"building": building, "point": point, "view": view}
        for domain, path in self.paths(index).items():
            try:
                with open(path, "rb") as f:
                    record[domain] = f.read()
            except OSError as error:
                raise DataError(
                    f"{path}: indexed but unreadable now ({error}). Restore it, or re-create "
                    "the source so the view is skipped."
                ) from error
        return record

    def summary(self) -> dict:
        """Views indexed, records, and views skipped by reason (with examples)."""
        return {
            "root": self.root,
            "layout": self.layout,
            "split": self.split,
            "domains": list(self.domains),
            "views_indexed": self.views_indexed,
            "records": len(self),
            "skipped": dict(self.skipped),
            "skipped_examples": dict(self.skipped_examples),
        }

    def __repr__(self) -> str:
        return (
            f"RawFolderSource({self.root!r}, split={self.split!r}, "
            f"domains={list(self.domains)}, records={len(self)})"
        )


class ConcatSource:
    """Several random-access sources end to end (e.g. datasets built per building chunk)."""

    def __init__(self, sources: Sequence):
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int):
        index = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.sources[part][index - int(self.offsets[part])]

    def __repr__(self) -> str:
        return f"ConcatSource({len(self.sources)} sources, {len(self)} records)"
