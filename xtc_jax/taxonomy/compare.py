"""`python -m xtc_jax.taxonomy.compare DIR_A DIR_B [--k 3]`: are two runs' affinities stable?

Reads {DIR}/taxonomy/affinities.json of two runs (e.g. two seeds of configs/taxonomy.py:cpu)
and, per target, compares the k first-order sources of highest affinity: the same set
(order ignored), their overlap, and the rank correlation (Spearman) of every first-order
source. Prints a table and the fraction of targets whose top-k sets agree; --out writes
it as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from xtc_jax.errors import XtcError
from xtc_jax.infra import atomic
from xtc_jax.taxonomy import outputs, tables
from xtc_jax.taxonomy.stage_transfers import SELF


def first_order(affinity: dict[str, float], target: str) -> dict[str, float]:
    return {k.split("__")[0]: v for k, v in affinity.items()
            if k.count("__") == 1 and k.endswith(f"__{target}") and not k.startswith(SELF)}


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return float("nan")
    ra = np.argsort(np.argsort([-a[s] for s in common]))
    rb = np.argsort(np.argsort([-b[s] for s in common]))
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(a: dict[str, float], b: dict[str, float], k: int = 3) -> dict:
    targets = sorted({key.rsplit("__", 1)[1] for key in a} & {key.rsplit("__", 1)[1] for key in b})
    top_a, top_b = outputs.top_sources(a, targets, k), outputs.top_sources(b, targets, k)
    rows = {t: {"a": top_a[t], "b": top_b[t], "same_set": set(top_a[t]) == set(top_b[t]),
                "overlap": len(set(top_a[t]) & set(top_b[t])) / k,
                "spearman": spearman(first_order(a, t), first_order(b, t))}
            for t in targets}  # fmt: skip
    return {"k": k, "targets": rows,
            "same_set_fraction": float(np.mean([r["same_set"] for r in rows.values()])),
            "mean_overlap": float(np.mean([r["overlap"] for r in rows.values()])),
            "mean_spearman": float(np.nanmean([r["spearman"] for r in rows.values()]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xtc_jax.taxonomy.compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", help="a workdir of python -m xtc_jax.taxonomy")
    parser.add_argument("run_b")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--out", default="", help="write the comparison as JSON here")
    args = parser.parse_args(argv)
    try:
        a, b = (tables.read_table(os.path.join(d, "taxonomy", "affinities.json"))
                for d in (args.run_a, args.run_b))  # fmt: skip
    except XtcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = compare(a, b, args.k)
    print(f"{'target':<20}{'top-' + str(args.k) + ' of A':<48}{'top-' + str(args.k) + ' of B':<48}"
          "same  overlap  spearman")
    for t, r in result["targets"].items():
        print(f"{t:<20}{', '.join(r['a']):<48}{', '.join(r['b']):<48}"
              f"{'yes' if r['same_set'] else 'no':<6}{r['overlap']:>7.2f}{r['spearman']:>10.2f}")
    print(f"top-{args.k} sets agree for {result['same_set_fraction']:.0%} of targets; mean "
          f"overlap {result['mean_overlap']:.2f}; mean Spearman {result['mean_spearman']:.2f}")
    if args.out:
        atomic.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
