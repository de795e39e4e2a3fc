"""After a short training on the synthetic data: energy flags corrupted images; eval mode works."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from configs import normal
from xtc_jax.consistency import evaluate_exports, experiment
from xtc_jax.data import prepare
from xtc_jax.energy import model as energy_model_lib
from xtc_jax.energy import scoring
from xtc_jax.infra.tfevents import read_event_scalars

RES = 16


def _tiny_config():
    config = normal.get_config("cpu")
    config.data.resolution = RES
    config.data.synthetic.update(buildings=3, views=16, size=32)
    config.batch_size = 8
    config.transfer_steps = 120
    config.train.eval_batches = 1
    config.energy.middles = ["depth_zbuffer", "reshading"]
    config.energy.reference_images = 16
    for spec in config.networks.values():
        if spec.arch != "sobel":
            spec.downsample = 2
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """rgb->normal, rgb->K and K->normal for K in {depth, reshading}, trained into a workdir."""
    workdir = str(tmp_path_factory.mktemp("energy_workdir"))
    config = experiment.resolve_dirs(_tiny_config(), workdir)
    model = energy_model_lib.load(config, workdir, "direct", log=lambda _: None)
    return config, workdir, model


def test_noisy_images_have_higher_energy_than_clean_ones(trained):
    config, workdir, model = trained
    location = prepare.data_location(config.data, workdir)
    reference = prepare.open_split(config.data, location, "train")
    stats = scoring.fit_statistics(model, reference, 8, 16, dict(model.info()))
    assert stats.info["pixel_range"][0] < stats.info["pixel_range"][1]
    val = prepare.open_split(config.data, location, "val")
    rows = scoring.score_split(model, val, 8, stats, [("noise", 5), ("jpeg", 5)], progress=False)
    energy = {}
    for row in rows:
        energy.setdefault(row["set"], []).append(row["energy"])
    assert len(energy["clean"]) == len(val) == 16
    clean = np.mean(energy["clean"])
    assert np.mean(energy["noise:5"]) > clean + 1.0, energy
    # jpeg:5 is scored but not ordered: with these 150-step networks its mean energy lands
    # within ±0.1 of clean's, either side depending on the XLA CPU flags' rounding.
    assert len(energy["jpeg:5"]) == 16 and np.isfinite(energy["jpeg:5"]).all()
    assert {"error_l1", "error_angular_error_deg", "percep__reshading",
            "percep_depth_zbuffer_reshading"} <= rows[0].keys()  # fmt: skip


def test_eval_mode_reports_domain_metrics_to_json_and_tensorboard(trained):
    config, workdir, _ = trained
    results = evaluate_exports.run(config, workdir, "val", log=lambda _: None)
    assert set(results) == {"direct_depth_zbuffer/depth_zbuffer", "direct_reshading/reshading"}
    depth = results["direct_depth_zbuffer/depth_zbuffer"]
    assert {"l1", "abs_rel", "rmse_m", "delta_1.25_pct"} == set(depth)
    assert 0 < depth["rmse_m"] < 15.625 and 0 <= depth["delta_1.25_pct"] <= 100
    with open(os.path.join(workdir, "eval", "val.json")) as f:
        saved = json.load(f)
    assert saved["metrics"] == results and saved["examples"] == 16
    scalars = read_event_scalars(os.path.join(workdir, "eval", "logs"))
    key = next(k for k in scalars if k.endswith("direct_reshading/reshading/l1"))
    assert scalars[key][0][1] == pytest.approx(results["direct_reshading/reshading"]["l1"], 1e-6)
