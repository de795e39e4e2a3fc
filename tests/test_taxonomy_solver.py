"""Taskonomy's Stage III and IV: win rates, AHP, the supervision BIP against brute force, and the
affinity tables (the released pickle format read without executing anything)."""

from __future__ import annotations

import itertools
import json
import pickle

import numpy as np
import pytest

from xtc_jax.errors import ConfigError, DataError
from xtc_jax.taxonomy import solve as solve_cli
from xtc_jax.taxonomy import solver, tables, tournament


def test_win_rates_by_their_definition():
    losses = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 3.0, 5.0], [0.0, 0.0, 0.0, 9.0]])
    w = tournament.winrate_matrix(losses)
    # 0 vs 1: 0 wins images 0 and 3, loses image 1, ties image 2 -> (2 + 0.5) / 4
    assert w[0, 1] == pytest.approx(0.625) and w[1, 0] == pytest.approx(0.375)
    assert w[2, 0] == pytest.approx(0.75)  # wins 3 of 4
    np.testing.assert_allclose(w + w.T, 1.0)
    np.testing.assert_allclose(np.diag(w), 0.5)


def test_ahp_on_a_hand_computed_three_by_three():
    # a consistent comparison matrix of weights (4, 2, 1): w_ij / w_ji = v_i / v_j
    v = np.array([4.0, 2.0, 1.0])
    w = v[:, None] / (v[:, None] + v[None, :])  # w_ij / w_ji = v_i / v_j exactly
    np.testing.assert_allclose(tournament.ahp_weights(w), v / v.sum(), rtol=1e-12)
    # a 2x2 by hand: w01 = 0.8 -> ratio 4 -> eigenvector (4, 1) / 5
    np.testing.assert_allclose(tournament.ahp_weights(np.array([[0.5, 0.8], [0.2, 0.5]])),
                               [0.8, 0.2], rtol=1e-12)  # fmt: skip


def test_ahp_clips_certain_wins_and_sums_to_one():
    w = np.array([[0.5, 1.0, 1.0], [0.0, 0.5, 0.7], [0.0, 0.3, 0.5]])
    weights = tournament.ahp_weights(w)
    assert weights.sum() == pytest.approx(1.0) and (weights > 0).all()
    assert weights[0] > weights[1] > weights[2]
    clipped = np.clip(w, 0.001, 0.999)
    comparison = clipped / clipped.T
    eigenvalue = (comparison @ weights) / weights  # the Perron vector: A v = λ v
    np.testing.assert_allclose(eigenvalue, eigenvalue[0], rtol=1e-9)


def test_affinity_matrix_ranks_the_lower_loss_first():
    rng = np.random.default_rng(0)
    base = rng.random(50)
    out = tournament.affinity_matrix({"depth": {"normal": base, "edges": base + 0.1,
                                                "self": base - 0.1}})  # fmt: skip
    assert out["depth"]["self"] > out["depth"]["normal"] > out["depth"]["edges"]
    assert sum(out["depth"].values()) == pytest.approx(1.0)


# --- The BIP against brute force.


def _brute_force(problem: solver.Problem):
    edges = problem.candidates()
    roots = list(dict.fromkeys(problem.sources))
    best = None
    for bits in itertools.product((0, 1), repeat=len(edges) + len(roots)):
        x, y = bits[: len(edges)], dict(zip(roots, bits[len(edges):], strict=True))
        if any(x[i] and not all(y[s] for s in e.sources) for i, e in enumerate(edges)):
            continue
        if any(sum(x[i] for i, e in enumerate(edges) if e.target == t) + y.get(t, 0) != 1
               for t in problem.targets):  # fmt: skip
            continue
        cost = sum(y.values()) * problem.supervision_cost + sum(x) * problem.transfer_cost
        if cost > problem.budget + 1e-9:
            continue
        value = sum(problem.importance.get(e.target, 1.0) * e.value
                    for i, e in enumerate(edges) if x[i])  # fmt: skip
        value += sum(problem.importance.get(s, 1.0) * problem.root_value(s)
                     for s in roots if y[s] and s in problem.targets)  # fmt: skip
        best = value if best is None else max(best, value)
    return best


def _random_problem(rng, budget):
    tasks = ["a", "b", "c", "d"]
    values = {}
    for target in tasks:
        values[f"self__{target}"] = float(rng.uniform(0.2, 1.0))
        for source in tasks:
            if source != target and rng.random() < 0.6:
                values[f"{source}__{target}"] = float(rng.uniform(0, 1))
        pair = rng.choice([t for t in tasks if t != target], 2, replace=False)
        values[f"{pair[0]}__{pair[1]}__{target}"] = float(rng.uniform(0, 1))
    sources = ["a", "b", "c"]  # d is target-only
    return solver.Problem(values, tasks, sources, budget, max_order=2,
                          importance={"d": float(rng.uniform(0.5, 2))},
                          supervision_cost=1.0, transfer_cost=0.25)  # fmt: skip


@pytest.mark.parametrize("seed", range(12))
def test_the_bip_matches_brute_force_on_random_small_instances(seed):
    rng = np.random.default_rng(seed)
    problem = _random_problem(rng, budget=float(rng.choice([0.5, 1.25, 1.5, 2.5, 3.75])))
    assert len(problem.candidates()) + len(problem.sources) <= 16  # small enough to enumerate
    best = _brute_force(problem)
    try:
        policy = solver.solve(problem)
    except ConfigError as error:
        assert best is None, f"the solver found no policy but brute force has {best}: {error}"
        assert "budget" in str(error) or "cannot be covered" in str(error)
        return
    assert best is not None and policy.objective == pytest.approx(best, abs=1e-9)
    assert policy.cost <= problem.budget + 1e-9
    for target, sources in policy.transfers.items():
        assert set(sources) <= set(policy.roots) and target not in policy.roots


def _chain_values():
    return {"self__a": 0.6, "self__b": 0.9, "self__c": 0.5, "a__b": 0.8, "a__c": 0.7,
            "b__c": 0.95, "a__b__c": 0.99}  # fmt: skip


def test_each_constraint_binds_on_a_handcrafted_instance():
    values = _chain_values()
    # budget 1: one root, the rest by transfer from it (a is the best single root here)
    policy = solver.solve(solver.Problem(values, ["a", "b", "c"], ["a", "b", "c"], 1.0))
    assert policy.roots == ["a"] and policy.transfers == {"b": ["a"], "c": ["a"]}
    # budget 2: b becomes a root too; c takes the order-2 transfer a+b (sources first)
    policy = solver.solve(solver.Problem(values, ["a", "b", "c"], ["a", "b", "c"], 2.0))
    assert policy.roots == ["a", "b"] and policy.transfers == {"c": ["a", "b"]}
    # max order 1 forbids it: c takes b alone
    policy = solver.solve(solver.Problem(values, ["a", "b", "c"], ["a", "b", "c"], 2.0,
                                         max_order=1))  # fmt: skip
    assert policy.transfers == {"c": ["b"]}
    # transfers do not chain: with only a trainable, b and c both come from a
    policy = solver.solve(solver.Problem(values, ["b", "c"], ["a"], 1.0))
    assert policy.roots == ["a"] and policy.transfers == {"b": ["a"], "c": ["a"]}
    # importance: making c matter 10x moves the second root so that c gets its best edge
    weighted = solver.solve(solver.Problem(values, ["a", "b", "c"], ["a", "b", "c"], 2.0,
                                           importance={"c": 10.0}, sqrt_values=True))  # fmt: skip
    assert weighted.transfers == {"c": ["a", "b"]}
    # transfer costs eat the budget: at 0.6 each, budget 2 affords one root and one transfer
    with pytest.raises(ConfigError, match=r"budget 1.5 is too small.*costs 2.2"):
        solver.solve(solver.Problem(values, ["a", "b", "c"], ["a", "b", "c"], 1.5,
                                    transfer_cost=0.6, max_order=1))  # fmt: skip


def test_unsolvable_inputs_name_the_constraint():
    values = _chain_values()
    with pytest.raises(ConfigError, match=r"budget 0.5 is too small.*costs 1"):
        solver.solve(solver.Problem(values, ["a", "b"], ["a", "b"], 0.5))
    with pytest.raises(ConfigError, match="target z cannot be covered: it is not a source"):
        solver.solve(solver.Problem({**values, "self__z": 1.0}, ["a", "z"], ["a"], 3.0))
    with pytest.raises(ConfigError, match="no 'self__b'"):
        solver.solve(solver.Problem({"a__b": 0.5, "self__a": 1.0}, ["a", "b"], ["a", "b"], 2.0))


def test_the_square_root_is_an_explicit_option():
    problem = solver.Problem(_chain_values(), ["a", "b", "c"], ["a", "b", "c"], 1.0,
                             sqrt_values=True)  # fmt: skip
    assert problem.value("a__b") == pytest.approx(np.sqrt(0.8))
    assert solver.Problem(_chain_values(), ["a"], ["a"], 1.0).value("a__b") == 0.8


# --- Tables and the command.


def test_the_released_pickle_format_is_read_and_solved(tmp_path, capsys):
    path = tmp_path / "all_affinities_16k.pkl"
    path.write_bytes(pickle.dumps(_chain_values(), protocol=2))
    assert tables.read_table(str(path)) == _chain_values()
    out = tmp_path / "policy.json"
    code = solve_cli.main(["--affinities", str(path), "--targets", "a,b,c", "--sources",
                           "a,b,c", "--budget", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "roots (full supervision): a, b" in printed and "a + b -> c" in printed
    policy = json.loads(out.read_text())
    assert policy["roots"] == ["a", "b"] and policy["transfers"] == {"c": ["a", "b"]}
    assert policy["budget"] == 2 and policy["objective"] == pytest.approx(0.6 + 0.9 + 0.99)


class _Boom:
    def __reduce__(self):
        return (print, ("executed",))


def test_a_pickle_naming_any_callable_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"a__b": _Boom()}))
    with pytest.raises(DataError, match=r"refusing builtins\.print"):
        tables.read_table(str(path))
    assert "executed" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps({"a__b": np.float64(0.5)}))
    with pytest.raises(DataError, match="refusing numpy"):
        tables.read_table(str(path))


def test_csv_and_json_tables_round_trip(tmp_path):
    values = _chain_values()
    for name in ("t.csv", "t.json"):
        tables.write_table(str(tmp_path / name), values)
        assert tables.read_table(str(tmp_path / name)) == pytest.approx(values)
    (tmp_path / "bad.json").write_text('{"a__b": "high"}')
    with pytest.raises(DataError, match="is not a str key with a number"):
        tables.read_table(str(tmp_path / "bad.json"))
    assert solve_cli.main(["--affinities", str(tmp_path / "t.csv"), "--targets", "a,b",
                           "--sources", "a", "--budget", "0.5"]) == 2  # fmt: skip
