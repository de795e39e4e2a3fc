"""The viewers' speed on a workdir: model loading, one image through the page, video frames/s.

    python -m xtc_jax.bench.viewers --workdir=/tmp/xtc [--rounds 20] [--frames 96]

On the quick start's workdir (or any main run's), times
  - loading the models with their energy (`Predictor.load`, statistics present);
  - one image through every model (`Predictor`), compiled first, median of --rounds;
  - one image through the web page's whole answer (`Engine.predict`: the models plus
    every PNG, the reference histogram included), median of --rounds;
  - the video tool on the fly-through (`apps/video.run`, --frames frames, compiled first)
    with batches of 8 frames against batches of 1, taking turns every round: frames/s and
    the median paired ratio (above 1: batching is faster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def _median_seconds(run, rounds: int) -> float:
    run()  # compiled and warm first
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="A main run's workdir.")
    parser.add_argument("--task", default="normal")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--video_rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from xtc_jax.apps import video
    from xtc_jax.apps.predictor import Predictor
    from xtc_jax.apps.web import examples
    from xtc_jax.apps.web.engine import Engine
    from xtc_jax.bench.train_step import machine

    start = time.perf_counter()
    predictor = Predictor.load(args.task, workdir=args.workdir, log=lambda _: None)
    load_s = time.perf_counter() - start
    rgb = examples.examples(predictor.resolution)[0].rgb
    model_s = _median_seconds(lambda: predictor(rgb[None]), args.rounds)
    engine = Engine(args.workdir, log=lambda _: None)
    page_s = _median_seconds(lambda: engine.predict(args.task, rgb), args.rounds)

    def video_seconds(batch: int, folder: str) -> float:
        clip = video.flythrough_clip("flythrough", predictor.resolution, predictor.domain,
                                     args.frames)  # fmt: skip
        start = time.perf_counter()
        video.run(predictor, clip, f"{folder}/b{batch}.mp4", batch=batch, log=lambda _: None,
                  progress=False)  # fmt: skip
        return time.perf_counter() - start

    rates: dict[int, list[float]] = {8: [], 1: []}
    with tempfile.TemporaryDirectory() as folder:
        for batch in rates:  # compile both batch shapes first
            video_seconds(batch, folder)
        for _ in range(args.video_rounds):
            for batch in rates:
                rates[batch].append(args.frames / video_seconds(batch, folder))
    ratios = [b8 / b1 for b8, b1 in zip(rates[8], rates[1], strict=True)]
    result = {
        "machine": machine(), "workdir": args.workdir, "resolution": predictor.resolution,
        "middles": list(predictor.middles), "load_s": load_s, "model_ms": 1e3 * model_s,
        "page_ms": 1e3 * page_s,
        "video_frames_per_s": {str(b): statistics.median(r) for b, r in rates.items()},
        "video_batch8_over_batch1": statistics.median(ratios),
    }  # fmt: skip
    print(f"{result['machine']}; {args.workdir} ({predictor.resolution} px, energy through "
          f"{len(predictor.middles)} paths)")
    print(f"  load (models + energy networks): {load_s:.2f} s")
    print(f"  one image, every model: {result['model_ms']:.1f} ms (median of {args.rounds})")
    print(f"  one image, the page's whole answer (models + PNGs): {result['page_ms']:.1f} ms")
    for batch, fps in result["video_frames_per_s"].items():
        print(f"  video, batches of {batch}: {fps:.1f} frames/s ({args.frames} frames, median of "
              f"{args.video_rounds})")
    print(f"  batching 8 / 1: {result['video_batch8_over_batch1']:.2f}x (median paired ratio)")
    return result


if __name__ == "__main__":
    main()
