"""The study's table and figures, from each run's study_eval.json (`study.py`).

Writes into the study folder:
  results.json          every (row, seed) figure and the per-row mean and std
  results.md            the table: held-out and shifted mean angular error of both
                        models, the paired difference per seed, energy-error r,
                        shift-detection AUC
  curves.{png,pdf}      val error against step, baseline and consistency, per row
  differences.{png,pdf} consistency minus baseline per row and seed (held-out, shifted)
  energy_vs_error.{png,pdf} energy against error of every image the default row's first
                        seed scored (clean, blur:5, noise:5, style), by set
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from xtc_jax.energy import report
from xtc_jax.infra import atomic


def run_dir(out: str, row: str, seed: int) -> str:
    """The run folder of `row` with `seed` under the study's `out`."""
    return os.path.join(out, f"seed{seed}", row)

ANGLE = "angle_mean_deg"
#: Columns of the table: (key in the per-seed record, header, format).
COLUMNS = (
    ("baseline", "baseline °", "{:.2f}"),
    ("consistency", "consistency °", "{:.2f}"),
    ("delta", "Δ °", "{:+.2f}"),
    ("baseline_shifted", "baseline shifted °", "{:.2f}"),
    ("consistency_shifted", "consistency shifted °", "{:.2f}"),
    ("delta_shifted", "Δ shifted °", "{:+.2f}"),
    ("r_clean", "r clean", "{:.2f}"),
    ("r_all", "r all", "{:.2f}"),
    ("auc_style", "AUC style", "{:.2f}"),
    ("auc_noise", "AUC noise:5", "{:.2f}"),
    ("auc_blur", "AUC blur:5", "{:.2f}"),
)


def seed_figures(result: dict) -> dict[str, float]:
    """The table's figures of one (row, seed) evaluation."""
    b, c = (result[f"{m}/held_out"][ANGLE] for m in ("baseline", "consistency"))
    bs, cs = (result[f"{m}/shifted"][ANGLE] for m in ("baseline", "consistency"))
    auc = result["energy"]["auc"]
    return {
        "baseline": b, "consistency": c, "delta": c - b,
        "baseline_shifted": bs, "consistency_shifted": cs, "delta_shifted": cs - bs,
        "r_clean": result["energy"]["r_clean"], "r_all": result["energy"]["r_all"],
        "auc_style": auc.get("style", np.nan), "auc_noise": auc.get("noise:5", np.nan),
        "auc_blur": auc.get("blur:5", np.nan),
    }  # fmt: skip


def load(out: str, rows: Sequence, seeds: Sequence[int]) -> dict[str, dict]:
    """{row: {"seeds": {seed: figures}, "curves": {...}}} for every evaluated run."""

    table: dict[str, dict] = {}
    for row in rows:
        entry: dict = {"what": row.what, "group": row.group, "seeds": {}, "curves": {}}
        for seed in seeds:
            path = os.path.join(run_dir(out, row.name, seed), "study_eval.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                result = json.load(f)
            entry["seeds"][seed] = seed_figures(result)
            for key, value in result.items():
                kind, _, edge = key.partition("/")
                if kind in ("frozen", "constant"):
                    entry.setdefault(kind, {}).setdefault(edge, []).append(value)
            entry["curves"][seed] = {m: result[f"{m}/curve"] for m in ("baseline", "consistency")}
        if entry["seeds"]:
            figures = list(entry["seeds"].values())
            entry["mean"] = {k: float(np.mean([f[k] for f in figures])) for k in figures[0]}
            entry["std"] = {k: float(np.std([f[k] for f in figures])) for k in figures[0]}
            entry["delta_range"] = [min(f["delta"] for f in figures),
                                    max(f["delta"] for f in figures)]  # fmt: skip
            table[row.name] = entry
    return table


def markdown(table: dict[str, dict]) -> str:
    """The results table: mean ± std over seeds; Δ also as [min, max] over seeds."""
    header = ["row", "seeds", *(h for _, h, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in table.items():
        cells = [f"`{name}`", str(len(entry["seeds"]))]
        for key, _, fmt in COLUMNS:
            mean, std = entry["mean"][key], entry["std"][key]
            cell = f"{fmt.format(mean)} ± {std:.2f}"
            if key == "delta":
                low, high = entry["delta_range"]
                cell += f" [{low:+.2f}, {high:+.2f}]"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def frozen_markdown(table: dict[str, dict]) -> str:
    """Held-out L1 of each frozen perceptual network F_K(y) -> K, mean over seeds, per row,
    with the L1 of the best constant guess (the train split's mean of K) in brackets."""
    rows = {name: e for name, e in table.items() if e.get("frozen")}
    if not rows:
        return ""
    edges = sorted({edge for e in rows.values() for edge in e["frozen"]})
    lines = ["| F_K: held-out L1 of F_K(y) vs K [a constant] | "
             + " | ".join(f"`{r}`" for r in rows) + " |",
             "|" + "---|" * (len(rows) + 1)]  # fmt: skip
    for edge in edges:
        cells = []
        for e in rows.values():
            cell = f"{np.mean(e['frozen'][edge]):.4f}" if edge in e["frozen"] else ""
            if edge in e.get("constant", {}):
                cell += f" [{np.mean(e['constant'][edge]):.4f}]"
            cells.append(cell)
        lines.append(f"| {edge} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curves_plot(stem: str, table: dict[str, dict]) -> list[str]:
    """Val angular error against step per row: baseline vs consistency, mean over seeds.

    The consistency run's steps are counted after the warm start, so its curve starts
    where the baseline's warm start ended (train.baseline_steps = 300 in :cpu).
    """
    plt = report.pyplot()
    names = list(table)
    cols = 4
    rows = (len(names) + cols - 1) // cols
    figure, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        for model, color in (("baseline", "tab:gray"), ("consistency", "tab:blue")):
            curves = [c[model] for c in table[name]["curves"].values() if c[model]]
            if not curves:
                continue
            offset = 300 if model == "consistency" else 0
            steps = [s + offset for s, _ in curves[0]]
            length = min(len(c) for c in curves)
            values = np.mean([[v for _, v in c[:length]] for c in curves], axis=0)
            ax.plot(steps[:length], values, marker="o", ms=3, color=color, label=model)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("val angle °", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    figure.tight_layout()
    return report.save_figure(figure, stem)


def differences_plot(stem: str, table: dict[str, dict]) -> list[str]:
    """Consistency minus baseline angular error per row, one dot per seed, both test sets."""
    plt = report.pyplot()
    names = list(table)
    figure, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names)), 3.4))
    for offset, key, color in ((-0.15, "delta", "tab:blue"), (0.15, "delta_shifted", "tab:red")):
        for i, name in enumerate(names):
            values = [f[key] for f in table[name]["seeds"].values()]
            ax.scatter([i + offset] * len(values), values, color=color, s=14,
                       label=("held-out" if key == "delta" else "shifted") if i == 0 else None)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axhline(-1.0, color="green", lw=0.8, ls="--", label="goal: -1°")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("consistency - baseline (°)")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return report.save_figure(figure, stem)


def energy_scatter(stem: str, csv_path: str, title: str = "") -> list[str]:
    """Energy against angular error for every scored image of one energy run, by set."""
    import csv

    with open(csv_path) as f:
        records = [r for r in csv.DictReader(f) if r.get("error_angular_error_deg")]
    plt = report.pyplot()
    figure, ax = plt.subplots(figsize=(5.0, 4.0))
    for name in dict.fromkeys(r["set"] for r in records):
        chosen = [r for r in records if r["set"] == name]
        ax.scatter([float(r["energy"]) for r in chosen],
                   [float(r["error_angular_error_deg"]) for r in chosen],
                   s=9, alpha=0.6, edgecolors="none", label=name)  # fmt: skip
    r = report.correlations(np.array([float(x["energy"]) for x in records]),
                            np.array([float(x["error_angular_error_deg"]) for x in records]))
    ax.set_title(f"{title} Pearson r {r['pearson_r']:.2f} over {len(records)} images", fontsize=9)
    ax.set_xlabel("consistency energy (standardised)")
    ax.set_ylabel("mean angular error of n(x) (°)")
    ax.legend(fontsize=7)
    return report.save_figure(figure, stem)


def write(out: str, rows: Sequence, seeds: Sequence[int]) -> dict:
    """Writes results.json, results.md and the plots of the evaluated runs; returns the table."""
    table = load(out, rows, seeds)
    if not table:
        raise SystemExit(f"{out}: no evaluated run yet; run --phase train and evaluate first.")
    atomic.write_json(os.path.join(out, "results.json"), table)
    text = markdown(table) + "\n" + frozen_markdown(table)
    atomic.write_bytes(os.path.join(out, "results.md"), text.encode())
    curves_plot(os.path.join(out, "curves"), table)
    differences_plot(os.path.join(out, "differences"), table)

    if "default" in table:  # the energy scatter of the reference row's first seed
        seed = min(table["default"]["seeds"])
        csv_path = os.path.join(run_dir(out, "default", seed), "energy", "consistency",
                                "data.csv")  # fmt: skip
        if os.path.exists(csv_path):
            energy_scatter(os.path.join(out, "energy_vs_error"), csv_path, f"default, seed {seed}:")
    print(text)
    print(f"wrote {out}/results.json, results.md, curves.png and differences.png")
    return table
