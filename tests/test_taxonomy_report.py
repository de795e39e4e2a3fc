"""The taxonomy's figures from an affinity table: heatmap, task tree, policy, budget sweep."""

from __future__ import annotations

import numpy as np
import pytest

from xtc_jax.errors import ConfigError
from xtc_jax.taxonomy import report, solver, tournament

TASKS = ["normal", "reshading", "curvature", "edge2d", "keypoints2d"]


def _values(seed: int = 0) -> dict[str, float]:
    """AHP affinities of a world with two families: 3D tasks help each other, 2D tasks too."""
    rng = np.random.default_rng(seed)
    family = {"normal": 0, "reshading": 0, "curvature": 0, "edge2d": 1, "keypoints2d": 1}
    losses = {}
    for t in TASKS:
        candidates = {"self": rng.normal(1.0, 0.1, 200)}
        for s in TASKS:
            if s != t:
                base = 1.2 if family[s] == family[t] else 2.0
                candidates[s] = rng.normal(base, 0.3, 200)
        losses[t] = candidates
    values = {}
    for t, affinities in tournament.affinity_matrix(losses).items():
        for s, v in affinities.items():
            values[f"{s}__{t}"] = v
    return values


def test_the_tree_groups_the_families_and_the_figures_are_written(tmp_path):
    values = _values()
    heatmap = report.affinity_heatmap(values, TASKS, str(tmp_path / "affinity"))
    merges = report.task_tree(values, TASKS, str(tmp_path / "tree"))
    assert (tmp_path / "affinity.png").is_file() and heatmap.endswith("affinity.png")
    assert (tmp_path / "tree.png").is_file()
    assert ["edge2d", "keypoints2d"] in merges
    assert ["curvature", "normal", "reshading"] in merges
    m = report.first_order_matrix(values, TASKS)
    assert m.shape == (5, 5) and np.isfinite(m).all()
    assert (np.argmax(m, axis=0) == np.arange(5)).all()  # each target's own network wins


def test_the_optimal_policy_beats_every_random_feasible_one(tmp_path):
    values = _values(1)

    def problem(budget):
        return solver.Problem(values, TASKS, TASKS, budget, max_order=1)

    rows = report.budget_sweep(problem, [0.5, 1, 2, 3, 5], str(tmp_path / "sweep"),
                               random_policies=30)  # fmt: skip
    assert (tmp_path / "sweep.png").is_file()
    assert rows[0.5]["optimal"] is None and rows[0.5]["random"] == []
    for budget in (1.0, 2.0, 3.0, 5.0):
        assert rows[budget]["random"], budget
        assert rows[budget]["optimal"] >= max(rows[budget]["random"]) - 1e-9
    optimal = [rows[b]["optimal"] for b in (1.0, 2.0, 3.0, 5.0)]
    assert optimal == sorted(optimal)  # more budget never hurts
    policy = solver.solve(problem(2))
    report.policy_figure(policy, TASKS, str(tmp_path / "policy"))
    assert (tmp_path / "policy.png").is_file() and len(policy.roots) == 2


def test_random_policies_respect_the_budget():
    values = _values(2)
    problem = solver.Problem(values, TASKS, TASKS, 1.0, transfer_cost=0.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        value = report.random_policy_value(problem, rng)
        assert value is not None
        assert value <= solver.solve(problem).objective + 1e-9
    with pytest.raises(ConfigError, match="at least two targets"):
        report.task_tree(values, ["normal"], "/nonexistent/tree")
