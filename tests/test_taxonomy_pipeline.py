"""The taxonomy command: beam search, the tables from per-image losses, every stage end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from xtc_jax.errors import ConfigError
from xtc_jax.taxonomy import outputs, stage_transfers
from xtc_jax.taxonomy.config import check, taxonomy_config

ORDER = ("a", "b", "c", "d", "e")


def test_the_beam_extends_the_best_sets_by_the_best_sources():
    first = ["c", "a", "e", "b", "d"]  # first-order ranking, best first
    pairs = stage_transfers.extend_beam([(s,) for s in first], first, 2, ORDER)
    assert pairs == [("a", "c")]  # the 2 best singles, each extended by the other
    pairs = stage_transfers.extend_beam([(s,) for s in first], first, 3, ORDER)
    assert pairs == [("a", "c"), ("c", "e"), ("a", "e")]  # sorted inside, deduplicated
    triples = stage_transfers.extend_beam([("c", "e"), ("a", "c")], first, 3, ORDER)
    assert triples == [("a", "c", "e")]  # both best pairs lead to the same triple
    assert stage_transfers.extend_beam([("c", "e")], first, 1, ORDER) == []  # c is in it


def test_rank_orders_candidates_by_their_tournament():
    losses = np.array([[3.0, 3.0, 3.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    assert stage_transfers.rank([("x",), ("y",), ("z",)], losses) == [("y",), ("z",), ("x",)]


def test_tables_follow_the_definitions():
    # two transfers into t and its task network on 4 images; the scratch network's losses
    losses = np.array([[1.0, 1.0, 1.0, 1.0],   # a: wins every image against b and self
                       [2.0, 2.0, 2.0, 0.5]])  # b: wins one image against a  # fmt: skip
    own = np.array([1.5, 1.5, 1.5, 1.5])
    scratch = np.array([1.2, 0.8, 3.0, 3.0])
    result = {"t": {"names": np.array(["a", "a__b"]), "orders": np.array([1, 2]),
                    "losses": losses, "self": own, "scratch": scratch}}  # fmt: skip
    scores = outputs.score_tables(result)
    affinity = scores["affinity"]
    assert sorted(affinity) == ["a__b__t", "a__t", "self__t"]
    assert sum(affinity.values()) == pytest.approx(1.0)  # one AHP vector per target
    # a beats both everywhere it can; self loses every image to a, so AHP puts it last
    # although it beats a__b on 3 of 4 images (the eigenvector weighs whom one beats)
    assert affinity["a__t"] == pytest.approx(0.95845, abs=1e-4)
    assert affinity["a__b__t"] == pytest.approx(0.03196, abs=1e-4)
    assert scores["gain"]["a__t"] == pytest.approx(0.75)  # beats scratch on images 2, 3, 4
    assert scores["gain"]["a__b__t"] == pytest.approx(0.5)
    assert scores["quality"]["a__t"] == 1.0 and scores["quality"]["a__b__t"] == 0.25
    assert scores["quality"]["self__t"] == 0.5
    w = np.array(scores["winrates"]["t"]["matrix"])
    assert scores["winrates"]["t"]["candidates"] == ["a", "a__b", "self"]
    np.testing.assert_allclose(w + w.T, 1.0)
    assert outputs.top_sources(affinity, ["t"], k=2) == {"t": ["a"]}  # first order only


def test_config_errors_name_the_field():
    config = taxonomy_config("cpu")
    config.tasks = ["normal", "colour"]
    with pytest.raises(ConfigError, match="unknown taxonomy task 'colour'"):
        check(config)
    config = taxonomy_config("cpu")
    config.solver.objective = "loss"
    with pytest.raises(ConfigError, match=r"config\.solver\.objective='loss'"):
        check(config)
    config = taxonomy_config("cpu")
    config.data.resolution = 40
    with pytest.raises(ConfigError, match="multiple of 16"):
        check(config)
    with pytest.raises(ConfigError, match="unknown preset 'gpu'"):
        taxonomy_config("gpu")


def _json(path: str):
    with open(path) as f:
        return json.load(f)


def _tiny(tmp_path):
    config = taxonomy_config("cpu")
    config.tasks = ["normal", "autoencoder", "denoise"]
    config.data.resolution = 32
    config.data.synthetic.update(dict(buildings=4, views=8, size=32))
    config.data.cache_dir = str(tmp_path / "data")
    config.batch_size = 4
    config.train.update(dict(steps=3, eval_every=3, checkpoint_every=3, eval_batches=1))
    config.transfer.update(dict(steps=3, batch_size=4))
    config.solver.update(dict(budget=1.0, random_policies=3))
    return config


def test_every_stage_end_to_end_and_resumed(tmp_path):
    from xtc_jax.taxonomy import experiment

    config, workdir = _tiny(tmp_path), str(tmp_path / "run")
    lines: list[str] = []
    summary = experiment.run(config, workdir, log=lines.append)
    out = os.path.join(workdir, "taxonomy")
    for name in ("affinities.csv", "affinities.json", "gain.csv", "quality.json",
                 "winrates.json", "affinity_heatmap.png", "task_tree.png", "task_tree.json",
                 "policy.png", "policy.json", "budget_sweep.png", "budget_sweep.json",
                 "summary.md"):  # fmt: skip
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    affinity = _json(os.path.join(out, "affinities.json"))
    for target in config.tasks:  # 2 first-order sources, 1 pair (beam 4), self: sum 1
        keys = [k for k in affinity if k.endswith(f"__{target}")]
        assert len(keys) == 4, keys
        assert sum(affinity[k] for k in keys) == pytest.approx(1.0)
    policy = _json(os.path.join(out, "policy.json"))
    assert set(policy) >= {"roots", "transfers", "objective", "budget"}
    assert len(policy["roots"]) == 1 and len(policy["transfers"]) == 2  # budget 1: one root
    assert set(policy["transfers"]) | set(policy["roots"]) == set(config.tasks)
    sweep = _json(os.path.join(out, "budget_sweep.json"))
    assert list(sweep["budgets"]) == ["1.0", "2.0", "3.0"]
    assert sorted(summary["tree_merges"][-1]) == sorted(config.tasks)  # the root holds all
    assert any("task network [3/3] denoise" in line for line in lines)

    lines.clear()  # a rerun trains nothing and gives the same tables
    again = experiment.run(config, workdir, log=lines.append)
    assert again["top_sources"] == summary["top_sources"]
    assert sum("done before, reused" in line for line in lines) == 6
    assert not any("order 1:" in line for line in lines)
    config.solver.budget = 3.0  # a new budget: only the outputs are written again
    rebuilt = experiment.rebuild(config, workdir)
    assert rebuilt["policy"]["budget"] == 3.0 == _json(os.path.join(out, "policy.json"))["budget"]
    assert rebuilt["policy"]["objective"] >= policy["objective"]  # more budget never hurts


def test_rebuild_without_a_run_says_what_to_do(tmp_path):
    from xtc_jax.taxonomy import experiment

    with pytest.raises(ConfigError, match="no Stage II results for normal"):
        experiment.rebuild(_tiny(tmp_path), str(tmp_path))


def test_two_runs_compare_by_their_top_sources(tmp_path, capsys):
    from xtc_jax.taxonomy import compare, tables

    a = {"x__t": 0.4, "y__t": 0.3, "z__t": 0.2, "w__t": 0.05, "self__t": 0.05,
         "x__u": 0.5, "y__u": 0.3, "z__u": 0.1, "w__u": 0.1, "x__y__u": 0.0}  # fmt: skip
    b = dict(a, **{"z__t": 0.1, "w__t": 0.25})  # t's third source changes; u's do not
    result = compare.compare(a, b, k=3)
    assert result["targets"]["t"]["same_set"] is False
    assert result["targets"]["t"]["overlap"] == pytest.approx(2 / 3)
    assert result["targets"]["u"]["same_set"] is True
    assert result["targets"]["u"]["spearman"] == pytest.approx(1.0)
    assert result["same_set_fraction"] == 0.5
    for name, table in (("A", a), ("B", b)):
        os.makedirs(tmp_path / name / "taxonomy")
        tables.write_table(str(tmp_path / name / "taxonomy" / "affinities.json"), table)
    assert compare.main([str(tmp_path / "A"), str(tmp_path / "B")]) == 0
    assert "top-3 sets agree for 50% of targets" in capsys.readouterr().out
    assert compare.main([str(tmp_path / "A"), str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_command_refuses_another_methods_config(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "xtc_jax.taxonomy",
                           "--config=configs/mtl_synthetic.py:cpu", f"--workdir={tmp_path}"],
                          cwd=root, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0
    assert "'mtl' config: use configs/taxonomy.py here" in done.stderr
    assert not os.listdir(tmp_path)  # nothing rendered or trained
