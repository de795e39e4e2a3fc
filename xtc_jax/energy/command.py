"""The energy command's work, callable without flags (see `__main__.py` for the outputs)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from xtc_jax.errors import ConfigError
from xtc_jax.infra import atomic
from xtc_jax.infra import workdir as workdir_lib


def statistics(config, energy_model, location, refit: bool = False, log=print):
    """The model's saved statistics, fitted on the reference split first if missing or stale."""
    from xtc_jax.data import prepare
    from xtc_jax.energy import model, scoring

    path = model.stats_path(energy_model.direct_export)
    stats = None if refit else model.checked_stats(path, energy_model)
    if stats is not None:
        log(f"energy statistics: {path} ({stats.info.get('images')} {stats.info.get('reference')} "
             "images)")  # fmt: skip
        return stats
    energy = config.get("energy") or {}
    split = energy.get("reference_split", config.data.train_split)
    source = prepare.open_split(config.data, location, split)
    count = min(len(source), energy.get("reference_images", 256))
    log(f"fitting energy statistics on {count} {split} images -> {path}")
    info = dict(energy_model.info(), reference=split, images=count)
    stats = scoring.fit_statistics(energy_model, source, config.batch_size, count, info)
    stats.save(path)
    return stats


def fit_statistics_for(config, workdir: str, model_name: str = "consistency", models_dir: str = "",
                       log: Callable[[str], None] = print):  # fmt: skip
    """Fits and saves the statistics of the workdir's model (or a published one) unless
    current ones exist, training missing rgb->K and K->target networks first; returns them."""
    from xtc_jax.consistency import experiment
    from xtc_jax.data import prepare
    from xtc_jax.energy import model

    config = experiment.resolve(config, workdir)
    energy_model = model.load(config, workdir, model_name, log=log, models_dir=models_dir)
    return statistics(config, energy_model, prepare.data_location(config.data, workdir), log=log)


def run(
    config,
    workdir: str,
    model_name: str = "consistency",
    data: str = "",
    ood: str = "",
    corruptions: str = "",
    output: str = "",
    max_images: int = 0,
    refit: bool = False,
    log: Callable[[str], None] = print,
    models_dir: str = "",
    style_shift: bool = False,
) -> dict:
    """The energy command: scores --data (and --ood / --corrupt / --style_shift), writes the
    report. style_shift: also the same split of the built-in data in the shifted style."""
    from xtc_jax.consistency import experiment
    from xtc_jax.data import corrupt, prepare
    from xtc_jax.energy import model, report, scoring

    corruptions = corrupt.parse(corruptions) if corruptions else []
    config = experiment.resolve(config, workdir)
    shifted_data = prepare.shifted(config.data) if style_shift else None  # errors first
    energy_model = model.load(config, workdir, model_name, log=log, models_dir=models_dir)
    location = prepare.data_location(config.data, workdir)
    stats = statistics(config, energy_model, location, refit, log)
    name = model_name if model_name in model.MODELS else "model"
    output = output or workdir_lib.energy_dir(workdir, name)
    os.makedirs(output, exist_ok=True)

    data = data or config.data.val_split
    batch, limit = config.batch_size, max_images
    if os.path.isdir(data):
        log(f"scoring the images of {data}")
        rows = scoring.score_folder(energy_model, data, batch, stats, "clean", limit, log=log)
        if corruptions:
            log("--corrupt applies to a data split (with ground truth); ignored for a folder.")
            corruptions = []
    else:
        source = prepare.open_split(config.data, location, data)
        log(
            f"scoring the {data} split ({min(len(source), limit or len(source))} images"
            + (f", x{len(corruptions) + 1} with corruptions)" if corruptions else ")")
        )
        rows = scoring.score_split(energy_model, source, batch, stats, corruptions, limit)
    if shifted_data is not None:
        if os.path.isdir(data):
            raise ConfigError("--style_shift scores a split of the built-in data; give --data "
                              "a split name (e.g. val), not a folder.")  # fmt: skip
        source = prepare.open_split(
            shifted_data, prepare.data_location(shifted_data, workdir), data
        )
        log(f"scoring the {data} split in the shifted style ({len(source)} images)")
        rows += scoring.score_split(energy_model, source, batch, stats, (), limit, group="style")
    if ood:
        log(f"scoring the shifted images of {ood}")
        rows += scoring.score_folder(energy_model, ood, batch, stats, "ood", limit, log=log)
    report.write_csv(os.path.join(output, "data.csv"), rows)
    summary = summarise(rows, output, log)
    summary.update(model=energy_model.direct_export, data=data,
                   statistics=model.stats_path(energy_model.direct_export))  # fmt: skip
    atomic.write_json(os.path.join(output, "summary.json"), summary)
    log(f"wrote {output}/data.csv, summary.json and plots")
    return summary


def summarise(rows: list[dict], output: str, log: Callable[[str], None] = print) -> dict:
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
            log(f"energy vs {error_name}: Pearson r {r['pearson_r']:.3f}, "
                 f"Spearman r {r['spearman_r']:.3f} ({len(clean)} clean images)")  # fmt: skip
    with_truth = [r for r in rows if any(k.startswith("error_") for k in r)]
    if len(with_truth) > len(clean) and error_names:  # corrupted copies widen the error range
        energy = np.array([r["energy"] for r in with_truth])
        for error_name in error_names:
            error = np.array([r[error_name] for r in with_truth])
            r = report.correlations(energy, error)
            summary[f"correlation_{error_name}_all_sets"] = r
            log(
                f"energy vs {error_name}, clean and corrupted: Pearson r {r['pearson_r']:.3f}, "
                f"Spearman r {r['spearman_r']:.3f} ({len(with_truth)} images)"
            )
    shifted = {k: np.array([r["energy"] for r in v]) for k, v in groups.items() if k != "clean"}
    if shifted and clean:
        negatives = np.array([r["energy"] for r in clean])
        if len(shifted) > 1:
            shifted["all shifts"] = np.concatenate(list(shifted.values()))
        summary["roc_auc"] = {k: report.roc_auc(negatives, v) for k, v in shifted.items()}
        report.roc_plot(os.path.join(output, "roc"), negatives, shifted)
        for k, auc in summary["roc_auc"].items():
            log(
                f"shift detection {k}: ROC-AUC {auc:.3f} "
                f"(mean energy {np.mean(shifted[k]):.2f} vs clean {np.mean(negatives):.2f})"
            )
    return summary
