"""Taskonomy's transfer visualisation for the web demo's /taxonomy page.

For a taxonomy run's workdir (`python -m xtc_jax.taxonomy`), given source
tasks and a target: the transfer's prediction on an image (the frozen Stage I
encoders of the sources, concatenated, through a readout into the target),
beside the target's own fully supervised network and, for the built-in
data's examples, the ground truth, with the transfer's affinity from the run's
tables. Stage II keeps only the transfers' losses, so the readout of a source
set is trained here on first request, with the run's transfer settings on
the same transfer images (taskonomy.md §4.1), and saved under
{workdir}/taxonomy/web_readouts/ for every later request and restart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from PIL import Image

from xtc_jax.apps.web import pictures
from xtc_jax.errors import ConfigError


def task_pictures(values: dict[str, np.ndarray], task: str) -> dict[str, bytes]:
    """PNGs of predictions (and ground truth) of one task, on one shared scale."""
    from xtc_jax.apps.demo_mtl import colour_labels

    out = {}
    if task == "segment_semantic":
        for name, v in values.items():
            labels = v[..., 0] if v.shape[-1] == 1 else np.argmax(v, axis=-1)
            out[name] = pictures.png_bytes(Image.fromarray(
                colour_labels(np.maximum(labels, 0).astype(np.int64))))
        return out
    if next(iter(values.values())).shape[-1] == 3:
        return {name: pictures.png_bytes(pictures.rgb_image(v)) for name, v in values.items()}
    joined = np.concatenate([v[..., 0].ravel() for v in values.values()])
    low, high = np.percentile(joined, [1, 99])
    for name, v in values.items():
        scaled = np.clip((v[..., 0] - low) / max(high - low, 1e-6), 0, 1)
        out[name] = pictures.png_bytes(pictures.rgb_image(np.repeat(scaled[..., None], 3, -1)))
    return out


class TaxonomyViewer:
    """A taxonomy run's task networks, affinities and (trained on demand) readouts."""

    def __init__(self, workdir: str, log: Callable[[str], None] = print):
        from xtc_jax.infra import run_config
        from xtc_jax.taxonomy import experiment, stage_transfers

        self.workdir, self.log = workdir, log
        self.config = run_config.load(workdir)
        if self.config is None:
            raise ConfigError(
                f"{workdir} holds no {run_config.CONFIG_FILE}: rerun python -m xtc_jax.taxonomy "
                f"--config=CONFIG --workdir={workdir} once (it reuses everything done and "
                "saves the config the page needs).")  # fmt: skip
        self.tasks = list(self.config.tasks)
        self.resolution = int(self.config.data.resolution)
        self.exports = {t: os.path.join(workdir, experiment.TASKS_DIR, t, "export")
                        for t in self.tasks}  # fmt: skip
        missing = [t for t, p in self.exports.items() if not os.path.isdir(p)]
        if missing:
            raise ConfigError(f"{workdir}: the task networks of {', '.join(missing)} are not "
                              "trained yet: finish python -m xtc_jax.taxonomy first.")
        self.out_dir = experiment.out_dir(workdir)
        path = os.path.join(self.out_dir, "affinities.json")
        self.affinity: dict[str, float] = {}
        if os.path.exists(path):
            with open(path) as f:
                self.affinity = json.load(f)
        self.encoders = stage_transfers.Encoders(self.exports, self.config)
        self._readouts: dict[str, dict] = {}
        self._own: dict[str, Callable] = {}
        self._transfer_split: dict | None = None

    def describe(self) -> dict:
        """What the page offers: tasks, each target's evaluated source sets and affinities."""
        evaluated: dict[str, dict[str, float]] = {t: {} for t in self.tasks}
        for key, value in self.affinity.items():
            *sources, target = key.split("__")
            if target in evaluated and not set(sources) & {target, "self", "scratch"}:
                evaluated[target]["+".join(sources)] = round(float(value), 4)
        return {"tasks": self.tasks, "resolution": self.resolution, "affinities": evaluated,
                "max_order": int(self.config.transfer.max_order)}  # fmt: skip

    def _check(self, sources: Sequence[str], target: str) -> list[str]:
        if target not in self.tasks:
            raise ConfigError(f"target {target!r}: choose one of {', '.join(self.tasks)}.")
        if not sources:
            raise ConfigError("choose at least one source task.")
        unknown = [s for s in sources if s not in self.tasks]
        if unknown:
            raise ConfigError(f"unknown source {', '.join(unknown)}: choose from "
                              f"{', '.join(self.tasks)}.")  # fmt: skip
        if target in sources:
            raise ConfigError(f"{target} cannot be its own source: the page compares a transfer "
                              "with the target's own network, shown beside it.")  # fmt: skip
        return sorted(set(sources), key=self.tasks.index)

    def _transfer_data(self) -> dict:
        if self._transfer_split is None:
            from xtc_jax.taxonomy import experiment, stage_transfers, tasks

            splits = experiment.open_splits(self.config, self.workdir, self.log)
            domains = tasks.domains_needed(self.tasks)
            self._transfer_split = stage_transfers.load_split(
                splits["transfer"], domains, self.resolution, self.config.batch_size)
        return self._transfer_split

    def readout(self, sources: list[str], target: str) -> tuple[dict, bool]:
        """(params, trained now?) of the readout from `sources` into `target`."""
        from xtc_jax.infra import export as export_lib
        from xtc_jax.taxonomy import stage_transfers, tasks, transfers

        key = "__".join([*sources, target])
        if key in self._readouts:
            return self._readouts[key], False
        folder = os.path.join(self.out_dir, "web_readouts", key)
        if os.path.isdir(folder):
            self._readouts[key] = export_lib.load_exported(folder)[0]
            return self._readouts[key], False
        task, tc = tasks.get(target), self.config.transfer
        self.log(f"training the readout {' + '.join(sources)} -> {target} ({tc.steps} steps on "
                 "the run's transfer images; once)")  # fmt: skip
        data = self._transfer_data()
        images = stage_transfers.task_inputs(task, data["rgb"], self.config.seed)
        kind = "noisy" if target == "denoise" else "image"
        reps = {s: self.encoders.representation(s, "transfer", kind, images) for s in sources}
        labels = {d: data[d] for d in tasks.domains_needed([target])}
        stacked = transfers.train_transfers(
            task, self._readout_module(target), transfers.stacked_inputs(reps, [sources]),
            labels, tc.steps, tc.batch_size, tc.learning_rate, self.config.seed * 1000 + 7,
            self.log, tc.batching)  # fmt: skip
        params = jax.device_get(jax.tree.map(lambda leaf: leaf[0], stacked))
        export_lib.export_model(folder, params, {"sources": sources, "target": target,
                                                 "kind": "taxonomy_readout"})  # fmt: skip
        self._readouts[key] = params
        return params, True

    def _readout_module(self, target: str):
        from xtc_jax.models.taskonomy_net import TransferReadout
        from xtc_jax.taxonomy import tasks

        m = self.config.model
        return TransferReadout(tasks.get(target).channels, m.rep_channels, m.readout_width)

    def _own_network(self, target: str) -> Callable:
        if target not in self._own:
            from xtc_jax.models.taskonomy_net import ScratchNetwork
            from xtc_jax.taxonomy import tasks

            m = self.config.model
            network = ScratchNetwork(tasks.get(target).channels, m.width, m.rep_channels)
            self._own[target] = jax.jit(lambda p, x: network.apply({"params": p}, x))
        return self._own[target]

    def predict(self, sources: Sequence[str], target: str, rgb: np.ndarray,
                truth: dict | None = None) -> dict:  # fmt: skip
        """The page's pictures for one (R, R, 3) image and the transfer's figures."""
        from xtc_jax.taxonomy import stage_transfers, tasks, transfers

        sources = self._check(sources, target)
        start = time.perf_counter()
        params, trained = self.readout(sources, target)
        task = tasks.get(target)
        x = stage_transfers.task_inputs(task, rgb[None], self.config.seed)
        reps = transfers.stacked_inputs(
            {s: transfers.representations(self.encoders.encode,
                                          self.encoders.params(s)["encoder"], x)
             for s in sources}, [sources])[0]  # fmt: skip
        readout = self._readout_module(target)
        values = {"transfer": np.asarray(readout.apply({"params": params}, reps))[0],
                  "own": np.asarray(self._own_network(target)(self.encoders.params(target),
                                                              x))[0]}  # fmt: skip
        domain = task.target_domain
        if truth is not None and domain in truth:
            values["truth"] = truth[domain] if target != "denoise" else rgb
        pngs = {"input": pictures.png_bytes(pictures.rgb_image(x[0])),
                **task_pictures(values, target)}  # fmt: skip
        key = "__".join([*sources, target])
        affinity = self.affinity.get(key)
        return {"pngs": pngs, "sources": sources, "target": target,
                "affinity": None if affinity is None else float(affinity),
                "trained_now": trained, "seconds": round(time.perf_counter() - start, 2)}
