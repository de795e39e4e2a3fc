"""The web demo's models and its one queue: loaded once, called one job at a time.

A request never runs a model itself: it hands a job to `Engine.run`, which
waits its turn on one lock (so several uploads at once are queued, not run
over each other, and the CPU or accelerator is never oversubscribed) and
refuses with `Busy` when more than `max_waiting` jobs are already waiting.
Each task's `Predictor` is loaded on first use and kept; every input is
resized to the models' resolution, so the jitted step compiles once per task.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

from xtc_jax.apps import predictor as predictor_lib
from xtc_jax.apps.web import pictures
from xtc_jax.errors import ConfigError


class Busy(RuntimeError):
    """More jobs are waiting than the queue holds."""


def available_tasks(workdir: str | None, models_dir: str | None) -> list[str]:
    """The tasks whose baseline and consistency models are there, in TASKS order."""
    from xtc_jax.infra import export

    if workdir:
        path = os.path.join(workdir, "consistency", "export", export.MODEL_JSON)
        if not os.path.isfile(path):
            return []
        dst = export.load_network(os.path.dirname(path)).dst
        return [t for t, d in predictor_lib.TASKS.items() if d == dst]
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
        self.tasks = available_tasks(workdir, models_dir) if workdir or models_dir or required \
            else []
        if not self.tasks and required:
            where = f"--workdir {workdir}" if workdir else f"--models_dir {models_dir}"
            raise ConfigError(
                f"{where} holds no rgb->normal/depth/reshading baseline and consistency models: "
                "train them with python -m xtc_jax.main --config=configs/normal.py:cpu "
                "--workdir=DIR, or convert the published ones with python -m xtc_jax.convert.")
        self._predictors: dict[str, predictor_lib.Predictor] = {}
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

    def predictor(self, task: str) -> predictor_lib.Predictor:
        """The task's models, loaded (and energy statistics fitted) on first use."""
        if task not in self.tasks:
            raise ConfigError(f"task {task!r} is not available here; choose one of "
                              f"{', '.join(self.tasks)}.")  # fmt: skip
        if task not in self._predictors:
            self._predictors[task] = predictor_lib.Predictor.load(
                task, self.workdir, self.models_dir, config=self.config, log=self.log)
        return self._predictors[task]

    def resolution(self, task: str) -> int:
        return self.predictor(task).resolution

    def predict(self, task: str, rgb: np.ndarray, truth: dict | None = None) -> dict:
        """Every picture of the page for one image (R, R, 3), as PNG bytes, and the figures;
        truth: an example's ground truth {domain: array}, shown beside the predictions."""
        model = self.predictor(task)
        out = model(rgb[None])
        domain = model.domain
        truth = (truth or {}).get(domain)
        pngs = {"input": pictures.png_bytes(pictures.rgb_image(rgb)),
                "baseline": pictures.prediction_png(out.baseline[0], domain),
                "consistency": pictures.prediction_png(out.consistency[0], domain)}  # fmt: skip
        if truth is not None:
            pngs["truth"] = pictures.prediction_png(truth, domain)
        result: dict = {"task": task, "domain": domain, "resolution": model.resolution,
                        "pngs": pngs, "paths": {}, "energy": None}  # fmt: skip
        if out.energy is not None:
            low, high = model.energy_range
            value = float(out.image_energy[0])
            percentile = model.energy_percentile(value)
            pngs["energy"] = pictures.energy_png(out.energy[0], low, high)
            pngs["reference"] = pictures.reference_png(model.reference_energies, value,
                                                       percentile)  # fmt: skip
            result["energy"] = {"image": value, "percentile": percentile, "low": low,
                                "high": high}  # fmt: skip
            result["paths"] = {k: pictures.prediction_png(v[0], domain)
                               for k, v in out.paths.items()}  # fmt: skip
        return result
