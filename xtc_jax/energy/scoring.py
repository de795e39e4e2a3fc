"""Energy over data: a split with ground truth, an image folder, or corrupted copies.

Every function yields one row per image: its name, the set it belongs to
("clean", "blur:3", "ood", ...), the standardised energy, the raw energy
(mean of all pairwise path terms, as the original's `energy` column), the
error of n(x) where ground truth exists, and every path term.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np

from xtc_jax.data import corrupt, images, pipeline
from xtc_jax.energy.model import EnergyModel
from xtc_jax.energy.terms import Standardisation
from xtc_jax.infra.writers import Progress
from xtc_jax.training import metrics


def _padded(model: EnergyModel, rgb: np.ndarray, batch_size: int) -> dict:
    """Runs `model` on a batch padded to `batch_size` (one compiled shape), unpadded after."""
    count = len(rgb)
    if count < batch_size:
        rgb = np.concatenate([rgb, np.zeros((batch_size - count, *rgb.shape[1:]), rgb.dtype)])
    out = model(rgb)
    return jax.tree.map(lambda x: x[:count], out)


def _rows(out: dict, names: Sequence[str], group: str, stats: Standardisation | None) -> list:
    terms = {k: np.asarray(v, np.float64) for k, v in out["terms"].items()}
    energy = stats.image_energy(terms) if stats is not None else None
    raw = np.mean(list(terms.values()), axis=0)
    rows = []
    for i, name in enumerate(names):
        row = {"image": name, "set": group}
        if energy is not None:
            row["energy"] = float(energy[i])
        row["raw_energy"] = float(raw[i])
        row.update({k: float(v[i]) for k, v in terms.items()})
        rows.append(row)
    return rows


def _error_fn(domain: str) -> Callable:
    return jax.jit(lambda pred, target: metrics.target_metrics(pred, target, domain))


def score_split(
    model: EnergyModel,
    source,
    batch_size: int,
    stats: Standardisation | None,
    corruptions: Sequence[tuple[str, int]] = (),
    max_images: int = 0,
    with_error: bool = True,
    progress: bool = True,
    pixel_sink: list | None = None,
    group: str = "clean",
) -> list[dict]:
    """Rows for the examples of a data split (and their corrupted copies), with errors.

    `group` names the set of the uncorrupted images ("clean"; "style" for shifted data).
    With `pixel_sink`, the clean images' pixel terms {K: (B, h, w)} are appended
    to it, every 4th pixel in each direction (for the energy maps' colour range).
    """
    domains = ["rgb", model.target] if with_error else ["rgb"]
    count = min(len(source), max_images) if max_images else len(source)
    data = pipeline.make_dataset(source, domains, model.resolution, batch_size, seed=0,
                                 shuffle=False, num_epochs=1, drop_remainder=False,
                                 process_index=0, process_count=1)  # fmt: skip
    errors = _error_fn(model.target) if with_error else None
    bar = Progress(count, every_seconds=5.0, unit="image", enabled=progress)
    rows, seen = [], 0
    for batch in data:
        take = min(len(batch["rgb"]), count - seen)
        if take <= 0:
            break
        indices = np.asarray(batch[pipeline.INDEX_KEY])[:take]
        names = [f"{int(i):06d}" for i in indices]
        variants = [(group, batch["rgb"][:take])]
        for kind, severity in corruptions:
            corrupted = np.stack(
                [
                    corrupt.corrupt(image, kind, severity, seed=int(i))
                    for image, i in zip(batch["rgb"][:take], indices, strict=True)
                ]
            )
            variants.append((f"{kind}:{severity}", corrupted))  # fmt: skip
        for name, rgb in variants:
            out = _padded(model, rgb, batch_size)
            new = _rows(out, names, name, stats)
            if pixel_sink is not None and name == group:
                pixel_sink.append({k: v[:, ::4, ::4] for k, v in out["pixels"].items()})
            if errors is not None:
                target = np.asarray(batch[model.target][:take])
                metrics = jax.device_get(errors(out["direct"], target))
                for i, row in enumerate(new):
                    row.update({f"error_{k}": float(v[i]) for k, v in metrics.items()})
            rows.extend(new)
        seen += take
        bar.update(seen)
    return rows


def _folder_batches(paths, resolution, batch_size, failures) -> Iterator[tuple[list, np.ndarray]]:
    names, arrays = [], []
    for path, image in images.iter_images(
        paths, resolution, on_error=lambda p, e: failures.append((p, e))
    ):
        names.append(os.path.basename(path))
        arrays.append(image)
        if len(arrays) == batch_size:
            yield names, np.stack(arrays)
            names, arrays = [], []
    if arrays:
        yield names, np.stack(arrays)


def score_folder(
    model: EnergyModel,
    folder: str,
    batch_size: int,
    stats: Standardisation | None,
    group: str = "ood",
    max_images: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Rows for the images of a folder (no ground truth); unreadable files are logged, skipped."""
    paths = images.list_images(folder)
    paths = paths[:max_images] if max_images else paths
    failures: list = []
    bar = Progress(len(paths), every_seconds=5.0, unit="image", enabled=progress)
    rows = []
    for names, rgb in _folder_batches(paths, model.resolution, batch_size, failures):
        rows.extend(_rows(_padded(model, rgb, batch_size), names, group, stats))
        bar.update(len(rows) + len(failures))
    for _, error in failures:
        log(f"skipped {error}")
    return rows


def fit_statistics(model: EnergyModel, source, batch_size: int, count: int,
                   info: dict) -> Standardisation:  # fmt: skip
    """Statistics of the first `count` examples of `source`, with the pixel energies' range.

    info["pixel_range"] = the 1st and 99th percentiles of the reference set's
    pixel energies, the default colour scale of energy maps; info["reference_energies"] =
    every reference image's energy, the distribution a new image's energy is shown against.
    """
    sink: list = []
    rows = score_split(model, source, batch_size, stats=None, max_images=count,
                       with_error=False, progress=False, pixel_sink=sink)  # fmt: skip
    terms = {k: np.array([row[k] for row in rows]) for k in rows[0] if k.startswith("percep_")}
    stats = Standardisation.fit(terms, model.middles, info)
    pixels = np.concatenate([np.asarray(stats.pixel_energy(batch)).ravel() for batch in sink])
    low, high = np.percentile(pixels, [1, 99])
    reference = [round(float(e), 4) for e in stats.image_energy(terms)]
    return dataclasses.replace(stats, info=dict(info, pixel_range=[float(low), float(high)],
                                                reference_energies=reference))  # fmt: skip
