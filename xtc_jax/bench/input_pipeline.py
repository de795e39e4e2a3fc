"""Input pipeline throughput: our Grain pipeline vs the original's PyTorch DataLoader.

    python -m xtc_jax.bench.input_pipeline [--views 96] [--batch 16] [--batches 12]

Both sides read the same 9-domain 256x256 Taskonomy-format PNGs (rendered by
the synthetic generator) and produce the same float tensors per view: rgb,
normal, reshading, principal_curvature, depth_zbuffer, edge_texture
(sobel_edges, computed from rgb), edge_occlusion, keypoints2d, keypoints3d.

- JAX side: the PNG bytes in array_record shards (TFDS, no TensorFlow) ->
  `xtc_jax.data.pipeline.make_dataset` (Grain).
- PyTorch side: `xtc_jax.bench.torch_loader.OriginalStyleDataset` in a
  `torch.utils.data.DataLoader`, file by file with PIL, as the original does.

Settings, alternated in one run (`--rounds` times; each round times both
sides back to back, in alternating order, and the ratio is taken within the
round; the median over rounds is reported with its range); each
side uses its own way of using N = `--workers` cores:
- one core: no worker processes, one decoding thread, torch.set_num_threads(1);
  samples/s here is samples/s per core.
- N threads: Grain decodes with N threads in one process (OpenCV, PIL and
  NumPy release the GIL); PyTorch's DataLoader has no thread mode, so it
  uses N worker processes.
- N workers: N worker processes on both sides.
Every figure also comes as samples per CPU-second (process + workers).
torch is a benchmark-only extra (requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

DOMAINS = [
    "rgb",
    "normal",
    "reshading",
    "principal_curvature",
    "depth_zbuffer",
    "edge_texture",
    "edge_occlusion",
    "keypoints2d",
    "keypoints3d",
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def prepare_data(root: str, views: int, size: int) -> tuple[str, str]:
    """Renders (once) a synthetic tree and builds its shards; returns (tree, shards)."""
    from xtc_jax.data.sources import shards as shards_lib
    from xtc_jax.data.synthetic import generate

    tree, shards = os.path.join(root, "tree"), os.path.join(root, "shards")
    if not os.path.exists(os.path.join(tree, "train_val_test_synthetic.csv")):
        print(f"rendering {views} synthetic views at {size}x{size} into {tree} ...", flush=True)
        generate.generate(tree, buildings=2, views=views // 2, size=size, seed=0, progress=False)
    if not shards_lib.find_datasets(shards):
        print(f"building array_record shards into {shards} ...", flush=True)
        buildings = sorted(e.name for e in os.scandir(tree) if e.is_dir())
        shards_lib.build_dataset(
            tree, shards, DOMAINS, splits={"train": buildings}, name="bench", log=None
        )
    return tree, shards


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live child processes (workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def time_batches(batches: Iterator, count: int, warmup: int = 2) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for `count` batches after `warmup` batches."""
    for _ in range(warmup):
        next(batches)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    for _ in range(count):
        next(batches)
    return time.perf_counter() - start, cpu_seconds() - cpu_start


def jax_batches(shards: str, batch: int, workers: int, threads: int) -> Iterator:
    from xtc_jax.data import pipeline
    from xtc_jax.data.sources import shards as shards_lib

    source = shards_lib.open_source(shards, "train")
    data = pipeline.make_dataset(
        source,
        DOMAINS,
        resolution=256,
        global_batch_size=batch,
        seed=0,
        worker_count=workers,
        read_threads=threads,
        process_index=0,
        process_count=1,
    )
    return iter(data)


def torch_batches(tree: str, batch: int, workers: int) -> Iterator:
    import torch

    from xtc_jax.bench.torch_loader import OriginalStyleDataset
    from xtc_jax.data.sources.raw import RawFolderSource

    raw = RawFolderSource(tree, [d for d in DOMAINS if d != "edge_texture"], "all")
    views = [raw.paths(i) for i in range(len(raw))]
    dataset = OriginalStyleDataset(views, DOMAINS)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )

    def forever() -> Iterator:
        while True:
            yield from loader

    return forever()


def measure(make: Callable[[], Iterator], batches: int, batch: int) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second)."""
    iterator = make()
    seconds, cpu = time_batches(iterator, batches)
    if hasattr(iterator, "close"):
        iterator.close()
    del iterator
    return batches * batch / seconds, batches * batch / cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "xtc_bench_input"))
    parser.add_argument("--views", type=int, default=96, help="views rendered for the benchmark")
    parser.add_argument("--size", type=int, default=256, help="stored PNG size (square)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    args = parser.parse_args(argv)

    import torch

    tree, shards = prepare_data(args.data, args.views, args.size)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"torch {torch.__version__}; batch {args.batch}, {args.batches} timed batches\n")

    settings = {
        "one core": dict(jax=(0, 1), torch=0),
        f"{args.workers} threads": dict(jax=(0, args.workers), torch=args.workers),
        f"{args.workers} workers": dict(jax=(args.workers, 1), torch=args.workers),
    }
    rounds: dict[str, list[dict[str, tuple[float, float]]]] = {name: [] for name in settings}
    for round_index in range(args.rounds):
        for name, setting in settings.items():
            torch.set_num_threads(1)
            workers, threads = setting["jax"]
            makers = {
                "jax": lambda w=workers, t=threads: jax_batches(shards, args.batch, w, t),
                "torch": lambda w=setting["torch"]: torch_batches(tree, args.batch, w),
            }
            order = ["jax", "torch"] if round_index % 2 == 0 else ["torch", "jax"]
            rounds[name].append({side: measure(makers[side], args.batches, args.batch)
                                 for side in order})  # fmt: skip
            print(f"  round {round_index + 1} {name}: " + ", ".join(
                f"{side} {rate[0]:.1f}/s" for side, rate in rounds[name][-1].items()
            ), flush=True)  # fmt: skip

    print("\nmedian over rounds: samples/s (samples per CPU-second, process + workers)")
    print(f"{'setting':<11} {'Grain':>15} {'PyTorch':>15} {'ratio [range]':>20} {'per CPU-s':>10}")
    for name, results in rounds.items():
        wall = [r["jax"][0] / r["torch"][0] for r in results]
        cpu = [r["jax"][1] / r["torch"][1] for r in results]
        jax_rate = statistics.median(r["jax"][0] for r in results)
        jax_cpu = statistics.median(r["jax"][1] for r in results)
        torch_rate = statistics.median(r["torch"][0] for r in results)
        torch_cpu = statistics.median(r["torch"][1] for r in results)
        print(
            f"{name:<11} {jax_rate:>6.1f} ({jax_cpu:5.1f}) {torch_rate:>6.1f} ({torch_cpu:5.1f}) "
            f"{statistics.median(wall):>6.2f}x [{min(wall):.2f}-{max(wall):.2f}] "
            f"{statistics.median(cpu):>9.2f}x"
        )


if __name__ == "__main__":
    main()
