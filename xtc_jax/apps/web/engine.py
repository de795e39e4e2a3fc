"""The web demo's models and its one queue: loaded once, called one job at a time.

A request never runs a model itself: it hands a job to `Engine.run`, which
waits its turn on one lock (so several uploads at once are queued, not run
over each other, and the CPU or accelerator is never oversubscribed) and
refuses with `Busy` when more than `max_waiting` jobs are already waiting.
Each task's `Predictor` is loaded on first use and kept; every input is
resized to the models' resolution, so the jitted step compiles once per task.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable

import numpy as np

from xtc_jax.apps import predictor as predictor_lib
from xtc_jax.apps.web import pictures
from xtc_jax.errors import ConfigError

#: The multi-task model's task name (a configs/mtl_*.py run's xtask export).
MULTITASK = "mtl"


class Busy(RuntimeError):
    """More jobs are waiting than the queue holds."""


def available_tasks(workdir: str | None, models_dir: str | None) -> list[str]:
    """The tasks whose baseline and consistency models are there, in TASKS order."""
    from xtc_jax.infra import export

    if workdir:
        tasks = []
        path = os.path.join(workdir, "consistency", "export", export.MODEL_JSON)
        if os.path.isfile(path):  # its model.json says what it predicts; no weights are read
            with open(path) as f:
                dst = json.load(f).get("dst")
            tasks = [t for t, d in predictor_lib.TASKS.items() if d == dst]
        if os.path.isfile(os.path.join(workdir, "xtask", "export", export.MODEL_JSON)):
            tasks.append(MULTITASK)
        return tasks
    from xtc_jax.convert.published import PublishedModels

    published = PublishedModels(models_dir or predictor_lib.DEFAULT_MODELS_DIR)
    tasks = []
    for task, domain in predictor_lib.TASKS.items():
        try:
            published.rgb_model(domain, "baseline"), published.rgb_model(domain, "consistency")
        except ConfigError:
            continue
        tasks.append(task)
    return tasks


class Engine:
    """The models of a workdir or a models folder, and the queue in front of them."""

    def __init__(self, workdir: str | None = None, models_dir: str | None = None, config=None,
                 max_waiting: int = 8, log: Callable[[str], None] = print,
                 required: bool = True):  # fmt: skip
        self.workdir, self.models_dir, self.config = workdir, models_dir, config
        self.log = log
        if workdir and not os.path.isdir(workdir):
            raise ConfigError(f"--workdir {workdir} does not exist: give the main command's "
                              "workdir (python -m xtc_jax.main --config=... --workdir=DIR).")
        self.tasks = available_tasks(workdir, models_dir) if workdir or models_dir or required \
            else []
        if not self.tasks and required:
            where = f"--workdir {workdir}" if workdir else f"--models_dir {models_dir}"
            raise ConfigError(
                f"{where} holds no rgb->normal/depth/reshading baseline and consistency models "
                "and no multi-task model: train them with python -m xtc_jax.main "
                "--config=configs/normal.py:cpu --workdir=DIR (or configs/mtl_synthetic.py:cpu), "
                "or convert the published ones with python -m xtc_jax.convert.")
        self._predictors: dict = {}
        self._lock = threading.Lock()
        self._waiting = 0
        self._count = threading.Lock()
        self.max_waiting = max_waiting

    def run(self, job: Callable[[], dict]) -> dict:
        """Runs `job` when no other job runs; Busy when the queue is full."""
        with self._count:
            if self._waiting >= self.max_waiting:
                raise Busy(f"{self._waiting} images are already waiting; try again in a moment.")
            self._waiting += 1
        try:
            with self._lock:
                return job()
        finally:
            with self._count:
                self._waiting -= 1

    def predictor(self, task: str):
        """The task's models (a Predictor, or the multi-task model's), loaded (and energy
        statistics fitted) on first use."""
        if task not in self.tasks:
            raise ConfigError(f"task {task!r} is not available here; choose one of "
                              f"{', '.join(self.tasks)}.")  # fmt: skip
        if task not in self._predictors:
            if task == MULTITASK:
                from xtc_jax.apps.demo_mtl import MultitaskPredictor

                self._predictors[task] = MultitaskPredictor.from_workdir(self.workdir)
            else:
                self._predictors[task] = predictor_lib.Predictor.load(
                    task, self.workdir, self.models_dir, config=self.config, log=self.log)
        return self._predictors[task]

    def resolution(self, task: str) -> int | tuple[int, int]:
        """The input size of the task's models: a side, or (height, width) for mtl."""
        model = self.predictor(task)
        return model.size if task == MULTITASK else model.resolution

    def predict(self, task: str, rgb: np.ndarray, truth: dict | None = None) -> dict:
        """Every picture of the page for one image, as PNG bytes, in the order shown
        ("cards": [(key, title)]), and the figures; truth: an example's ground truth
        {domain: array}, shown beside the predictions."""
        if task == MULTITASK:
            return self._predict_multitask(rgb)
        model = self.predictor(task)
        out = model(rgb[None])
        domain = model.domain
        truth = (truth or {}).get(domain)
        pngs = {"input": pictures.png_bytes(pictures.rgb_image(rgb)),
                "baseline": pictures.prediction_png(out.baseline[0], domain),
                "consistency": pictures.prediction_png(out.consistency[0], domain)}  # fmt: skip
        cards = [("input", "input"), ("baseline", "baseline"), ("consistency", "consistency")]
        if truth is not None:
            pngs["truth"] = pictures.prediction_png(truth, domain)
            cards.append(("truth", "ground truth"))
        result: dict = {"task": task, "domain": domain, "resolution": model.resolution,
                        "pngs": pngs, "paths": {}, "energy": None}  # fmt: skip
        if out.energy is not None:
            low, high = model.energy_range
            value = float(out.image_energy[0])
            percentile = model.energy_percentile(value)
            pngs["energy"] = pictures.energy_png(out.energy[0], low, high)
            pngs["reference"] = pictures.reference_png(model.reference_energies, value,
                                                       percentile)  # fmt: skip
            cards += [("energy", f"energy (image {value:.2f})"),
                      ("reference", "energy against the reference images")]  # fmt: skip
            result["energy"] = {"image": value, "percentile": percentile, "low": low,
                                "high": high}  # fmt: skip
            result["paths"] = {k: pictures.prediction_png(v[0], domain)
                               for k, v in out.paths.items()}  # fmt: skip
        result["cards"] = cards
        return result

    def _predict_multitask(self, rgb: np.ndarray) -> dict:
        from xtc_jax.apps.demo_mtl import colour_labels

        model = self.predictor(MULTITASK)
        out = model(rgb[None])
        pngs = {"input": pictures.png_bytes(pictures.rgb_image(rgb)),
                "segmentation": pictures.png_bytes(pictures.Image.fromarray(
                    colour_labels(out["seg"][0]))),
                "depth": pictures.map_png(out["depth"][0], "viridis")}  # fmt: skip
        cards = [("input", "input"), ("segmentation", "segmentation"),
                 ("depth", model.depth_label)]  # fmt: skip
        energy = None
        if "energy" in out:
            pngs["energy"] = pictures.map_png(out["energy"][0], pictures.ENERGY_CMAP)
            value = float(np.mean(out["energy"][0]))
            cards.append(("energy", f"energy (image mean {value:.3f})"))
            energy = {"image": value, "percentile": None}
        return {"task": MULTITASK, "domain": "segment_semantic+depth", "resolution": model.size,
                "pngs": pngs, "paths": {}, "energy": energy, "cards": cards}
