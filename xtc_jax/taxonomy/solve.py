"""`python -m xtc_jax.taxonomy.solve --affinities FILE --targets T1,T2 --sources S1,S2 --budget B`.

Runs the supervision BIP (`solver.py`) alone on an affinity (or win-rate) table:
our own CSV/JSON, or Taskonomy's released `all_affinities*.pkl` (read without
executing anything, `tables.py`). Defaults as the paper: supervision cost 1 per
root, transfer cost 0, every target of importance 1, max order 5. Prints the
policy; --out FILE.json writes {"roots", "transfers", "objective", "budget", "cost"}.
"""

from __future__ import annotations

import argparse
import sys

from xtc_jax.errors import XtcError
from xtc_jax.infra import atomic
from xtc_jax.taxonomy import solver, tables


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _importance(text: str) -> dict[str, float]:
    out = {}
    for item in _names(text):
        task, _, value = item.partition("=")
        out[task] = float(value)
    return out


def format_policy(policy: solver.Policy) -> str:
    lines = [f"roots (full supervision): {', '.join(policy.roots) or '-'}"]
    for target, sources in sorted(policy.transfers.items()):
        lines.append(f"  {' + '.join(sources)} -> {target}")
    lines.append(f"objective {policy.objective:.4f}, cost {policy.cost:g} of budget "
                 f"{policy.budget:g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xtc_jax.taxonomy.solve",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--affinities", required=True, help=".csv, .json or Taskonomy's .pkl")
    parser.add_argument("--targets", required=True, help="comma list of the tasks to solve")
    parser.add_argument("--sources", required=True, help="comma list of the tasks one may train")
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--max_order", type=int, default=5)
    parser.add_argument("--supervision_cost", type=float, default=1.0)
    parser.add_argument("--transfer_cost", type=float, default=0.0)
    parser.add_argument("--importance", default="", help="e.g. rgb2depth=2,curvature=0.5")
    parser.add_argument("--sqrt", action="store_true",
                        help="square-root the values first, as the original's API did")
    parser.add_argument("--out", default="", help="write the policy as JSON here")
    args = parser.parse_args(argv)
    try:
        problem = solver.Problem(
            tables.read_table(args.affinities), _names(args.targets), _names(args.sources),
            args.budget, args.max_order, _importance(args.importance), args.supervision_cost,
            args.transfer_cost, args.sqrt,
        )  # fmt: skip
        policy = solver.solve(problem)
    except (XtcError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_policy(policy))
    if args.out:
        atomic.write_json(args.out, policy.to_json())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
