"""Held-out evaluation during training: per-example metrics averaged over a few batches.

A method gives a jitted-able `metric_fn(params, batch) -> {name: [B] values}`
and, optionally, `plot_fn(params, batch) -> {name: (B, H, W, C)}`; the
`Evaluator` streams the first `batches` batches of a split in order (every
evaluation sees the same examples), averages each metric over all of them
(`metrics.average`), writes the scalars under the "val" split, and draws the
first batch's plots as an image grid (TensorBoard and `{run}/plots/`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax

from xtc_jax.data import pipeline, preview
from xtc_jax.training import metrics as metrics_lib


class Evaluator:
    """Evaluates params on one split; its jitted functions compile once per run."""

    def __init__(
        self,
        source,
        domains: Sequence[str],
        resolution: int,
        batch_size: int,
        batches: int,
        metric_fn: Callable,
        plot_fn: Callable | None = None,
        plot_names: Sequence[str] = (),
        plot_dir: str = "",
        seed: int = 0,
    ):
        self.source = source
        self.domains = list(domains)
        self.resolution = resolution
        self.batch_size = min(batch_size, len(source))
        self.batches = batches
        self.seed = seed
        self.metric_fn = jax.jit(metric_fn)
        self.plot_fn = jax.jit(plot_fn) if plot_fn is not None and plot_names else None
        self.plot_names = list(plot_names)
        self.plot_dir = plot_dir

    def __call__(self, params, step: int, writer, log: Callable[[str], None]) -> dict[str, float]:
        data = pipeline.make_dataset(self.source, self.domains, self.resolution, self.batch_size,
                                     self.seed, shuffle=False, num_epochs=1, process_index=0,
                                     process_count=1)  # fmt: skip
        results, first = [], None
        for i, batch in enumerate(data):
            if i >= self.batches:
                break
            batch.pop(pipeline.INDEX_KEY)
            first = first or batch
            results.append(self.metric_fn(params, batch))
        metrics = metrics_lib.average(results)
        if first is not None and self.plot_fn is not None:
            values = jax.device_get(self.plot_fn(params, first))
            grid = preview.batch_grid(values, self.plot_names, rows=4)
            writer.write_images(step, {"plots": grid})
            os.makedirs(self.plot_dir, exist_ok=True)
            preview.write_grid(os.path.join(self.plot_dir, f"step_{step:07d}.png"), values,
                               self.plot_names)  # fmt: skip
        writer.write_scalars(step, metrics, split="val")
        log(f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics
