"""The taxonomy's outputs from an affinity table: heatmap, task tree, policy picture, budget sweep.

All figures are matplotlib (Agg) PNGs written atomically (`energy/report.save_figure`).
- `affinity_heatmap`: P restricted to first-order sources (rows) × targets (columns).
- `task_tree`: agglomerative clustering (average linkage, cosine distance) of the
  targets by their columns of P (each target's own entry replaced by its best other
  source's, each column renormalised to sum 1): Taskonomy's
  task-similarity tree, as a dendrogram; also returns the merge order.
- `policy_figure`: a policy as a hypergraph: roots on the left, each target on the
  right, an edge from every source of its transfer.
- `budget_sweep`: the optimal policy's objective against the budget beside random
  feasible policies (the paper's "taxonomy significance" figure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from xtc_jax.energy.report import pyplot, save_figure
from xtc_jax.errors import ConfigError
from xtc_jax.taxonomy import solver


def first_order_matrix(values: dict[str, float], tasks: Sequence[str]) -> np.ndarray:
    """(sources, targets) of first-order values over `tasks`; NaN where there is no transfer,
    and the "self" value on the diagonal."""
    m = np.full((len(tasks), len(tasks)), np.nan)
    for i, s in enumerate(tasks):
        for j, t in enumerate(tasks):
            key = f"{solver.SELF}__{t}" if s == t else f"{s}__{t}"
            if key in values:
                m[i, j] = values[key]
    return m


def affinity_heatmap(values: dict[str, float], tasks: Sequence[str], stem: str,
                     title: str = "AHP affinity of source (row) for target (column)") -> str:
    plt = pyplot()
    m = first_order_matrix(values, tasks)
    size = 1.0 + 0.45 * len(tasks)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    shown = axes.imshow(m, cmap="viridis", interpolation="nearest")
    axes.set_xticks(range(len(tasks)), tasks, rotation=60, ha="right", fontsize=7)
    axes.set_yticks(range(len(tasks)), tasks, fontsize=7)
    for i, j in zip(*np.nonzero(np.isfinite(m)), strict=True):
        axes.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5,
                  color="white" if m[i, j] < np.nanmean(m) else "black")  # fmt: skip
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    axes.set_title(title, fontsize=9)
    save_figure(figure, stem, suffixes=("png",))
    return f"{stem}.png"


def task_tree(values: dict[str, float], tasks: Sequence[str], stem: str) -> list[list[str]]:
    """Dendrogram of the targets by their affinity columns; returns the merges, first first."""
    from scipy.cluster import hierarchy

    m = first_order_matrix(values, tasks)
    # One row per target: its column of P, renormalised to sum 1, with the target's own
    # network counted as its best other source (the column's largest off-diagonal entry).
    # Its own value would dominate the columns of the tasks nothing transfers to and make
    # them look unlike everything else; left out, two tasks that help each other would
    # look unlike each other.
    features = np.nan_to_num(m, nan=0.0).T
    np.fill_diagonal(features, 0.0)
    np.fill_diagonal(features, features.max(axis=1))
    features = features / np.maximum(features.sum(axis=1, keepdims=True), 1e-12)
    if len(tasks) < 2:
        raise ConfigError("the task tree needs at least two targets.")
    links = hierarchy.linkage(features, method="average", metric="cosine")
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 0.3 * len(tasks) + 1.5))
    hierarchy.dendrogram(links, labels=list(tasks), orientation="right", ax=axes,
                         color_threshold=0)  # fmt: skip
    axes.set_xlabel("cosine distance of the affinity columns", fontsize=8)
    axes.set_title("task similarity (agglomerative, average linkage)", fontsize=9)
    axes.tick_params(labelsize=7)
    save_figure(figure, stem, suffixes=("png",))
    clusters = [[t] for t in tasks]
    merges = []
    for a, b, *_ in links:
        merged = clusters[int(a)] + clusters[int(b)]
        clusters.append(merged)
        merges.append(sorted(merged))
    return merges


def policy_figure(policy: solver.Policy, targets: Sequence[str], stem: str) -> str:
    """Roots left, targets right; a line from each source of a target's transfer."""
    plt = pyplot()
    left = list(policy.roots)
    right = list(targets)
    height = max(len(left), len(right), 2)
    figure, axes = plt.subplots(figsize=(5.5, 0.45 * height + 1.2))
    y_left = {t: height - 1 - i * (height - 1) / max(len(left) - 1, 1) for i, t in enumerate(left)}
    y_right = {t: height - 1 - i * (height - 1) / max(len(right) - 1, 1)
               for i, t in enumerate(right)}  # fmt: skip
    for target, sources in policy.transfers.items():
        for s in sources:
            axes.plot([0, 1], [y_left[s], y_right[target]], color="C0",
                      alpha=0.7 if len(sources) == 1 else 0.45,
                      linestyle="-" if len(sources) == 1 else "--")  # fmt: skip
    for t in right:
        solved = "root" if t in policy.roots else ("+".join(policy.transfers.get(t, [])) or "-")
        axes.text(1.05, y_right[t], f"{t}  ({solved})", va="center", fontsize=7)
    for t in left:
        axes.text(-0.05, y_left[t], t, va="center", ha="right", fontsize=7, weight="bold")
    axes.scatter([0] * len(left), list(y_left.values()), color="C3", zorder=3)
    axes.scatter([1] * len(right), list(y_right.values()), color="C2", zorder=3)
    axes.set_xlim(-0.8, 1.9)
    axes.set_axis_off()
    axes.set_title(f"policy for budget {policy.budget:g}: {len(left)} trained, objective "
                   f"{policy.objective:.3f}  (dashed: higher-order transfers)", fontsize=8)
    save_figure(figure, stem, suffixes=("png",))
    return f"{stem}.png"


def random_policy_value(problem: solver.Problem, rng: np.random.Generator,
                        tries: int = 200) -> float | None:  # fmt: skip
    """The objective of a random feasible policy: random roots within the budget, then a random
    candidate transfer from them into every other target; None if none is found in `tries`."""
    edges = problem.candidates()
    roots = list(dict.fromkeys(problem.sources))
    for _ in range(tries):
        count = int(rng.integers(1, len(roots) + 1))
        chosen = set(rng.choice(roots, count, replace=False).tolist())
        spent = sum(solver.cost_of(problem.supervision_cost, s) for s in chosen)
        value, ok = 0.0, True
        for t in problem.targets:
            importance = float(problem.importance.get(t, 1.0))
            if t in chosen:
                value += importance * problem.root_value(t)
                continue
            options = [e for e in edges if e.target == t and set(e.sources) <= chosen]
            if not options:
                ok = False
                break
            e = options[int(rng.integers(len(options)))]
            value += importance * e.value
            spent += solver.cost_of(problem.transfer_cost, t)
        if ok and spent <= problem.budget + 1e-9:
            return value
    return None


def budget_sweep(make_problem: Callable[[float], solver.Problem], budgets: Sequence[float],
                 stem: str, random_policies: int = 50, seed: int = 0,
                 ylabel: str = "total objective") -> dict:  # fmt: skip
    """{budget: {"optimal": value or None, "random": [values]}} and the figure."""
    rng = np.random.default_rng(seed)
    rows = {}
    for budget in budgets:
        problem = make_problem(budget)
        try:
            optimal = solver.solve(problem).objective
        except ConfigError:
            optimal = None
        randoms = [v for v in (random_policy_value(problem, rng) for _ in range(random_policies))
                   if v is not None]  # fmt: skip
        rows[float(budget)] = {"optimal": optimal, "random": randoms}
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5, 3.6))
    for budget, row in rows.items():
        if row["random"]:
            axes.scatter([budget] * len(row["random"]), row["random"], s=6, color="gray",
                         alpha=0.4)  # fmt: skip
    solved = [(b, r["optimal"]) for b, r in rows.items() if r["optimal"] is not None]
    if solved:
        axes.plot(*zip(*solved, strict=True), marker="o", color="C3", label="taxonomy (BIP)")
    axes.scatter([], [], s=6, color="gray", label="random feasible policies")
    axes.set_xlabel("supervision budget (tasks trained)")
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=7)
    axes.set_title("taxonomy significance", fontsize=9)
    save_figure(figure, stem, suffixes=("png",))
    return rows
