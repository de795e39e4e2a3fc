"""`python -m xtc_jax.energy --config=configs/normal.py:cpu --workdir=DIR [options]`.

Scores images by consistency energy with the model a main run trained in
DIR, and writes to --output (default DIR/energy/MODEL):
  data.csv           one row per image: energy (standardised), raw_energy,
                     error_l1 / error_angular_error_deg where ground truth
                     exists, and every path term percep__K / percep_K1_K2
  energy_vs_error.{png,pdf}  scatter with Pearson and Spearman r
  roc.{png,pdf}      with --ood or --corrupt: telling in-distribution images
                     from shifted ones by energy, AUC per shift
  summary.json       the figures above
The standardisation statistics are fitted once on the reference split and
saved next to the model's checkpoints (DIR/consistency/energy_stats.json);
missing rgb->K and K->target networks are trained into DIR/networks first.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "The config the workdir was trained with, e.g. configs/normal.py:cpu."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "The main command's workdir.")
_MODEL = flags.DEFINE_string(
    "model", "consistency",
    "n(x): consistency | baseline (the main run's models) | direct (the plain rgb->target "
    "network of the cache, trained if missing) | an export folder.",
)  # fmt: skip
_DATA = flags.DEFINE_string(
    "data", None, "A split of the config's data (default: data.val_split) or a folder of images."
)
_OOD = flags.DEFINE_string("ood", None, "A folder of shifted images to tell apart by energy.")
_CORRUPT = flags.DEFINE_string(
    "corrupt", None, "Corrupted copies of --data to detect: e.g. blur,noise,jpeg,contrast:3."
)
_OUTPUT = flags.DEFINE_string("output", None, "Output folder (default WORKDIR/energy/MODEL).")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 0, "Score at most this many images (0: all).")
_REFIT = flags.DEFINE_bool("refit", False, "Fit the standardisation statistics again.")


def _log(message: str) -> None:
    print(message, flush=True)


def statistics(config, workdir, energy_model, location):
    """The model's saved statistics, fitted on the reference split first if missing or stale."""
    from xtc_jax.data import prepare
    from xtc_jax.energy import compute, model

    path = model.stats_path(energy_model.exports[f"rgb->{energy_model.target}"])
    stats = None if _REFIT.value else model.checked_stats(path, energy_model)
    if stats is not None:
        _log(f"energy statistics: {path} ({stats.info.get('images')} {stats.info.get('reference')} "
             "images)")  # fmt: skip
        return stats
    energy = config.get("energy") or {}
    split = energy.get("reference_split", config.data.train_split)
    source = prepare.open_split(config.data, location, split)
    count = min(len(source), energy.get("reference_images", 256))
    _log(f"fitting energy statistics on {count} {split} images -> {path}")
    info = dict(energy_model.info(), reference=split, images=count)
    stats = compute.fit_statistics(energy_model, source, config.batch_size, count, info)
    stats.save(path)
    return stats


def run(config, workdir: str) -> dict:
    from xtc_jax import experiment
    from xtc_jax.data import corrupt, prepare
    from xtc_jax.energy import compute, model, report

    corruptions = corrupt.parse(_CORRUPT.value) if _CORRUPT.value else []
    config = experiment.resolve_dirs(config, workdir)
    energy_model = model.load(config, workdir, _MODEL.value, log=_log)
    location = prepare.data_location(config.data, workdir)
    stats = statistics(config, workdir, energy_model, location)
    name = _MODEL.value if _MODEL.value in model.MODELS else "model"
    output = _OUTPUT.value or os.path.join(workdir, "energy", name)
    os.makedirs(output, exist_ok=True)

    data = _DATA.value or config.data.val_split
    batch, limit = config.batch_size, _MAX_IMAGES.value
    if os.path.isdir(data):
        _log(f"scoring the images of {data}")
        rows = compute.score_folder(energy_model, data, batch, stats, "clean", limit, log=_log)
        if corruptions:
            _log("--corrupt applies to a data split (with ground truth); ignored for a folder.")
            corruptions = []
    else:
        source = prepare.open_split(config.data, location, data)
        _log(
            f"scoring the {data} split ({min(len(source), limit or len(source))} images"
            + (f", x{len(corruptions) + 1} with corruptions)" if corruptions else ")")
        )
        rows = compute.score_split(energy_model, source, batch, stats, corruptions, limit)
    if _OOD.value:
        _log(f"scoring the shifted images of {_OOD.value}")
        rows += compute.score_folder(energy_model, _OOD.value, batch, stats, "ood", limit, log=_log)
    report.write_csv(os.path.join(output, "data.csv"), rows)
    summary = summarise(rows, output)
    summary.update(model=energy_model.exports[f"rgb->{energy_model.target}"], data=data,
                   statistics=model.stats_path(energy_model.exports[
                       f"rgb->{energy_model.target}"]))  # fmt: skip
    with open(os.path.join(output, "summary.json.tmp"), "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(os.path.join(output, "summary.json.tmp"), os.path.join(output, "summary.json"))
    _log(f"wrote {output}/data.csv, summary.json and plots")
    return summary


def summarise(rows: list[dict], output: str) -> dict:
    """Correlations on clean images with ground truth, AUC per shift; plots; printed lines."""
    from xtc_jax.energy import report

    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["set"], []).append(row)
    summary: dict = {"images": {k: len(v) for k, v in groups.items()},
                     "mean_energy": {k: float(np.mean([r["energy"] for r in v]))
                                     for k, v in groups.items()}}  # fmt: skip
    clean = groups.get("clean", [])
    error_names = [k for k in (clean[0] if clean else {}) if k.startswith("error_")]
    if error_names:
        energy = np.array([r["energy"] for r in clean])
        for error_name in error_names:
            error = np.array([r[error_name] for r in clean])
            summary[f"correlation_{error_name}"] = report.correlations(energy, error)
        main_error = "error_l1" if "error_l1" in error_names else error_names[0]
        report.scatter_plot(os.path.join(output, "energy_vs_error"), energy,
                            np.array([r[main_error] for r in clean]),
                            f"{main_error} of n(x)")  # fmt: skip
        for error_name in error_names:
            r = summary[f"correlation_{error_name}"]
            _log(f"energy vs {error_name}: Pearson r {r['pearson_r']:.3f}, "
                 f"Spearman r {r['spearman_r']:.3f} ({len(clean)} clean images)")  # fmt: skip
    shifted = {k: np.array([r["energy"] for r in v]) for k, v in groups.items() if k != "clean"}
    if shifted and clean:
        negatives = np.array([r["energy"] for r in clean])
        if len(shifted) > 1:
            shifted["all shifts"] = np.concatenate(list(shifted.values()))
        summary["roc_auc"] = {k: report.roc_auc(negatives, v) for k, v in shifted.items()}
        report.roc_plot(os.path.join(output, "roc"), negatives, shifted)
        for k, auc in summary["roc_auc"].items():
            _log(
                f"shift detection {k}: ROC-AUC {auc:.3f} "
                f"(mean energy {np.mean(shifted[k]):.2f} vs clean {np.mean(negatives):.2f})"
            )
    return summary


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required.")
    from xtc_jax.errors import XtcError
    from xtc_jax.runtime import enable_compilation_cache, quiet_library_logs

    quiet_library_logs()
    enable_compilation_cache()
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except XtcError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
