"""Memory of a training step under each remat mode, and the largest batch that fits.

    python -m xtc_jax.bench.memory [--case consistency_paper] [--chosen all] [--batch 32]
        [--modes none,blocks,networks] [--largest] [--limit_gb 80] [--no_compile]

Two figures per remat mode (`compute.remat`, models/edges.py REMAT_MODES):
- saved for backward: the bytes the forward pass keeps for the backward pass
  (the residuals of the step's vjp), from tracing alone. Remat trades exactly
  these for recomputation, and the figure is the same on every backend.
- compiled footprint: XLA's memory analysis of the compiled step on this
  device, arguments (params, optimizer state, frozen networks, batch) +
  outputs not aliased to donated inputs + temporaries. This is what must fit
  on a GPU. XLA's CPU backend schedules the recomputation early, so on a CPU
  its temporaries barely change with remat (see BENCHMARKS.md).

With --largest, the largest batch whose compiled footprint fits --limit_gb
(default: the device's memory limit) is found by doubling and bisection. With
--measure, one real step per mode at --batch (modes from the least to the most memory,
since the device's peak counter never goes down) and then, with --largest, at the first
mode's largest batch: peak device memory from `device.memory_stats()` (GPU/TPU; a CPU
reports none). With
--chosen all, every perceptual loss of configs/normal.py is active (the
original needed --k and 3 GPUs for that at batch 32).
"""

from __future__ import annotations

import argparse
import time

from xtc_jax.bench import step_cases
from xtc_jax.models.edges import REMAT_MODES, remat_mode

ALL = tuple(sorted(step_cases.PERCEPTUAL))
GIB = 2**30


def _step(case_name: str, batch: int, remat: str, chosen: tuple[str, ...]):
    case = step_cases.make_case(case_name, batch, chosen)
    return step_cases.JaxStep(case, remat=remat_mode(remat), allocate=False)


def step_memory_bytes(case_name: str, batch: int, remat: str,
                      chosen: tuple[str, ...] = step_cases.CHOSEN) -> dict[str, int]:  # fmt: skip
    """Device bytes of one compiled step: {"arguments", "outputs", "temporaries", "total"}."""
    return compiled_memory_bytes(_step(case_name, batch, remat, chosen))


def compiled_memory_bytes(step: step_cases.JaxStep) -> dict[str, int]:
    """step_memory_bytes of an already built step."""
    analysis = step.lowered().compile().memory_analysis()
    arguments = int(analysis.argument_size_in_bytes)
    outputs = int(analysis.output_size_in_bytes - analysis.alias_size_in_bytes)
    temporaries = int(analysis.temp_size_in_bytes)
    return {"arguments": arguments, "outputs": outputs, "temporaries": temporaries,
            "total": arguments + outputs + temporaries}  # fmt: skip


def saved_bytes(case_name: str, batch: int, remat: str,
                chosen: tuple[str, ...] = step_cases.CHOSEN) -> int:  # fmt: skip
    """Bytes one step's forward pass saves for its backward pass (no compilation)."""
    return _step(case_name, batch, remat, chosen).saved_bytes()


def largest_batch(case_name: str, limit_bytes: int, remat: str,
                  chosen: tuple[str, ...] = step_cases.CHOSEN, cap: int = 4096,
                  log=print, start: int = 1) -> int:  # fmt: skip
    """The largest batch whose compiled step fits in `limit_bytes` (0 if batch 1 does not).

    The search doubles from `start` (fewer compilations when the answer is near it), then
    bisects; below `start` it bisects from 1."""

    def fits(batch: int) -> bool:
        total = step_memory_bytes(case_name, batch, remat, chosen)["total"]
        log(
            f"  batch {batch:5d}, remat {remat:<8}: {total / GIB:8.2f} GiB "
            f"{'fits' if total <= limit_bytes else 'too big'}"
        )
        return total <= limit_bytes

    if start > 1 and not fits(start):
        low, high = 0, start
    else:
        if start <= 1 and not fits(1):
            return 0
        low, high = max(start, 1), 2 * max(start, 1)
    while low and high <= cap and fits(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


#: Remat modes from the least memory to the most (the order --measure runs them in).
LEAST_MEMORY_FIRST = ("networks", "blocks", "none")


def measured_peak_bytes(case_name: str, batch: int, remat: str,
                        chosen: tuple[str, ...]) -> int | None:  # fmt: skip
    """Peak bytes in use on the device after two real steps (None where it reports none).

    The counter is the process's running maximum: call in increasing order of memory.
    """
    import jax

    step = step_cases.JaxStep(step_cases.make_case(case_name, batch, chosen),
                              remat=remat_mode(remat))  # fmt: skip
    step.run(2)
    stats = jax.devices()[0].memory_stats() or {}
    return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None


def _parse_modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in REMAT_MODES]
    if unknown or not modes:
        raise SystemExit(f"--modes {text!r}: use a comma list of {', '.join(REMAT_MODES)}")
    return modes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", default="consistency_paper", choices=step_cases.CASES)
    parser.add_argument("--chosen", default="all", help="'all' or a comma list of domains")
    parser.add_argument("--batch", type=int, default=32, help="batch of the per-mode table")
    parser.add_argument("--modes", default=",".join(REMAT_MODES), help="remat modes to measure")
    parser.add_argument("--no_compile", action="store_true",
                        help="saved-for-backward only (tracing; no compilation)")  # fmt: skip
    parser.add_argument("--largest", action="store_true", help="also search the largest batch")
    parser.add_argument("--largest_from", type=int, default=1,
                        help="--largest: start the doubling search at this batch")
    parser.add_argument("--measure", action="store_true",
                        help="also run real steps and read the device's peak memory")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    parser.add_argument(
        "--limit_gb", type=float, default=0.0,
        help="memory limit in GiB for --largest (default: the device's bytes_limit)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    import jax

    modes = _parse_modes(args.modes)
    chosen = ALL if args.chosen == "all" else tuple(args.chosen.split(","))
    device = jax.devices()[0]
    taken = step_cases.make_case(args.case, args.batch, chosen).chosen  # none for the UNet cases
    print(f"{device.device_kind}: case {args.case}, batch {args.batch}, "
          f"perceptual {','.join(taken) or '-'}", flush=True)  # fmt: skip
    result: dict = {"device": device.device_kind, "case": args.case, "batch": args.batch,
                    "modes": {}}  # fmt: skip
    header = f"{'remat':<9} {'saved for backward':>19}"
    if not args.no_compile:
        header += f" {'compiled total':>15} {'temporaries':>12} {'compile s':>10}"
    print(header, flush=True)
    for mode in modes:
        step = _step(args.case, args.batch, mode, chosen)
        row = {"saved": step.saved_bytes()}
        line = f"{mode:<9} {row['saved'] / GIB:15.2f} GiB"
        if not args.no_compile:
            start = time.perf_counter()
            row.update(compiled_memory_bytes(step))
            seconds = time.perf_counter() - start
            line += (f" {row['total'] / GIB:11.2f} GiB {row['temporaries'] / GIB:8.2f} GiB "
                     f"{seconds:10.0f}")  # fmt: skip
        print(line, flush=True)
        result["modes"][mode] = row
    if args.largest:
        limit = int(args.limit_gb * GIB) or int((device.memory_stats() or {}).get("bytes_limit", 0))
        if not limit:
            raise SystemExit("no device memory limit known: pass --limit_gb")
        print(f"largest batch within {limit / GIB:.2f} GiB:", flush=True)
        result["largest"] = {}
        for mode in modes:
            result["largest"][mode] = largest_batch(args.case, limit, mode, chosen,
                                                    start=args.largest_from)  # fmt: skip
            print(f"largest batch, remat={mode}: {result['largest'][mode]}", flush=True)
    if args.measure:
        result["measured_peak_bytes"] = _measure(args, modes, chosen, result.get("largest", {}))
    if args.json:
        from xtc_jax.infra import atomic

        atomic.write_json(args.json, result)
    return result


def _measure(args, modes, chosen, largest: dict) -> dict:
    ordered = [m for m in LEAST_MEMORY_FIRST if m in modes]
    runs = [(m, args.batch) for m in ordered]
    if largest and largest.get(ordered[0]):
        runs.append((ordered[0], largest[ordered[0]]))
    out = {}
    for mode, batch in runs:
        peak = measured_peak_bytes(args.case, batch, mode, chosen)
        out[f"{mode}@{batch}"] = peak
        shown = f"{peak / GIB:.2f} GiB" if peak is not None else "not reported by this device"
        print(f"measured peak after 2 steps, remat={mode}, batch {batch}: {shown}", flush=True)
    return out


if __name__ == "__main__":
    main()
