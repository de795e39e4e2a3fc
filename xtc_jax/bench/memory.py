"""Memory of a training step and the largest batch that fits, with and without remat.

    python -m xtc_jax.bench.memory [--case consistency_paper] [--chosen all] [--limit_gb 80]

XLA's compiled memory analysis of the project's step gives its device
footprint without running it: arguments (params, optimizer state, frozen
networks, batch) + outputs not aliased to donated inputs + temporaries. The
largest batch is found by doubling and bisection on that figure against
--limit_gb (default: the device's memory limit). With --chosen all, every
perceptual loss of configs/normal.py is active (the original needed --k and
3 GPUs for that at batch 32).
"""

from __future__ import annotations

import argparse

from xtc_jax.bench import step_cases

ALL = tuple(sorted(step_cases.PERCEPTUAL))


def step_memory_bytes(case_name: str, batch: int, remat: bool,
                      chosen: tuple[str, ...] = step_cases.CHOSEN) -> dict[str, int]:  # fmt: skip
    """Device bytes of one compiled step: {"arguments", "outputs", "temporaries", "total"}."""
    case = step_cases.make_case(case_name, batch, chosen)
    step = step_cases.JaxStep(case, remat=remat, allocate=False)
    analysis = step.lowered().compile().memory_analysis()
    arguments = int(analysis.argument_size_in_bytes)
    outputs = int(analysis.output_size_in_bytes - analysis.alias_size_in_bytes)
    temporaries = int(analysis.temp_size_in_bytes)
    return {"arguments": arguments, "outputs": outputs, "temporaries": temporaries,
            "total": arguments + outputs + temporaries}  # fmt: skip


def largest_batch(case_name: str, limit_bytes: int, remat: bool,
                  chosen: tuple[str, ...] = step_cases.CHOSEN, cap: int = 4096,
                  log=print) -> int:  # fmt: skip
    """The largest batch whose step fits in `limit_bytes` (0 if even batch 1 does not)."""

    def fits(batch: int) -> bool:
        total = step_memory_bytes(case_name, batch, remat, chosen)["total"]
        log(
            f"  batch {batch:5d}, remat {remat!s:<5}: {total / 2**30:8.2f} GiB "
            f"{'fits' if total <= limit_bytes else 'too big'}"
        )
        return total <= limit_bytes

    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= cap and fits(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="consistency_paper")
    parser.add_argument("--chosen", default="all", help="'all' or a comma list of domains")
    parser.add_argument(
        "--limit_gb",
        type=float,
        default=0.0,
        help="memory limit in GiB (default: the device's bytes_limit)",
    )
    args = parser.parse_args(argv)
    import jax

    chosen = ALL if args.chosen == "all" else tuple(args.chosen.split(","))
    limit = int(args.limit_gb * 2**30) or int((jax.devices()[0].memory_stats() or {}).get(
        "bytes_limit", 0))  # fmt: skip
    if not limit:
        raise SystemExit("no device memory limit known: pass --limit_gb")
    print(
        f"{jax.devices()[0].device_kind}: limit {limit / 2**30:.1f} GiB; case {args.case}, "
        f"perceptual {','.join(chosen)}",
        flush=True,
    )
    result = {}
    for remat in (False, True):
        result[f"remat={remat}"] = largest_batch(args.case, limit, remat, chosen)
        print(f"largest batch, remat={remat}: {result[f'remat={remat}']}", flush=True)
    return result


if __name__ == "__main__":
    main()
