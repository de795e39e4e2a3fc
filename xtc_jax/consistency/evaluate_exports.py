"""`python -m xtc_jax.main --mode=eval`: every trained model of a workdir on one split.

Evaluates the exports the main command left in the workdir: the baseline and
consistency models (or the single model of a transfer run) and the frozen
rgb -> K networks of the cache, each on its own domain. Metrics (see
`training/metrics.py` finish_split_metrics): masked L1 for every domain; for normals the
mean, median and RMSE angle and % of pixels under 11.25, 22.5 and 30 degrees;
for depth abs rel, RMSE in metres and % with delta < 1.25. Written to
{workdir}/eval/{split}.json and to TensorBoard under {workdir}/eval/logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax

from xtc_jax import domains as domains_lib
from xtc_jax.consistency import experiment, frozen
from xtc_jax.data import pipeline, prepare
from xtc_jax.errors import DataError
from xtc_jax.infra import atomic, export
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.infra.writers import MetricWriter, Progress
from xtc_jax.models.edges import split_edge
from xtc_jax.training import metrics as metrics_lib


def find_exports(config, workdir: str) -> dict[str, str]:
    """{label: export folder} of the models trained in `workdir` by the main command."""
    config = experiment.resolve(config, workdir)
    found = {}
    for name, run_dir in experiment.model_dirs(workdir).items():
        if os.path.isdir(workdir_lib.export(run_dir)):
            found[name] = workdir_lib.export(run_dir)
    if os.path.isdir(workdir_lib.export(workdir)):
        found["model"] = workdir_lib.export(workdir)
    target = domains_lib.get(config.get("target") or "rgb").name
    for edge, spec in config.networks.items():
        src, dst = split_edge(edge)
        if src != "rgb" or dst == target or spec.get("arch") == "sobel":
            continue
        path = frozen.export_dir(config, workdir, edge)
        if os.path.isdir(path):
            found[f"direct_{dst}"] = path
    if not found:
        raise DataError(
            f"{workdir} holds no exported model: train first with "
            f"python -m xtc_jax.main --config=CONFIG --workdir={workdir}."
        )
    return found


def evaluate_network(net: export.ExportedNetwork, source, batch_size: int) -> dict[str, float]:
    """Split metrics of one exported network on every example of `source`."""
    data = pipeline.make_dataset(source, [net.src, net.dst], net.resolution, batch_size, seed=0,
                                 shuffle=False, num_epochs=1, drop_remainder=False,
                                 process_index=0, process_count=1)  # fmt: skip
    sums_fn = jax.jit(
        lambda params, x, y: metrics_lib.split_sums(net.jax_apply(params, x), y, net.dst)
    )
    total, seen = None, 0
    progress = Progress(len(source), every_seconds=10.0, unit="image")
    for batch in data:
        total = metrics_lib.add_sums(total, sums_fn(net.params, batch[net.src], batch[net.dst]))
        seen += len(batch[net.src])
        progress.update(seen)
    return metrics_lib.finish_split_metrics(total)


def run(config, workdir: str, split: str = "", log: Callable[[str], None] = print) -> dict:
    """Evaluates every export of `workdir` on `split` (default data.val_split); returns metrics."""
    config = experiment.resolve(config, workdir)
    split = split or config.data.val_split
    location = prepare.data_location(config.data, workdir)
    source = prepare.open_split(config.data, location, split)
    results: dict[str, dict[str, float]] = {}
    for label, path in find_exports(config, workdir).items():
        net = export.load_network(path)
        if domains_lib.get(net.dst).loss != "l1":
            log(f"{label}: {net.dst} is a label domain; skipped (no L1 metrics for labels)")
            continue
        log(f"evaluating {label} ({net.edge}, {path}) on {len(source)} {split} examples")
        results[f"{label}/{net.dst}"] = evaluate_network(net, source, config.batch_size)
    flat = {f"{model}/{name}": value for model, metrics in results.items()
            for name, value in metrics.items()}  # fmt: skip
    out_dir = workdir_lib.eval_dir(workdir)
    os.makedirs(out_dir, exist_ok=True)
    style = "base" if config.data.path else prepare.synthetic_style(config.data.synthetic)
    name = split if style == "base" else f"{split}_{style}"  # eval/val_shifted.json
    path = os.path.join(out_dir, f"{name}.json")
    atomic.write_json(path, {"split": split, "examples": len(source), "metrics": results})
    writer = MetricWriter(workdir_lib.logs(out_dir))
    writer.write_scalars(0, flat, split=split)
    writer.close()
    log(format_table(results))
    log(f"wrote {path} and TensorBoard scalars under {out_dir}/logs")
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """One block per model: metric name and value."""
    lines = []
    for model, metrics in results.items():
        lines.append(model)
        lines += [f"  {name:<20} {value:10.4f}" for name, value in metrics.items()]
    return "\n".join(lines) if lines else "(nothing evaluated)"
