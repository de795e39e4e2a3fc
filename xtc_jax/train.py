"""`train_and_evaluate(config, workdir)`: one training run on the mesh, resumable.

The loop, as in google/flax examples: validate the config before any
compilation; prepare data; load the frozen networks (training missing ones
with the transfer config, `perceptual.py`); build the replicated state;
restore the latest checkpoint (state, win-rate statistics, chosen losses and
the Grain iterator position) if the workdir has one; then step. Every epoch
the k perceptual losses are re-chosen (by win-rate or at random) and the
step compiled for that subset is taken from a cache. Metrics are fetched a
step late so the host never waits on the device. Periodic evaluation on the
validation split writes scalars, image grids and JSONL; checkpoints are
async and atomic; at the end the trainable networks are exported for
inference.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import numpy as np

from xtc_jax import checkpoint as ckpt_lib
from xtc_jax import domains as domains_lib
from xtc_jax import evaluate, optim, perceptual, selection, sharding
from xtc_jax.data import pipeline, prepare, preview
from xtc_jax.errors import ConfigError
from xtc_jax.graph import TaskGraph, path_edges, split_edge
from xtc_jax.step import loss_terms, make_train_step, perceptual_names
from xtc_jax.writers import MetricWriter, Progress


def _log(message: str) -> None:
    """Run log lines, from process 0 only (every process runs the same loop)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def validate(config) -> tuple[TaskGraph, dict, str]:
    """Checks the config before any compilation; returns (graph, loss terms, target edge)."""
    for name in config.data.domains:
        domains_lib.get(name)
    resolution = config.data.resolution
    for key, spec in config.networks.items():
        split_edge(key)
        downsample = spec.get("downsample", 0)
        if downsample and resolution % 2**downsample:
            raise ConfigError(
                f"data.resolution={resolution} is not divisible by 2^{downsample} = "
                f"{2**downsample}, as networks[{key!r}] (downsample={downsample}) needs. "
                f"Use a multiple of {2**downsample}, e.g. {2**downsample * 4}."
            )
    unknown = [e for e in config.freeze if e not in config.networks]
    if unknown:
        raise ConfigError(f"freeze names unconfigured networks: {unknown}.")
    graph = TaskGraph(config.networks, config.compute.dtype, config.compute.remat)
    graph.check_paths(config.paths, config.data.domains)
    terms = loss_terms(config)
    names = perceptual_names(terms)
    if not 0 <= config.selection.k <= len(names):
        raise ConfigError(
            f"selection.k={config.selection.k}, but the config has {len(names)} perceptual "
            f"losses ({', '.join(names) or 'none'})."
        )
    mae = next(t for t in terms.values() if t.kind == "mae")
    target_edge = path_edges(config.paths[mae.pred])[-1]
    if target_edge in config.freeze:
        raise ConfigError(f"the supervised network {target_edge!r} is in freeze; unfreeze it.")
    perceptual.check_checkpoints(config)
    if config.train.best_metric and config.train.checkpoint_every % config.train.eval_every:
        raise ConfigError(
            f"train.best_metric={config.train.best_metric!r} ranks checkpoints by evaluation, so "
            f"train.checkpoint_every ({config.train.checkpoint_every}) must be a multiple of "
            f"train.eval_every ({config.train.eval_every})."
        )
    return graph, terms, target_edge


def _steps_per_epoch(config, examples: int) -> int:
    """config.train.steps_per_epoch, or the original's N / (400 * batch) (at least 1)."""
    return config.train.steps_per_epoch or max(1, examples // (400 * config.batch_size))


def _initial_state(config, graph, trainable_edges, target_edge, optimizer, names):
    rng = jax.random.PRNGKey(config.seed)
    params = graph.init(rng, config.data.resolution, trainable_edges)
    if config.train.init_from:
        loaded, _ = ckpt_lib.load_exported(config.train.init_from)
        params[target_edge] = loaded
    return {
        "step": np.int32(0),
        "params": params,
        "opt_state": optimizer.init(params),
        "rng": rng,
        "winrate": selection.winrate_init(names),
    }


class _Evaluator:
    """Held-out metrics and plot grids; its jitted functions are compiled once per run."""

    def __init__(self, config, graph, terms):
        mae = next(t for t in terms.values() if t.kind == "mae")
        self.config = config
        self.eval_step = jax.jit(
            evaluate.make_eval_step(
                graph, list(config.paths[mae.pred]), list(config.paths[mae.target]), mae.domain
            )
        )
        plots = {p: list(config.paths[p]) for p in config.plots}
        self.plot_values = jax.jit(lambda params, batch: graph.evaluate(params, batch, plots))

    def __call__(self, params, source, plot_dir: str, step: int, writer, log) -> dict:
        """Metrics of the target network on `eval_batches` batches of `source`."""
        config = self.config
        batch_size = min(config.batch_size, len(source))
        data = pipeline.make_dataset(source, list(config.data.domains), config.data.resolution,
                                     batch_size, config.seed, shuffle=False, num_epochs=1,
                                     process_index=0, process_count=1)  # fmt: skip
        results, first = [], None
        for i, batch in enumerate(data):
            if i >= config.train.eval_batches:
                break
            batch.pop(pipeline.INDEX_KEY)
            first = first or batch
            results.append(self.eval_step(params, batch))
        metrics = evaluate.average(results)
        if first is not None and config.plots:
            values = jax.device_get(self.plot_values(params, first))
            grid = preview.batch_grid(values, list(config.plots), rows=4)
            writer.write_images(step, {"plots": grid})
            os.makedirs(plot_dir, exist_ok=True)
            preview.write_grid(os.path.join(plot_dir, f"step_{step:07d}.png"), values,
                               list(config.plots))  # fmt: skip
        writer.write_scalars(step, metrics, split="val")
        log(f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics


def train_and_evaluate(config, workdir: str, log: Callable[[str], None] = _log) -> dict:
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns final metrics."""
    graph, terms, target_edge = validate(config)
    os.makedirs(workdir, exist_ok=True)
    location = prepare.data_location(config.data, workdir)
    train_source = prepare.open_split(config.data, location, config.data.train_split)
    val_source = prepare.open_split(config.data, location, config.data.val_split)
    frozen_edges = [e for e in config.freeze if e in graph.edges]
    used = {e for path in config.paths.values() for e in path_edges(path)}
    trainable_edges = [e for e in graph.edges if e in used and e not in frozen_edges
                       and graph.specs[e]["arch"] != "sobel"]  # fmt: skip
    frozen = perceptual.frozen_params(config, graph, frozen_edges, workdir, log)

    mesh = sharding.make_mesh()
    replicated = sharding.replicated(mesh)
    optimizer = optim.make_optimizer(config.optimizer)
    names = perceptual_names(terms)
    state = _initial_state(config, graph, trainable_edges, target_edge, optimizer, names)
    # Every leaf its own buffer (initialisers may share zeros), as donation requires.
    state = jax.device_put(jax.tree.map(np.array, jax.device_get(state)), replicated)
    frozen = jax.device_put(frozen, replicated)

    data = pipeline.make_dataset(
        train_source, list(config.data.domains), config.data.resolution, config.batch_size,
        config.seed, augment=config.data.augment, worker_count=config.data.worker_count,
        on_error=config.data.on_error,
    )  # fmt: skip
    iterator = iter(data)
    checkpoints = ckpt_lib.Checkpoints(
        os.path.join(workdir, "checkpoints"), keep=config.train.keep_checkpoints,
        save_every=config.train.checkpoint_every, best_metric=config.train.best_metric or None,
    )  # fmt: skip
    meta = {"chosen": None, "winrates": {}}
    start = checkpoints.latest_step() or 0
    if start:
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=replicated), state
        )
        state, meta = checkpoints.restore(start, abstract_state=abstract, data_iterator=iterator)
        log(f"resumed from step {start} in {workdir}")

    total = config.train.steps
    epoch_steps = _steps_per_epoch(config, len(train_source))
    state_sharding = jax.tree.map(lambda _: replicated, state)
    compiled: dict[tuple[str, ...], Callable] = {}
    chosen = tuple(meta.get("chosen") or ())
    winrates = dict(meta.get("winrates") or {})
    writer = MetricWriter(os.path.join(workdir, "logs"))
    evaluator = _Evaluator(config, graph, terms)
    progress = Progress(total, every_seconds=config.train.log_every_seconds)
    pending, metrics = None, {}
    log(f"training {target_edge} for {total} steps from step {start}: "
        f"{len(trainable_edges)} trainable, {len(frozen_edges)} frozen networks, "
        f"{len(jax.devices())} device(s), epoch = {epoch_steps} steps")  # fmt: skip
    for step in range(start, total):
        if step % epoch_steps == 0 or (step == start and not meta.get("chosen")):
            if step > start:
                winrates = selection.latest_winrates(
                    winrates, selection.winrate_values(state["winrate"])
                )
                state = dict(state, winrate=jax.device_put(
                    selection.winrate_reset(state["winrate"]), replicated))  # fmt: skip
            rng = np.random.default_rng([config.seed, step])
            chosen = selection.choose_losses(names, config.selection.k, config.selection.mode,
                                             winrates, rng)  # fmt: skip
        if chosen not in compiled:
            fn = make_train_step(graph, config, terms, chosen, optimizer, target_edge)
            compiled[chosen] = jax.jit(fn, donate_argnums=0,
                                       out_shardings=(state_sharding, replicated))  # fmt: skip
        batch = next(iterator)
        batch.pop(pipeline.INDEX_KEY)
        global_batch = sharding.host_batch_to_global(batch, mesh)
        state, new_metrics = compiled[chosen](state, frozen, global_batch)
        if pending is not None:
            host = {k: float(v) for k, v in jax.device_get(pending).items()}
            progress.update(step, host)
            writer.write_scalars(step, host, split="train")
        pending = new_metrics
        done = step + 1
        if done % config.train.eval_every == 0 or done == total:
            metrics = evaluator({**frozen, **state["params"]}, val_source,
                                os.path.join(workdir, "plots"), done, writer, log)  # fmt: skip
        if done % config.train.checkpoint_every == 0 or done == total:
            meta = {"chosen": list(chosen), "winrates": winrates}
            checkpoints.save(done, state, data_iterator=iterator, meta=meta, force=True,
                             metrics=metrics if config.train.best_metric else None)  # fmt: skip
    if pending is not None:
        progress.update(total, {k: float(v) for k, v in jax.device_get(pending).items()})
    checkpoints.wait()
    checkpoints.close()
    if not metrics and start >= total:
        metrics = evaluator({**frozen, **state["params"]}, val_source,
                            os.path.join(workdir, "plots"), total, writer, log)  # fmt: skip
    writer.close()
    export_dir = os.path.join(workdir, "export")
    spec = dict(graph.specs[target_edge])
    src, dst = split_edge(target_edge)
    ckpt_lib.export_model(export_dir, jax.device_get(state["params"][target_edge]),
                          dict(spec, edge=target_edge, src=src, dst=dst,
                               resolution=config.data.resolution))  # fmt: skip
    if hasattr(iterator, "close"):
        iterator.close()
    return dict(metrics, export=export_dir, chosen=list(chosen))
