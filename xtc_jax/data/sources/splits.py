"""Taskonomy building splits: which buildings are train, val and test.

Splits are by building, never by frame (taskonomy.md §3). Sources, in the
order `resolve_split` tries them:
  1. a file the user gives: a split CSV (`id,train,val,test`, 0/1 flags, as in
     splits_taskonomy.zip; the originals have old Mac `\\r` line endings) or a
     plain list of buildings, one per line (it then is every split);
  2. a named subset: `tiny` and `debug` are built in; `medium`, `full` and
     `fullplus` are read from the CSVs of the omnidata-tools package when it
     is installed (we do not ship them; they are under the Taskonomy EULA);
  3. `{root}/train_val_test_synthetic.csv`, written by the synthetic renderer.
Split "all" without any source means every building in the tree.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from xtc_jax.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
SYNTHETIC_CSV = "train_val_test_synthetic.csv"

#: The tiny subset (train_val_test_tiny.csv): 25 / 5 / 5 buildings.
TINY: dict[str, tuple[str, ...]] = {
    "train": (
        "hanson", "merom", "klickitat", "onaga", "leonardo", "marstons", "newfields",
        "pinesdale", "lakeville", "cosmos", "benevolence", "pomaria", "tolstoy",
        "shelbyville", "allensville", "wainscott", "beechwood", "coffeen", "stockman",
        "hiteman", "woodbine", "lindenwood", "forkland", "mifflinburg", "ranchester",
    ),
    "val": ("wiconisco", "corozal", "collierville", "markleeville", "darden"),
    "test": ("ihlen", "muleshoe", "uvalda", "noxapater", "mcdade"),
}  # fmt: skip
#: Omnidata's debug subset: one building flagged in every split.
DEBUG = {split: ("allensville",) for split in SPLITS}
SUBSETS = ("debug", "tiny", "medium", "full", "fullplus")

SplitTable = dict[str, list[str]]


def read_split_csv(path: str | os.PathLike) -> SplitTable:
    """Reads `id,train,val,test` with 0/1 flags; any line ending (\\r, \\r\\n, \\n)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"split file {path} is empty. Pass the CSV from splits_taskonomy.zip.")
    header = [h.strip().lower() for h in lines[0].split(",")]
    missing = [c for c in ("id", *SPLITS) if c not in header]
    if missing:
        raise DataError(
            f"split file {path}: header {lines[0]!r} lacks column(s) {', '.join(missing)}; "
            "expected `id,train,val,test` as in splits_taskonomy.zip."
        )
    table: SplitTable = {split: [] for split in SPLITS}
    for number, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split(",")]
        row = dict(zip(header, cells, strict=False))
        for split in SPLITS:
            flag = row.get(split, "")
            if flag not in ("0", "1"):
                raise DataError(
                    f"split file {path}, line {number}: {split}={flag!r} for building "
                    f"{row.get('id')!r}; flags must be 0 or 1."
                )
            if flag == "1":
                table[split].append(row["id"])
    return table


def read_building_list(path: str | os.PathLike) -> list[str]:
    """One building per line; blank lines and `#` comments are ignored."""
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    return [b for line in lines if (b := line.split("#", 1)[0].strip())]


def read_split_file(path: str | os.PathLike) -> SplitTable:
    """A split CSV -> train/val/test; a plain list -> {"all": buildings} (used for every split)."""
    if not os.path.isfile(path):
        raise DataError(f"split file {path} does not exist. Check --split_file.")
    with open(path, encoding="utf-8-sig") as f:
        first = f.readline().split("\r")[0].strip().lower()
    if first.startswith("id,") or str(path).endswith(".csv"):
        return read_split_csv(path)
    return {"all": read_building_list(path)}


def _packaged_csv(subset: str) -> Path | None:
    """train_val_test_{subset}.csv of an installed omnidata-tools, if any (never imported)."""
    for package in ("omnidata_tools", "omnitools"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for location in (spec and spec.submodule_search_locations) or ():
            hits = sorted(Path(location).rglob(f"train_val_test_{subset}.csv"))
            hits.sort(key=lambda p: "taskonomy" not in str(p))  # Taskonomy's copy first
            if hits:
                return hits[0]
    return None


def subset_table(subset: str) -> SplitTable:
    """The named subset's split table (tiny/debug built in; others need omnidata-tools' CSV)."""
    if subset == "tiny":
        return {k: list(v) for k, v in TINY.items()}
    if subset == "debug":
        return {k: list(v) for k, v in DEBUG.items()}
    if subset not in SUBSETS:
        raise ConfigError(f"subset={subset!r} is unknown; choose one of {', '.join(SUBSETS)}.")
    path = _packaged_csv(subset)
    if path is None:
        raise DataError(
            f"the {subset!r} building list is not shipped with xtc_jax (Taskonomy EULA). Pass "
            f"--split_file train_val_test_{subset}.csv from data/assets/splits_taskonomy.zip in "
            "github.com/StanfordVL/taskonomy (or install omnidata-tools, which includes it)."
        )
    return read_split_csv(path)


def split_table(
    root: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    subset: str | None = None,
) -> tuple[SplitTable | None, str]:
    """The split table to use and a description of where it came from (None: no source)."""
    if split_file is not None and subset is not None:
        raise ConfigError("pass either split_file or subset, not both.")
    if split_file is not None:
        return read_split_file(split_file), str(split_file)
    if subset is not None:
        return subset_table(subset), f"subset {subset}"
    if root is not None and os.path.isfile(os.path.join(root, SYNTHETIC_CSV)):
        path = os.path.join(root, SYNTHETIC_CSV)
        return read_split_csv(path), path
    return None, "no split file"


def buildings_of(table: Mapping[str, list[str]], split: str) -> list[str]:
    """The buildings of `split` (train/val/test/all) in a split table, in file order."""
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"split={split!r} is unknown; use train, val, test or all.")
    if "all" in table:
        return list(table["all"])
    if split == "all":
        return list(dict.fromkeys(b for s in SPLITS for b in table.get(s, [])))
    return list(table.get(split, []))


def resolve_split(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    split_file: str | os.PathLike | None = None,
    subset: str | None = None,
    available: Iterable[str] | None = None,
    allow_missing: bool = False,
) -> list[str]:
    """Buildings of `split`, checked against `available` (the buildings present in the tree).

    Raises DataError when the split is empty, or names buildings that are not
    in the tree (unless `allow_missing`, which drops them), saying which exist.
    """
    table, source = split_table(root, split_file, subset)
    present = None if available is None else sorted(set(available))
    if table is None:
        if split == "all" and present is not None:
            return present
        raise DataError(
            f"no building list for split {split!r}: pass --split_file (a CSV from "
            "splits_taskonomy.zip, or a text file with one building per line) or --subset tiny, "
            "or use split 'all'."
        )
    buildings = buildings_of(table, split)
    if not buildings:
        raise DataError(f"split {split!r} of {source} lists no buildings. Use another split.")
    if present is None:
        return buildings
    return check_present(split, buildings, present, source, allow_missing)


def check_present(
    split: str,
    buildings: list[str],
    present: Iterable[str],
    source: str,
    allow_missing: bool = False,
) -> list[str]:
    """`buildings` that are in `present`; DataError if some are not (or none is)."""
    present = sorted(set(present))
    have = set(present)
    absent = [b for b in buildings if b not in have]
    if absent and not allow_missing:
        raise DataError(
            f"split {split!r} ({source}) names {len(absent)} building(s) absent from the "
            f"tree: {_short(absent)}. Buildings in the tree: {_short(present)}. Download "
            "them, or pass --allow_missing_buildings to use only those present."
        )
    kept = [b for b in buildings if b in have]
    if not kept:
        raise DataError(
            f"split {split!r} ({source}) is empty in this tree: none of its buildings is "
            f"present. Buildings in the tree: {_short(present)}."
        )
    return kept


def _short(names: list[str], limit: int = 12) -> str:
    more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(none)"
