"""Training-step speed: the project's jitted JAX step against the same step in PyTorch.

    python -m xtc_jax.bench.train_step [--cases unet_cpu,consistency_cpu] [--rounds 5]

Cases (`step_cases.py`): the UNet alone at the `:cpu` size and at the paper's
(ds 6, 256 px), and the full consistency step of `configs/normal.py` (target
network + k=3 frozen perceptual networks forward and backward, + the k direct
networks forward). Implementations, timed alternately in one run:
  jax                 our step (fp32), `jax.jit`, state donated
  jax_bf16            our step with compute.dtype=bfloat16 (fp32 params)
  torch_original      the original's setting: eager, fp32, NCHW
  torch_channels_last eager, fp32, channels_last
  torch_compiled      torch.compile, fp32, channels_last
  torch_bf16          torch.compile, bf16 autocast, channels_last
All start from the same weights; the first-step losses are printed side by side
as a check that they compute the same thing. Each round runs every
implementation for --steps steps (order rotated per round); the median step
time over rounds is reported with images/s and the speed ratio torch/jax
(above 1: JAX is faster). The JAX step's FLOPs come from XLA's cost analysis;
on a GPU the model FLOPs utilisation is reported against the chip's bf16 peak.
torch is a benchmark-only extra (requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from xtc_jax.bench.input_pipeline import cpu_model
from xtc_jax.infra import atomic

IMPLS = ("jax", "jax_bf16", "torch_original", "torch_channels_last", "torch_compiled",
         "torch_bf16")  # fmt: skip
#: Dense bf16 peak FLOP/s by device kind substring (vendor data sheets, SXM parts).
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def bf16_peak(device_kind: str) -> float | None:
    return next((v for k, v in BF16_PEAK.items() if k in device_kind), None)


def machine() -> str:
    import jax

    device = jax.devices()[0]
    if device.platform == "gpu":
        return f"{device.device_kind} (jax {jax.__version__})"
    return f"{cpu_model()}, {os.cpu_count()} cores ({platform.machine()}, jax {jax.__version__})"


def step_flops(jax_step) -> tuple[float | None, float]:
    """(FLOPs of one compiled step from XLA's cost analysis, compile seconds)."""
    start = time.perf_counter()
    compiled = jax_step.lowered().compile()
    seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else None
    return flops or None, seconds


def peak_memory_bytes() -> int | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def bench_case(name: str, batch: int, impls: list[str], rounds: int, steps: int,
               device: str, log=print, k: int = 3) -> dict:  # fmt: skip
    from xtc_jax.bench import step_cases

    case = step_cases.make_case(name, batch, step_cases.chosen_for(k))
    reference = step_cases.JaxStep(case)
    flops, compile_seconds = step_flops(reference)
    runners, first_loss, failed = {}, {}, {}
    for impl in impls:
        try:
            runner = reference if impl == "jax" else step_cases.make_runner(
                impl, case, reference, device)  # fmt: skip
            start = time.perf_counter()
            runner.run(1)
            first_loss[impl] = runner.loss()
            runner.run(1)  # torch.compile / autotuning may need a second call
            log(
                f"  {impl:<20} ready in {time.perf_counter() - start:6.1f} s, first-step loss "
                f"{first_loss[impl]:.6f}"
            )
            runners[impl] = runner
        except Exception as error:
            failed[impl] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            log(f"  {impl:<20} FAILED: {failed[impl]}")
    times = step_cases.time_alternately({impl: r.run for impl, r in runners.items()}, rounds, steps)
    result = {"case": name, "batch": batch, "resolution": case.resolution,
              "chosen": list(case.chosen), "jax_step_flops": flops,
              "jax_compile_seconds": compile_seconds, "first_step_loss": first_loss,
              "failed": failed, "impls": {}}  # fmt: skip
    for impl, values in times.items():
        median = statistics.median(values)
        entry = {"step_seconds": median, "min": min(values), "max": max(values),
                 "images_per_second": batch / median}  # fmt: skip
        if flops and impl.startswith("jax"):
            entry["achieved_tflops"] = flops / median / 1e12
        result["impls"][impl] = entry
    if "jax" in result["impls"]:
        jax_time = result["impls"]["jax"]["step_seconds"]
        best_jax = min(v["step_seconds"] for k, v in result["impls"].items() if k.startswith("jax"))
        for impl, entry in result["impls"].items():
            if impl.startswith("torch"):
                entry["speed_ratio_jax_fp32"] = entry["step_seconds"] / jax_time
                entry["speed_ratio_best_jax"] = entry["step_seconds"] / best_jax
    return result


def format_case(result: dict, peak: float | None) -> str:
    lines = [
        f"{result['case']}: batch {result['batch']}, {result['resolution']} px"
        + (f", perceptual {','.join(result['chosen'])}" if result["chosen"] else "")
    ]
    if result["jax_step_flops"]:
        lines.append(
            f"  XLA cost analysis: {result['jax_step_flops'] / 1e9:.2f} GFLOP per step, "
            f"compiled in {result['jax_compile_seconds']:.1f} s"
        )
    lines.append(
        f"  {'impl':<20} {'step ms':>9} {'(min-max)':>17} {'images/s':>9} "
        f"{'torch/jax':>10} {'torch/best jax':>15}"
    )
    for impl, e in result["impls"].items():
        spread = f"({1e3 * e['min']:.1f}-{1e3 * e['max']:.1f})"
        line = (
            f"  {impl:<20} {1e3 * e['step_seconds']:9.1f} "
            f"{spread:>17} "
            f"{e['images_per_second']:9.1f}"
        )
        if "speed_ratio_jax_fp32" in e:
            line += f" {e['speed_ratio_jax_fp32']:9.2f}x {e['speed_ratio_best_jax']:14.2f}x"
        elif "achieved_tflops" in e:
            line += f"   {e['achieved_tflops']:.2f} TFLOP/s"
            if peak:
                line += f" = {100 * e['achieved_tflops'] * 1e12 / peak:.1f}% of bf16 peak"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases",
        default="unet_cpu,consistency_cpu,unet_paper",
        help="comma list of: unet_cpu, unet_paper, consistency_cpu, consistency_paper",
    )
    parser.add_argument(
        "--impls", default=",".join(IMPLS), help="comma list of " + ", ".join(IMPLS)
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per implementation per round")
    parser.add_argument("--batch_cpu", type=int, default=8, help="batch of the *_cpu cases")
    parser.add_argument(
        "--batch_paper",
        type=int,
        default=0,
        help="batch of the *_paper cases (default: 32 on GPU, 2 on CPU)",
    )
    parser.add_argument("--k", type=int, default=3,
                        help="perceptual losses of the consistency cases (3, or up to 7: all)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import jax
    import torch

    gpu = jax.devices()[0].platform == "gpu"
    device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
    batch_paper = args.batch_paper or (32 if gpu else 2)
    peak = bf16_peak(jax.devices()[0].device_kind) if gpu else None
    print(
        f"machine: {machine()}; torch {torch.__version__} on {device} "
        f"({torch.get_num_threads()} threads)",
        flush=True,
    )
    results = {"machine": machine(), "torch": torch.__version__, "cases": []}
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        batch = args.batch_cpu if name.endswith("_cpu") else batch_paper
        print(f"== {name} (batch {batch})", flush=True)
        result = bench_case(name, batch, [i.strip() for i in args.impls.split(",")],
                            args.rounds, args.steps, device, k=args.k)  # fmt: skip
        if gpu:
            result["peak_device_memory_bytes"] = peak_memory_bytes()
        print(format_case(result, peak), flush=True)
        results["cases"].append(result)
    if args.json:
        atomic.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
