"""Stage II for every target: first-order transfers, beam-searched higher orders, the scratch
and task-network references, all scored per image on the test split.

For a target t (taskonomy.md §4.1-4.3):
  1. every other task's frozen encoder feeds one readout (first order), all trained at once
     on the transfer split (`transfers.train_transfers`);
  2. order k+1 extends the `beam` best source sets of order k by one of the `beam` best
     first-order sources ("best": AHP among that order's candidates on the test split, as the
     paper ranked them), up to `max_order`;
  3. a network trained from scratch on the same transfer images (the reference of gain) and
     t's own task-specific network (the reference of quality) are scored on the same images.
The encoders see t's input: the image, or its noisy copy when t is denoising (one fixed
noise draw per split). Each target's result is saved as {out}/transfers/{t}.npz, so a
rerun skips finished targets.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from xtc_jax.data import pipeline
from xtc_jax.infra import atomic
from xtc_jax.infra import export as export_lib
from xtc_jax.models.taskonomy_net import ScratchNetwork, TaskEncoder, TransferReadout
from xtc_jax.taxonomy import tasks as tasks_lib
from xtc_jax.taxonomy import tournament, transfers

SELF = "self"
SCRATCH = "scratch"


def load_split(source, domains: Sequence[str], resolution: int, batch_size: int = 16) -> dict:
    """Every example of `source` in order, as {domain: (N, H, W, C)} arrays."""
    data = pipeline.make_dataset(source, domains, resolution, min(batch_size, len(source)), 0,
                                 shuffle=False, num_epochs=1, drop_remainder=False,
                                 process_index=0, process_count=1)  # fmt: skip
    parts: dict[str, list] = {}
    for batch in data:
        batch.pop(pipeline.INDEX_KEY, None)
        for k, v in batch.items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


def task_inputs(task: tasks_lib.Task, rgb: np.ndarray, seed: int) -> np.ndarray:
    """What t's networks see: the images, or one fixed noisy copy of them for denoising."""
    return np.asarray(task.inputs(rgb, jax.random.key(seed)))


class Encoders:
    """The frozen Stage I networks: representations (cached per split and input) and each
    task network's own per-image losses."""

    def __init__(self, exports: dict[str, str], config):
        self.exports = exports
        self.config = config
        self.encoder = TaskEncoder(config.model.width, config.model.rep_channels)
        self.encode = jax.jit(lambda p, x: self.encoder.apply({"params": p}, x))
        self._params: dict[str, dict] = {}
        self._reps: dict[tuple, np.ndarray] = {}

    def params(self, task: str) -> dict:
        if task not in self._params:
            self._params[task] = export_lib.load_exported(self.exports[task])[0]
        return self._params[task]

    def representation(self, source: str, split: str, kind: str, images: np.ndarray):
        key = (source, split, kind)
        if key not in self._reps:
            self._reps[key] = transfers.representations(self.encode,
                                                        self.params(source)["encoder"], images)
        return self._reps[key]

    def own_losses(self, task: tasks_lib.Task, images: np.ndarray, targets: dict) -> np.ndarray:
        """(N,) per-image losses of task's own fully supervised network: its {"encoder",
        "decoder"} params are those of a `ScratchNetwork`, scored as a stack of one."""
        m = self.config.model
        network = ScratchNetwork(task.channels, m.width, m.rep_channels)
        stacked = jax.tree.map(lambda leaf: leaf[None], self.params(task.name))
        return transfers.per_image_losses(task, network, stacked, images[None], targets,
                                          batching=self.config.transfer.batching)[0]


def extend_beam(ranked: Sequence[tuple[str, ...]], first_order: Sequence[str], beam: int,
                order_of: Sequence[str]) -> list[tuple[str, ...]]:  # fmt: skip
    """Source sets of one order more: each of the `beam` best sets `ranked`, plus one of the
    `beam` best first-order sources it lacks; deduplicated, sources in `order_of`'s order."""
    out: list[tuple[str, ...]] = []
    for sources in ranked[:beam]:
        for extra in first_order[:beam]:
            if extra in sources:
                continue
            candidate = tuple(sorted((*sources, extra), key=list(order_of).index))
            if candidate not in out:
                out.append(candidate)
    return out


def rank(candidates: Sequence[tuple[str, ...]], losses: np.ndarray) -> list[tuple[str, ...]]:
    """Candidates best first by their AHP weight among themselves (ties by name)."""
    if len(candidates) == 1:
        return list(candidates)
    weights = tournament.ahp_weights(tournament.winrate_matrix(losses))
    order = sorted(range(len(candidates)), key=lambda i: (-weights[i], candidates[i]))
    return [candidates[i] for i in order]


def transfer_target(target: str, sources: Sequence[str], encoders: Encoders, data: dict,
                    config, log: Callable[[str], None]) -> dict:  # fmt: skip
    """Every transfer into `target`, its references and their per-image test losses.

    data: {"transfer": arrays, "test": arrays} of `load_split`. Returns {"names": candidate
    keys without the target, "orders", "losses": (G, N), "self": (N,), "scratch": (N,)}.
    """
    task = tasks_lib.get(target)
    tc, m = config.transfer, config.model
    kind = "noisy" if target == "denoise" else "image"
    images = {split: task_inputs(task, data[split]["rgb"], config.seed + i)
              for i, split in enumerate(("transfer", "test"))}  # fmt: skip
    labels = {split: {d: data[split][d] for d in tasks_lib.domains_needed([target])}
              for split in images}  # fmt: skip

    def reps(split: str) -> dict[str, np.ndarray]:
        return {s: encoders.representation(s, split, kind, images[split]) for s in sources}

    readout = TransferReadout(task.channels, m.rep_channels, m.readout_width)

    def train_and_score(candidates, seed: int) -> np.ndarray:
        params = transfers.train_transfers(
            task, readout, transfers.stacked_inputs(reps("transfer"), candidates),
            labels["transfer"], tc.steps, tc.batch_size, tc.learning_rate, seed, log, tc.batching)
        return transfers.per_image_losses(task, readout, params,
                                          transfers.stacked_inputs(reps("test"), candidates),
                                          labels["test"], batching=tc.batching)  # fmt: skip

    names, orders, losses = [], [], []
    first = [(s,) for s in sources]
    candidates, order = first, 1
    ranked_first: list[str] = []
    while candidates:
        log(f"  order {order}: {len(candidates)} readouts into {target}")
        scores = train_and_score(candidates, config.seed * 1000 + order)
        names += ["__".join(c) for c in candidates]
        orders += [order] * len(candidates)
        losses.append(scores)
        ranked = rank(candidates, scores)
        if order == 1:
            ranked_first = [c[0] for c in ranked]
        order += 1
        candidates = (extend_beam(ranked, ranked_first, tc.beam, config.tasks)
                      if order <= min(tc.max_order, len(sources)) else [])  # fmt: skip
    log(f"  from scratch: a {target} network on the {len(images['transfer'])} transfer images")
    scratch_net = ScratchNetwork(task.channels, m.width, m.rep_channels)
    scratch_params = transfers.train_transfers(
        task, scratch_net, images["transfer"][None], labels["transfer"], tc.steps,
        tc.batch_size, tc.learning_rate, config.seed * 1000 + 99, log, tc.batching)
    scratch = transfers.per_image_losses(task, scratch_net, scratch_params, images["test"][None],
                                         labels["test"], batching=tc.batching)[0]  # fmt: skip
    own = encoders.own_losses(task, images["test"], labels["test"])
    return {"names": np.array(names), "orders": np.array(orders),
            "losses": np.concatenate(losses), "self": own, "scratch": scratch}  # fmt: skip


def save(path: str, result: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **result)
    atomic.write_bytes(path, buffer.getvalue())


def load(path: str) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def run(config, exports: dict[str, str], splits: dict, out_dir: str,
        log: Callable[[str], None]) -> dict[str, dict]:  # fmt: skip
    """Stage II for every target of config.tasks; reuses the targets already saved."""
    folder = os.path.join(out_dir, "transfers")
    os.makedirs(folder, exist_ok=True)
    domains = tasks_lib.domains_needed(config.tasks)
    data = None
    encoders = Encoders(exports, config)
    results = {}
    for i, target in enumerate(config.tasks):
        path = os.path.join(folder, f"{target}.npz")
        if os.path.exists(path):
            results[target] = load(path)
            log(f"transfers [{i + 1}/{len(config.tasks)}] into {target}: done before, reused")
            continue
        if data is None:
            data = {name: load_split(splits[name], domains, config.data.resolution)
                    for name in ("transfer", "test")}  # fmt: skip
        start = time.time()
        log(f"transfers [{i + 1}/{len(config.tasks)}] into {target}")
        sources = [s for s in config.tasks if s != target]
        results[target] = transfer_target(target, sources, encoders, data, config, log)
        save(path, results[target])
        log(f"transfers into {target}: {len(results[target]['names'])} readouts in "
            f"{time.time() - start:.0f} s")  # fmt: skip
    return results
