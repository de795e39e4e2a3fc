"""What the energy command writes: data.csv, energy-vs-error scatter, ROC curve and AUC.

Plots are drawn with matplotlib's Agg backend (no display needed) and
written as PNG and PDF; every file is written atomically.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from xtc_jax.infra import atomic


def write_csv(path: str, rows: Sequence[Mapping]) -> str:
    """Rows (dicts) as CSV; the columns are the union of keys in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return atomic.write_bytes(path, text.getvalue().encode())


def correlations(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman r of two 1-D arrays (NaN when either is constant or too short)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson_r": float("nan"), "spearman_r": float("nan")}
    return {
        "pearson_r": float(scipy_stats.pearsonr(x, y)[0]),
        "spearman_r": float(scipy_stats.spearmanr(x, y)[0]),
    }


def roc_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney U)."""
    negatives, positives = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if not len(negatives) or not len(positives):
        return float("nan")
    ranks = scipy_stats.rankdata(np.concatenate([negatives, positives]))
    u = ranks[len(negatives) :].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(negatives) * len(positives)))


def roc_curve(negatives: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every threshold, from (0, 0) to (1, 1)."""
    scores = np.concatenate([negatives, positives])
    labels = np.concatenate([np.zeros(len(negatives)), np.ones(len(positives))])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # end of each tie group
    tpr = np.r_[0.0, np.cumsum(labels)[last] / max(len(positives), 1)]
    fpr = np.r_[0.0, np.cumsum(1 - labels)[last] / max(len(negatives), 1)]
    return fpr, tpr


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, stem: str, suffixes: Sequence[str] = ("png", "pdf")) -> list[str]:
    """Writes a matplotlib figure as stem.png (and .pdf), atomically; closes it."""
    paths = []
    for suffix in suffixes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix, dpi=150, bbox_inches="tight")
        paths.append(atomic.write_bytes(f"{stem}.{suffix}", buffer.getvalue()))
    figure.clear()
    pyplot().close(figure)
    return paths


def scatter_plot(stem: str, energy: np.ndarray, error: np.ndarray, error_label: str,
                 title: str = "",
                 energy_label: str = "consistency energy (standardised)") -> list[str]:  # fmt: skip
    """Energy (x) against error (y) with a least-squares line and both r in the title."""
    plt = pyplot()
    r = correlations(energy, error)
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.scatter(energy, error, s=8, alpha=0.5, edgecolors="none")
    if np.isfinite(r["pearson_r"]):
        slope, intercept = np.polyfit(energy, error, 1)
        xs = np.linspace(np.min(energy), np.max(energy), 2)
        axes.plot(xs, slope * xs + intercept, color="C3", linewidth=1.5)
    axes.set_xlabel(energy_label)
    axes.set_ylabel(error_label)
    axes.set_title(f"{title}Pearson r = {r['pearson_r']:.3f}, Spearman r = {r['spearman_r']:.3f}",
                   fontsize=9)  # fmt: skip
    return save_figure(figure, stem)


def roc_plot(stem: str, negatives: np.ndarray, shifted: Mapping[str, np.ndarray]) -> list[str]:
    """One ROC curve per shift (in-distribution = negatives), AUC in the legend."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(4.5, 4))
    for name, positives in shifted.items():
        fpr, tpr = roc_curve(negatives, positives)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(negatives, positives):.3f})")
    axes.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    axes.set_xlabel("false positive rate (in-distribution flagged)")
    axes.set_ylabel("true positive rate (shifted flagged)")
    axes.set_title("shift detection by consistency energy", fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    return save_figure(figure, stem)
