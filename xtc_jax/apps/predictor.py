"""What every viewer runs on an image: baseline, consistency model, energy and path predictions.

The demo, the web demo (`apps/web/`) and the video tool (`apps/video.py`) all
show the same things for an rgb image: the baseline's and the consistency
model's predictions of a target (normal, depth, reshading), the per-pixel
consistency energy with the image's energy against the reference set's, and
the path predictions rgb -> K -> target that the energy compares. A
`Predictor` loads the models once (from a main run's workdir, or the
published models converted into a models folder) and runs them as one
jitted program per batch shape; `Predictor.load` fits the energy statistics
on first use when they are missing (`energy/first_use.py`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from xtc_jax.energy.terms import DIRECT, term_name
from xtc_jax.errors import ConfigError

#: The tasks the viewers offer: --task name -> the target domain.
TASKS = {"normal": "normal", "depth": "depth_zbuffer", "reshading": "reshading"}
DEFAULT_MODELS_DIR = "models"


@dataclasses.dataclass
class Prediction:
    """The outputs for a batch of B images at the models' resolution (NumPy, float32)."""

    baseline: np.ndarray  # (B, H, W, C) in [0, 1] (clamped as the original demo saves them)
    consistency: np.ndarray  # (B, H, W, C)
    energy: np.ndarray | None  # (B, H, W) standardised energy map; None without statistics
    image_energy: np.ndarray | None  # (B,) standardised image energy
    paths: dict[str, np.ndarray]  # {K: (B, H, W, C)}: the target seen through middle domain K
    #: (B,) the baseline's image energy: its disagreement with the same paths, on the same
    #: statistics (those of the consistency model), so the two are on one scale.
    baseline_energy: np.ndarray | None = None


def resolve_exports(domain: str, workdir: str | None, baseline: str | None,
                    consistency: str | None,
                    models_dir: str | None) -> tuple[str, str]:  # fmt: skip
    """(baseline, consistency) export folders: explicit ones, a workdir's, or published ones."""
    from xtc_jax.convert.published import PublishedModels
    from xtc_jax.infra import workdir as workdir_lib

    if workdir:
        baseline = baseline or workdir_lib.export(workdir_lib.stage(workdir, workdir_lib.BASELINE))
        consistency = consistency or workdir_lib.export(
            workdir_lib.stage(workdir, workdir_lib.CONSISTENCY)
        )
    if not baseline or not consistency:  # the original's ./models, converted
        published = PublishedModels(models_dir or DEFAULT_MODELS_DIR)
        baseline = baseline or published.rgb_model(domain, "baseline")
        consistency = consistency or published.rgb_model(domain, "consistency")
    return baseline, consistency


class Predictor:
    """The models of one task, loaded once; `predictor(rgb)` runs them on a batch."""

    def __init__(self, task: str, baseline, consistency, energy_model=None, stats=None):
        self.task, self.domain = task, TASKS[task]
        self.baseline, self.consistency = baseline, consistency
        self.energy_model, self.stats = energy_model, stats
        self.resolution = consistency.resolution
        self._energy = None
        if energy_model is not None:
            import jax

            self._energy = jax.jit(self._energy_outputs)

    def _energy_outputs(self, params, rgb):
        out = self.energy_model.outputs(params, rgb)
        return {"direct": out["direct"], "energy": self.stats.pixel_energy(out["pixels"]),
                "terms": out["terms"], "paths": out["paths"]}  # fmt: skip

    @property
    def energy_range(self) -> tuple[float, float]:
        """The colour scale of energy maps: the reference set's 1st and 99th percentiles."""
        info = self.stats.info if self.stats is not None else {}
        low, high = info.get("pixel_range", (-10.0, 30.0))
        return float(low), float(high)

    @property
    def reference_energies(self) -> np.ndarray:
        """Every reference image's energy (empty for statistics fitted before they were kept)."""
        info = self.stats.info if self.stats is not None else {}
        return np.asarray(info.get("reference_energies", ()), np.float64)

    @property
    def middles(self) -> tuple[str, ...]:
        return tuple(self.energy_model.middles) if self.energy_model is not None else ()

    def __call__(self, rgb: np.ndarray) -> Prediction:
        """Runs every model on rgb (B, H, W, 3) in [0, 1] at `self.resolution`."""
        rgb = np.asarray(rgb, np.float32)
        if rgb.ndim != 4 or rgb.shape[1:] != (self.resolution, self.resolution, 3):
            raise ConfigError(f"the models take (B, {self.resolution}, {self.resolution}, 3) rgb, "
                              f"got {rgb.shape}.")  # fmt: skip
        baseline_rgb = rgb if self.baseline.resolution == self.resolution else _resize(
            rgb, self.baseline.resolution)  # fmt: skip
        baseline_raw = _resize(self.baseline(baseline_rgb), self.resolution)
        baseline = _clamp(baseline_raw)
        energy = image_energy = baseline_energy = None
        paths: dict[str, np.ndarray] = {}
        if self._energy is None:
            consistency = _clamp(self.consistency(rgb))
        else:  # n(x) of the energy is the consistency model: run once
            import jax

            out = jax.device_get(self._energy(self.energy_model.params, rgb))
            consistency = _clamp(out["direct"])
            energy = np.asarray(out["energy"], np.float32)
            terms = {k: np.asarray(v, np.float64) for k, v in out["terms"].items()}
            image_energy = self.stats.image_energy(terms).astype(np.float32)
            paths = {k: np.asarray(v, np.float32) for k, v in out["paths"].items()}
            baseline_terms = {
                term_name(DIRECT, k): np.mean(np.abs(v - baseline_raw), axis=(1, 2, 3))
                for k, v in paths.items()
            }
            baseline_energy = self.stats.image_energy(baseline_terms).astype(np.float32)
        return Prediction(baseline, consistency, energy, image_energy, paths, baseline_energy)

    def energy_percentile(self, value: float) -> float | None:
        """The share (0-100) of reference images with lower energy than `value`."""
        reference = self.reference_energies
        if not len(reference):
            return None
        return float(100.0 * np.mean(reference < value))

    @classmethod
    def load(cls, task: str, workdir: str | None = None, models_dir: str | None = None,
             baseline: str | None = None, consistency: str | None = None,
             energy_stats: str | None = None, fit_missing: bool = True, config=None,
             log: Callable[[str], None] = print) -> Predictor:  # fmt: skip
        """The task's models; energy statistics fitted first when missing (`fit_missing`)."""
        from xtc_jax.energy import first_use
        from xtc_jax.energy.model import EnergyModel, stats_path
        from xtc_jax.energy.terms import Standardisation
        from xtc_jax.infra import export

        if task not in TASKS:
            raise ConfigError(f"--task={task!r}: use one of {', '.join(TASKS)}.")
        domain = TASKS[task]
        baseline, consistency = resolve_exports(domain, workdir, baseline, consistency,
                                                models_dir)  # fmt: skip
        nets = {"baseline": export.load_network(baseline),
                "consistency": export.load_network(consistency)}  # fmt: skip
        for name, net in nets.items():
            if net.dst != domain or net.src != "rgb":
                raise ConfigError(f"--{name} {net.path} predicts {net.src}->{net.dst}, but --task "
                                  f"{task} needs rgb->{domain}.")  # fmt: skip
        given, energy_stats = energy_stats, energy_stats or stats_path(consistency)
        if not os.path.exists(energy_stats) and fit_missing and not given:
            energy_stats = first_use.fit(
                domain, consistency, energy_stats, workdir=workdir,
                models_dir=None if workdir else (models_dir or DEFAULT_MODELS_DIR),
                config=config, log=log,
            )
        elif not os.path.exists(energy_stats):
            log(f"no energy statistics at {energy_stats}: energy maps skipped (fit them once with "
                "python -m xtc_jax.energy --config=CONFIG --workdir=WORKDIR).")
        energy_model = stats = None
        if energy_stats and os.path.exists(energy_stats):
            stats = Standardisation.load(energy_stats)
            energy_model = EnergyModel.from_stats(stats, model=os.path.abspath(consistency))
        return cls(task, nets["baseline"], nets["consistency"], energy_model, stats)


def _clamp(values) -> np.ndarray:
    return np.clip(np.asarray(values, np.float32), 0.0, 1.0)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (B, H, W, C) to (B, size, size, C); a no-op at that size."""
    images = np.asarray(images, np.float32)
    if images.shape[1] == size and images.shape[2] == size:
        return images
    import jax

    return np.asarray(jax.image.resize(images, (len(images), size, size, images.shape[-1]),
                                       "bilinear"))  # fmt: skip
