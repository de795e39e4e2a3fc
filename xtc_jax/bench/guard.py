"""What the training loop's non-finite guard costs: the plain step against the guarded ones.

    python -m xtc_jax.bench.guard [--case consistency_cpu] [--batch 8] [--rounds 10] [--steps 4]

The guard (`training/nonfinite.py`) checks every metric and every floating
leaf of the new state inside the jitted step, and in "skip" mode selects the
old state leaf by leaf when a step is not finite. Three compilations of the
case's step (`step_cases.JaxStep`), each with its own copy of the state, take
turns every round (order rotated, one untimed step first); the report is each
one's median step time and its paired ratio to the plain step (the median of
the per-round ratios).
"""

from __future__ import annotations

import argparse
import statistics

import jax
import numpy as np


def _runner(fn, state, frozen, batch):
    holder = {"state": jax.tree.map(np.array, jax.device_get(state))}
    holder["state"] = jax.device_put(holder["state"])

    def run(steps: int) -> None:
        out = None
        for _ in range(steps):
            holder["state"], *out = fn(holder["state"], frozen, batch)
        jax.block_until_ready(out)

    return run


def measure(case_name: str, batch: int, rounds: int, steps: int) -> dict:
    from xtc_jax.bench import step_cases
    from xtc_jax.training import nonfinite

    jax_step = step_cases.JaxStep(step_cases.make_case(case_name, batch))
    fns = {
        "plain": jax.jit(jax_step.step_fn, donate_argnums=0),
        "guard_raise": jax.jit(nonfinite.guard(jax_step.step_fn, skip=False), donate_argnums=0),
        "guard_skip": jax.jit(nonfinite.guard(jax_step.step_fn, skip=True), donate_argnums=0),
    }
    runs = {name: _runner(fn, jax_step.state, jax_step.frozen, jax_step.batch)
            for name, fn in fns.items()}  # fmt: skip
    times = step_cases.time_alternately(runs, rounds, steps, warm_steps=1)
    result = {"case": case_name, "batch": batch, "rounds": rounds, "steps": steps}
    for name, seconds in times.items():
        ratios = [t / p for t, p in zip(seconds, times["plain"], strict=True)]
        result[name] = {"median_ms": 1e3 * statistics.median(seconds),
                        "ratio_to_plain": statistics.median(ratios)}  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m xtc_jax.bench.guard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="consistency_cpu", help="a step_cases.CASES name")
    parser.add_argument("--batch", type=int, default=8, help="examples per step")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of alternating timing")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    args = parser.parse_args(argv)
    result = measure(args.case, args.batch, args.rounds, args.steps)
    print(f"{result['case']}, batch {result['batch']}, {args.rounds} rounds x {args.steps} steps")
    for name in ("plain", "guard_raise", "guard_skip"):
        figures = result[name]
        print(f"  {name:<12} {figures['median_ms']:9.1f} ms/step   "
              f"x{figures['ratio_to_plain']:.3f} of plain")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
