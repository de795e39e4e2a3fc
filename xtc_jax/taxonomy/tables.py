"""Affinity (or win-rate) tables: {"s1__s2__target": value}, from CSV, JSON or Taskonomy's pickles.

- CSV: a header with "key,value" (or "sources,target,value", sources joined by "__" or "+").
- JSON: an object {key: value}.
- .pkl: Taskonomy's released `results/affinities/all_affinities*.pkl` (a dict of
  str → float). It is read with an unpickler that builds only dicts, lists,
  strings and numbers: any pickle that names a class or function (a callable
  that could run code) is refused, never executed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle

from xtc_jax.errors import DataError
from xtc_jax.infra import atomic


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing {module}.{name}: the table may only hold dicts, "
                                     "strings and numbers")  # fmt: skip


def _check(table: object, path: str) -> dict[str, float]:
    if not isinstance(table, dict) or not table:
        raise DataError(f"{path}: expected a non-empty dict of 'source__target' -> value.")
    out = {}
    for key, value in table.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not isinstance(key, str) or not number:
            raise DataError(f"{path}: entry {key!r}: {value!r} is not a str key with a number.")
        if not math.isfinite(value):
            raise DataError(f"{path}: entry {key!r} is {value}; every value must be finite.")
        out[key] = float(value)
    return out


def read_table(path: str) -> dict[str, float]:
    """The table at `path` (.csv, .json or .pkl), checked."""
    if not os.path.isfile(path):
        raise DataError(f"{path} does not exist: pass an affinity table (.csv, .json or .pkl).")
    suffix = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        data = f.read()
    try:
        if suffix == ".pkl":
            table = _DataOnlyUnpickler(io.BytesIO(data)).load()
        elif suffix == ".json":
            table = json.loads(data)
        elif suffix == ".csv":
            table = _read_csv(data.decode())
        else:
            raise DataError(f"{path}: unknown table format {suffix!r}; use .csv, .json or .pkl.")
    except (pickle.UnpicklingError, EOFError, ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable table ({error}).") from error
    return _check(table, path)


def _read_csv(text: str) -> dict:
    rows = list(csv.DictReader(io.StringIO(text)))
    table = {}
    for row in rows:
        if "key" in row:
            table[row["key"]] = float(row["value"])
        elif {"sources", "target", "value"} <= set(row):
            sources = row["sources"].replace("+", "__")
            table[f"{sources}__{row['target']}"] = float(row["value"])
        else:
            raise ValueError("the CSV header needs key,value or sources,target,value")
    return table


def write_table(path: str, table: dict[str, float]) -> str:
    """A table as CSV (sources,target,value) or JSON, by suffix; atomically."""
    if path.endswith(".json"):
        return atomic.write_json(path, table)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["sources", "target", "value"])
    for key, value in table.items():
        *sources, target = key.split("__")
        writer.writerow(["+".join(sources), target, f"{value:.6g}"])
    return atomic.write_bytes(path, text.getvalue().encode())
