"""xtask_mt's consistency energy on a split: energy against error, and shift detection.

`python -m xtc_jax.energy --config=configs/mtl_synthetic.py:cpu --workdir=DIR
[--model xtask] [--corrupt noise:5,blur:5]` (the energy command dispatches
multi-task configs here). The energy of an image is xtask_mt's `EnergyLogger`:
0.5·KL(softmax(ŝ) ‖ softmax(s̃)) + 0.5·mean|d̃ − d̂| (`evaluate.consistency_energy`).
Its errors are the segmentation error (100 − pixel accuracy, %) and the depth
absolute error over pixels with ground truth. Written to --output (default
DIR/MODEL/energy): data.csv (one row per image and set), energy_vs_error_seg and
_depth scatters with Pearson and Spearman r, roc (clean test images against each
corruption of them, AUC per corruption) and summary.json.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xtc_jax.data import corrupt as corrupt_lib
from xtc_jax.data import pipeline
from xtc_jax.data.mtl import sources
from xtc_jax.data.mtl.example import MultiTaskTransform
from xtc_jax.energy import report
from xtc_jax.errors import ConfigError
from xtc_jax.infra import atomic
from xtc_jax.infra import workdir as workdir_lib
from xtc_jax.infra.writers import log as log_line
from xtc_jax.mtl import model as model_lib
from xtc_jax.mtl.evaluate import consistency_energy
from xtc_jax.mtl.experiment import variant_config


class CorruptedSource:
    """A multi-task source whose rgb is corrupted (deterministically per index)."""

    def __init__(self, source, kind: str, severity: int):
        self.source, self.kind, self.severity = source, kind, severity

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.source[index])
        record["rgb"] = corrupt_lib.corrupt(np.asarray(record["rgb"], np.float32), self.kind,
                                            self.severity, seed=index)  # fmt: skip
        return record


def make_score_fn(config, model) -> Callable:
    """variables, batch -> per-image energy, seg error (%) and depth abs error."""

    def score(variables, batch):
        x = model_lib.preprocess(batch["rgb"], config.model.imagenet_normalize)
        out = model.apply(variables, x)
        energy, _ = consistency_energy(out)
        labels = batch["seg"]
        labelled = labels >= 0
        correct = jnp.sum((jnp.argmax(out["seg"], -1) == labels) & labelled, axis=(1, 2))
        seg_error = 100 * (1 - correct / jnp.maximum(jnp.sum(labelled, axis=(1, 2)), 1))
        valid = batch["depth"] > 0
        depth_error = jnp.sum(jnp.where(valid, jnp.abs(out["depth"] - batch["depth"]), 0),
                              axis=(1, 2, 3)) / jnp.maximum(jnp.sum(valid, axis=(1, 2, 3)), 1)
        return {"energy": energy, "error_seg_pct": seg_error, "error_depth_abs": depth_error}

    return score


def score_source(config, score_fn, variables, source, max_images: int = 0) -> dict:
    """{name: (N,) per-image values} over `source` (its first max_images, 0: all)."""
    count = min(len(source), max_images) if max_images else len(source)
    data = pipeline.make_dataset(
        sources.Subset(source, list(range(count))), (), 0, min(config.batch_size, count),
        config.seed, shuffle=False, num_epochs=1, drop_remainder=False, process_index=0,
        process_count=1, example_fn=MultiTaskTransform(*config.data.size, config.data.depth_kind),
    )  # fmt: skip
    parts: dict[str, list] = {}
    for batch in data:
        batch.pop(pipeline.INDEX_KEY)
        for k, v in jax.device_get(score_fn(variables, batch)).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


def run(config, workdir: str, model_name: str = "xtask", corruptions: str = "noise:5,blur:5",
        output: str = "", max_images: int = 0, log: Callable[[str], None] = log_line) -> dict:
    """Scores the test split (and its corruptions) with the best checkpoint of `model_name`."""
    variant = variant_config(config, model_name)
    if not variant.model.transfer:
        raise ConfigError(f"--model={model_name}: the energy needs the transfer nets; use a "
                          "model with them (xtask).")  # fmt: skip
    export_dir = workdir_lib.export(os.path.join(workdir, model_name))
    network, variables, _ = model_lib.load_export(export_dir)
    score_fn = jax.jit(make_score_fn(variant, network))
    test = sources.open_splits(variant.data, workdir)["test"]
    sets = {"clean": test}
    for kind, severity in corrupt_lib.parse(corruptions) if corruptions else []:
        sets[f"{kind}:{severity}"] = CorruptedSource(test, kind, severity)
    scores = {}
    for name, source in sets.items():
        log(f"scoring {name}: {min(len(source), max_images or len(source))} test images")
        scores[name] = score_source(variant, score_fn, variables, source, max_images)
    out = output or os.path.join(workdir, model_name, "energy")
    os.makedirs(out, exist_ok=True)
    rows = [dict(set=name, image=i, **{k: float(v[i]) for k, v in values.items()})
            for name, values in scores.items() for i in range(len(values["energy"]))]  # fmt: skip
    report.write_csv(os.path.join(out, "data.csv"), rows)
    everything = {k: np.concatenate([s[k] for s in scores.values()]) for k in scores["clean"]}
    summary = {"model": model_name, "images": len(scores["clean"]["energy"]), "sets": list(sets)}
    for error, label in (("error_seg_pct", "segmentation error (%)"),
                         ("error_depth_abs", "depth absolute error")):  # fmt: skip
        summary[f"{error}_clean"] = report.correlations(scores["clean"]["energy"],
                                                        scores["clean"][error])  # fmt: skip
        summary[f"{error}_all"] = report.correlations(everything["energy"], everything[error])
        report.scatter_plot(os.path.join(out, f"energy_vs_{error.split('_')[1]}"),
                            everything["energy"], everything[error], label, title="all sets: ",
                            energy_label="consistency energy (xtask_mt)")  # fmt: skip
    shifted = {k: v["energy"] for k, v in scores.items() if k != "clean"}
    if shifted:
        summary["auc"] = {k: report.roc_auc(scores["clean"]["energy"], v)
                          for k, v in shifted.items()}  # fmt: skip
        report.roc_plot(os.path.join(out, "roc"), scores["clean"]["energy"], shifted)
    summary["mean_energy"] = {k: float(np.mean(v["energy"])) for k, v in scores.items()}
    atomic.write_json(os.path.join(out, "summary.json"), summary)
    log(f"energy of {model_name} on the test split: "
        + ", ".join(f"{k} {v:.4f}" for k, v in summary["mean_energy"].items()))
    log("Pearson r (clean): seg error {:.3f}, depth error {:.3f}".format(
        summary["error_seg_pct_clean"]["pearson_r"], summary["error_depth_abs_clean"]["pearson_r"]))
    if shifted:
        log("shift AUC: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["auc"].items()))
    log(f"wrote {out}/(data.csv, energy_vs_seg, energy_vs_depth, roc, summary.json)")
    return summary
