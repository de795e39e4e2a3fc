"""Stage II's readout batching: one vmapped step for G readouts against G calls of one step.

    python -m xtc_jax.bench.taxonomy_readouts [--readouts 10] [--batch 8] [--rounds 5] [--steps 10]

`taxonomy/transfers.py` trains the G readouts of one order into one target either with one
jitted step that vmaps the readout over them ("vmap") or with one jitted single-readout
step called for each ("loop"); both compile once (`transfers.make_step`). This times both
steps on the `:cpu` readout (width 0.125, 4x4x8 representations, 64 px normal targets),
compiled and warmed up first, taking turns every round, and reports the median time per
step of all G readouts and the median paired ratio vmap/loop (above 1: the loop is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readouts", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--width", type=float, default=0.125)
    args = parser.parse_args(argv)
    import optax

    from xtc_jax.bench.train_step import machine
    from xtc_jax.models.taskonomy_net import TransferReadout
    from xtc_jax.taxonomy import tasks, transfers

    rng = np.random.default_rng(0)
    g, b = args.readouts, args.batch
    x = jax.numpy.asarray(rng.normal(size=(g, b, 4, 4, 8)).astype(np.float32))
    batch = {"normal": jax.numpy.asarray(rng.random((b, 64, 64, 3)).astype(np.float32))}
    task, readout = tasks.get("normal"), TransferReadout(3, 8, args.width)
    optimizer = optax.adam(1e-3)
    runners = {}
    for batching in ("vmap", "loop"):
        step, to_step_form = transfers.make_step(task, readout, optimizer, batching, g)
        params, opt_state = transfers.init_readouts(readout, x, 0, optimizer)
        runners[batching] = [step, to_step_form(params), to_step_form(opt_state)]

    def run(name: str, steps: int) -> float:
        step, params, opt_state = runners[name]
        start = time.perf_counter()
        for _ in range(steps):
            params, opt_state, losses = step(params, opt_state, x, batch)
        jax.block_until_ready(losses)
        runners[name][1:] = [params, opt_state]
        return (time.perf_counter() - start) / steps

    for name in runners:
        run(name, 2)  # compile and warm up
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        for name in (("vmap", "loop") if r % 2 == 0 else ("loop", "vmap")):
            times[name].append(run(name, args.steps))
    ratios = [v / lp for v, lp in zip(times["vmap"], times["loop"], strict=True)]
    result = {"machine": machine(), "readouts": g, "batch": b,
              "vmap_ms": 1e3 * statistics.median(times["vmap"]),
              "loop_ms": 1e3 * statistics.median(times["loop"]),
              "ratio_vmap_over_loop": statistics.median(ratios)}  # fmt: skip
    print(f"{result['machine']}: {g} readouts, batch {b}: vmap {result['vmap_ms']:.1f} ms/step, "
          f"loop {result['loop_ms']:.1f} ms/step, vmap/loop {result['ratio_vmap_over_loop']:.2f}x "
          f"(median of {args.rounds} rounds)")
    return result


if __name__ == "__main__":
    main()
