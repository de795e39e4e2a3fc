"""Reading a published .pth without torch: the restricted reader against torch.load.

    python -m xtc_jax.bench.convert [--arch unet --downsample 6] [--rounds 5] [--legacy]

Saves one full-size network of the original's architecture (default: the
rgb2normal UNet, 75.5 M parameters, 288 MiB) with random weights, in torch's
zip or legacy format, then per round (order alternating) times
  ours:  xtc_jax.convert.pth.read_pth (no torch, NumPy arrays)
  torch: torch.load(weights_only=True) + .numpy() of every tensor
and once the whole conversion (`convert_file`: read, map, check, write the
export). Reports the median of each and the median of the per-round ratios.
Needs torch (requirements-bench.txt) for the file and the comparison only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def measure(arch: str, downsample: int, rounds: int, legacy: bool) -> dict:
    import numpy as np
    import torch

    from xtc_jax.bench.torch_unet import build_torch
    from xtc_jax.convert.command import convert_file
    from xtc_jax.convert.pth import read_pth

    kwargs = {"downsample": downsample} if arch in ("unet", "unet_reshade") else {}
    net = build_torch(arch, 3, **kwargs)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rgb2normal_baseline.pth")
        torch.save(net.state_dict(), path, _use_new_zipfile_serialization=not legacy)
        size = os.path.getsize(path)

        def ours() -> None:
            read_pth(path)

        def theirs() -> None:
            state = torch.load(path, weights_only=True)
            [np.asarray(t.numpy()) for t in state.values()]

        times: dict[str, list[float]] = {"ours": [], "torch": []}
        ratios = []
        for index in range(rounds + 1):
            order = [("ours", ours), ("torch", theirs)][:: 1 if index % 2 else -1]
            took = {}
            for name, fn in order:
                start = time.perf_counter()
                fn()
                took[name] = time.perf_counter() - start
            if index:  # the first round warms the page cache
                for name, seconds in took.items():
                    times[name].append(seconds)
                ratios.append(took["ours"] / took["torch"])
        start = time.perf_counter()
        convert_file(path, os.path.join(folder, "out"), log=lambda _: None)
        convert_seconds = time.perf_counter() - start
    return {
        "file_mib": size / 2**20,
        "ours_s": statistics.median(times["ours"]),
        "torch_s": statistics.median(times["torch"]),
        "ratio": statistics.median(ratios),
        "convert_s": convert_seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xtc_jax.bench.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--downsample", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--legacy", action="store_true", help="torch's pre-1.6 format")
    args = parser.parse_args(argv)
    result = measure(args.arch, args.downsample, args.rounds, args.legacy)
    fmt = "legacy" if args.legacy else "zip"
    print(f"{args.arch} ({result['file_mib']:.0f} MiB, {fmt} format), median of {args.rounds}:")
    print(f"  read_pth (no torch)        {result['ours_s']:.3f} s")
    print(f"  torch.load + .numpy()      {result['torch_s']:.3f} s")
    print(f"  ratio ours / torch         {result['ratio']:.2f}")
    print(f"  whole conversion (once)    {result['convert_s']:.2f} s")


if __name__ == "__main__":
    main()
