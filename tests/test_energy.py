"""Consistency energy: the math, its statistics file, corruptions, ROC/AUC and the report."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from xtc_jax.data import corrupt
from xtc_jax.energy import report
from xtc_jax.energy import terms as energy_terms
from xtc_jax.energy.terms import Standardisation, image_terms, pixel_terms, term_name
from xtc_jax.errors import ConfigError, DataError

MIDDLES = ["depth_zbuffer", "reshading", "principal_curvature"]


def _predictions(disagreement: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    direct = rng.random((2, 8, 8, 3), dtype=np.float32)
    paths = {k: direct + disagreement * rng.standard_normal(direct.shape).astype(np.float32)
             for k in MIDDLES}  # fmt: skip
    return direct, paths


def _reference_stats():
    rng = np.random.default_rng(1)
    terms = {term_name(energy_terms.DIRECT, k): rng.uniform(0.1, 0.3, 50) for k in MIDDLES}
    return Standardisation.fit(terms, MIDDLES, info={"target": "normal"})


def test_energy_is_zero_when_all_paths_agree_and_grows_with_disagreement():
    stats = _reference_stats()
    direct, paths = _predictions(0.0)
    terms = image_terms(direct, paths)
    assert len(terms) == 6  # C(4, 2) pairs of {direct, 3 paths}
    assert all(np.all(np.asarray(v) == 0.0) for v in terms.values())
    assert all(np.all(np.asarray(v) == 0.0) for v in pixel_terms(direct, paths).values())
    floor = stats.image_energy({k: np.asarray(v) for k, v in terms.items()})
    expected_floor = np.mean([-m / s for m, s in zip(stats.mean, stats.mad, strict=True)])
    np.testing.assert_allclose(floor, [expected_floor] * 2, rtol=1e-6)
    energies = []
    for disagreement in (0.0, 0.05, 0.1, 0.2, 0.4):
        direct, paths = _predictions(disagreement)
        terms = {k: np.asarray(v) for k, v in image_terms(direct, paths).items()}
        energies.append(stats.image_energy(terms).mean())
    assert np.all(np.diff(energies) > 0), energies


def test_pixel_energy_map_averages_to_the_image_energy():
    stats = _reference_stats()
    direct, paths = _predictions(0.1, seed=3)
    paths["reshading"][:, :4] += 0.5  # rows 0-3 disagree strongly
    energy_map = np.asarray(stats.pixel_energy(pixel_terms(direct, paths)))
    image = stats.image_energy({k: np.asarray(v) for k, v in image_terms(direct, paths).items()})
    assert energy_map.shape == (2, 8, 8)
    np.testing.assert_allclose(energy_map.mean(axis=(1, 2)), image, rtol=1e-4)
    assert energy_map[:, :4].mean() > energy_map[:, 4:].mean()  # the disagreeing rows light up


def test_standardisation_uses_the_mean_absolute_deviation():
    terms = {term_name(energy_terms.DIRECT, "reshading"): np.array([1.0, 2.0, 3.0, 6.0])}
    stats = Standardisation.fit(terms, ["reshading"])
    assert stats.mean == (3.0,) and stats.mad == (1.5,)  # mean |x - 3| = (2+1+0+3)/4
    np.testing.assert_allclose(stats.image_energy(terms), [-4 / 3, -2 / 3, 0.0, 2.0])


def test_statistics_round_trip_and_bad_files_name_the_fix(tmp_path):
    stats = _reference_stats()
    path = stats.save(str(tmp_path / "run" / "energy_stats.json"))
    loaded = Standardisation.load(path)
    assert loaded == stats
    terms = {term_name(energy_terms.DIRECT, k): np.array([0.2, 0.25]) for k in MIDDLES}
    np.testing.assert_array_equal(loaded.image_energy(terms), stats.image_energy(terms))
    with pytest.raises(DataError, match=r"python -m xtc_jax\.energy"):
        Standardisation.load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"middles": ["a"], "mean": [1.0]}))
    with pytest.raises(DataError, match=r"bad\.json is not an energy statistics file"):
        Standardisation.load(str(bad))


def test_roc_auc_equals_the_pairwise_definition():
    rng = np.random.default_rng(0)
    negatives, positives = rng.normal(0, 1, 40), rng.normal(1, 1, 30)
    positives[:3] = negatives[:3]  # some ties
    pairs = positives[:, None] - negatives[None, :]
    expected = np.mean(pairs > 0) + 0.5 * np.mean(pairs == 0)
    assert report.roc_auc(negatives, positives) == pytest.approx(expected)
    assert report.roc_auc([0, 1], [2, 3]) == 1.0 and report.roc_auc([2, 3], [0, 1]) == 0.0
    fpr, tpr = report.roc_curve(negatives, positives)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected)


def test_correlations_and_report_files(tmp_path):
    x = np.arange(20, dtype=float)
    r = report.correlations(x, x**3)
    assert r["spearman_r"] == pytest.approx(1.0) and 0.9 < r["pearson_r"] < 1.0
    assert np.isnan(report.correlations(x, np.ones(20))["pearson_r"])
    paths = report.scatter_plot(str(tmp_path / "scatter"), x, x**3, "error")
    paths += report.roc_plot(str(tmp_path / "roc"), x[:10], {"noise:3": x[10:]})
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        assert data[:4] in (b"\x89PNG", b"%PDF")
    report.write_csv(str(tmp_path / "data.csv"), [{"image": "a", "energy": 0.5},
                                                  {"image": "b", "error_l1": 0.25}])  # fmt: skip
    with open(tmp_path / "data.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"image": "a", "energy": "0.5", "error_l1": ""},
                    {"image": "b", "energy": "", "error_l1": "0.25"}]  # fmt: skip


def test_corruptions_are_deterministic_in_range_and_parsed_with_clear_errors():
    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    for kind in corrupt.CORRUPTIONS:
        out = corrupt.corrupt(image, kind, 3, seed=7)
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.abs(out - image).mean() > 0.01, kind
        np.testing.assert_array_equal(out, corrupt.corrupt(image, kind, 3, seed=7))
    mild = np.abs(corrupt.corrupt(image, "noise", 1) - image).mean()
    assert np.abs(corrupt.corrupt(image, "noise", 5) - image).mean() > mild
    assert corrupt.parse("blur,noise:5") == [("blur", 5), ("noise", 5)]
    assert corrupt.parse("jpeg") == [("jpeg", 3)]
    assert corrupt.parse("blur:3,noise:5") == [("blur", 3), ("noise", 5)]  # one per corruption
    assert corrupt.parse("blur:2,noise,jpeg:4,contrast") == [
        ("blur", 2), ("noise", 4), ("jpeg", 4), ("contrast", 3)]  # fmt: skip
    with pytest.raises(ConfigError, match="severity"):
        corrupt.parse("blur:9")
    with pytest.raises(ConfigError, match=r"fog.*blur, noise, jpeg, contrast"):
        corrupt.parse("fog:2")


def test_summary_correlates_clean_images_and_scores_each_shift(tmp_path):
    from xtc_jax.energy.command import summarise

    rng = np.random.default_rng(0)
    error = rng.random(30)
    rows = [{"image": f"{i}", "set": "clean", "energy": 2 * e + 0.1 * rng.random(),
             "error_l1": e} for i, e in enumerate(error)]  # fmt: skip
    rows += [{"image": f"{i}", "set": "noise:3", "energy": 5.0 + i} for i in range(10)]
    rows += [{"image": f"{i}", "set": "ood", "energy": -5.0 - i} for i in range(10)]
    summary = summarise(rows, str(tmp_path))
    assert summary["images"] == {"clean": 30, "noise:3": 10, "ood": 10}
    assert summary["correlation_error_l1"]["pearson_r"] > 0.95
    assert summary["roc_auc"]["noise:3"] == 1.0 and summary["roc_auc"]["ood"] == 0.0
    assert summary["roc_auc"]["all shifts"] == 0.5
    assert sorted(os.listdir(tmp_path)) == ["energy_vs_error.pdf", "energy_vs_error.png",
                                            "roc.pdf", "roc.png"]  # fmt: skip
