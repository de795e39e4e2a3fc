"""Data-parallel scaling on fake CPU devices: is the host the bottleneck?

    python -m xtc_jax.bench.scaling [--devices 1,2,4,8] [--per_device_batch 4] [--case unet_cpu]

For each device count N a child process is started with
XLA_FLAGS=--xla_force_host_platform_device_count=N and runs the training step
of a case (`step_cases.py`) the way the training loop (`training/loop.py`)
does: state replicated on a one-axis mesh, a fresh host batch of
N x per_device_batch examples made a global sharded array every step
(`sharding.host_batch_to_global`), the step jitted with donated state. It
reports the step time and the host's share of it (building and placing the
batch, dispatching the step).

On one CPU the fake devices share the same cores, so the compute per step
grows with N and the ideal step time is N x the 1-device time; what the
benchmark shows is how close each N stays to that (scaling efficiency
N * T1 / TN) and that the host work stays a small fraction of the step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from xtc_jax.infra import atomic


def child(devices: int, per_device_batch: int, case_name: str, rounds: int, steps: int) -> dict:
    import jax
    import numpy as np

    from xtc_jax.bench import step_cases
    from xtc_jax.infra import sharding

    assert jax.device_count() == devices, (jax.device_count(), devices)
    case = step_cases.make_case(case_name, devices * per_device_batch)
    reference = step_cases.JaxStep(case)
    mesh = sharding.make_mesh()
    replicated = sharding.replicated(mesh)
    state = jax.device_put(jax.device_get(reference.state), replicated)
    frozen = jax.device_put(jax.device_get(reference.frozen), replicated)
    state_sharding = jax.tree.map(lambda _: replicated, state)
    step = jax.jit(reference.step_fn, donate_argnums=0,
                   out_shardings=(state_sharding, replicated))  # fmt: skip
    host_batches = [step_cases.random_batch(case, seed) for seed in range(2)]
    metrics = None

    def run(n: int) -> float:
        nonlocal state, metrics
        host_seconds = 0.0
        for i in range(n):
            start = time.perf_counter()
            batch = sharding.host_batch_to_global(host_batches[i % 2], mesh)
            state, metrics = step(state, frozen, batch)
            host_seconds += time.perf_counter() - start
        jax.block_until_ready(metrics)
        return host_seconds

    run(2)
    times, host = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        host.append(run(steps) / steps)
        times.append((time.perf_counter() - start) / steps)
    return {
        "devices": devices,
        "global_batch": case.batch,
        "step_seconds": statistics.median(times),
        "host_seconds": statistics.median(host),
        "loss": float(np.asarray(metrics["loss/total"])),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--per_device_batch", type=int, default=4)
    parser.add_argument("--case", default="unet_cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.child, args.per_device_batch, args.case, args.rounds, args.steps)
        print("RESULT " + json.dumps(result), flush=True)
        return [result]
    results = []
    for n in [int(v) for v in args.devices.split(",")]:
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                   f" --xla_force_host_platform_device_count={n}").strip(),
                   JAX_PLATFORMS="cpu")  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "xtc_jax.bench.scaling", f"--child={n}",
             f"--per_device_batch={args.per_device_batch}", f"--case={args.case}",
             f"--rounds={args.rounds}", f"--steps={args.steps}"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{n} devices failed:\n{out.stderr[-2000:]}")
        results.append(json.loads(line[len("RESULT ") :]))
        r = results[-1]
        base = results[0]["step_seconds"] * r["devices"] / results[0]["devices"]
        print(
            f"{r['devices']} devices, global batch {r['global_batch']:3d}: step "
            f"{1e3 * r['step_seconds']:7.1f} ms, {r['global_batch'] / r['step_seconds']:6.1f} "
            f"images/s, host {1e3 * r['host_seconds']:5.1f} ms "
            f"({100 * r['host_seconds'] / r['step_seconds']:4.1f}%), "
            f"efficiency vs ideal {100 * base / r['step_seconds']:5.1f}%",
            flush=True,
        )
    if args.json:
        atomic.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
