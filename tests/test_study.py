"""The experiment study's mechanics: the shifted style, fewer labels, the consistency stage's
learning rate, row configs and the report (issue 13). The experiments' outcomes live in
docs/experiments.md, not here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import make_source

from configs import normal
from xtc_jax.consistency import experiment, study, study_report
from xtc_jax.data import prepare
from xtc_jax.data.synthetic import generate
from xtc_jax.data.synthetic.scene import BASE_PATTERNS, PATTERNS
from xtc_jax.errors import ConfigError


def test_base_streams_are_the_ones_before_styles_existed():
    """A base building's stream keeps its 4-element key, so base data renders as before."""
    ours = generate._rng(3, 1, 2, 0, 5).random(4)
    before = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(1, 2, 0, 5))).random(4)
    np.testing.assert_array_equal(ours, before)
    shifted = generate._rng(3, 1, 2, 0, 5, style="shifted").random(4)
    assert not np.allclose(ours, shifted)


def test_shifted_scenes_use_only_held_out_textures_and_round_furniture():
    for b in range(4):
        base = generate.building_scene(0, b)
        shifted = generate.building_scene(0, b, "shifted")
        assert base.name == f"synth_{b:03d}" and shifted.name == f"synth_shifted_{b:03d}"
        assert set(base.pattern) <= set(range(BASE_PATTERNS))
        assert set(shifted.pattern) <= set(range(BASE_PATTERNS, len(PATTERNS)))
        kinds = {type(p).__name__ for p in shifted.prims}
        assert "Cylinder" in kinds  # round tables, stools and columns


def test_shifted_tree_has_its_own_buildings_names_and_lighting(tmp_path: Path):
    base = generate.generate(tmp_path / "b", buildings=2, views=3, size=32, progress=False)
    shifted = generate.generate(tmp_path / "s", buildings=2, views=3, size=32, progress=False,
                                style="shifted")  # fmt: skip
    assert base.files == shifted.files
    csv = (tmp_path / "s" / generate.SPLIT_FILE).read_bytes().decode()
    assert "synth_shifted_000,1,0,0" in csv and "synth_000" not in csv
    rgb = generate.render_view(0, 0, 0, 0, 32, "shifted").arrays["rgb"].astype(float)
    # one dominant primary light over a dim ambient: the channel means differ strongly
    means = rgb.reshape(-1, 3).mean(0)
    assert means.max() > 1.5 * means.min()
    with pytest.raises(ValueError, match="unknown style 'odd'"):
        generate.generate(tmp_path / "x", buildings=1, views=1, size=16, style="odd")


def test_the_shifted_data_is_its_own_cache_folder_and_needs_the_built_in_data(tmp_path):
    data = normal.get_config("cpu").data
    base = prepare._synthetic_root(data.synthetic, str(tmp_path))
    shifted = prepare.shifted(data)
    assert prepare._synthetic_root(shifted.synthetic, str(tmp_path)) == base + "_shifted"
    assert data.synthetic.style == "base"  # the original is untouched
    data.synthetic.style = "odd"
    with pytest.raises(ConfigError, match=r"data.synthetic.style='odd'"):
        prepare._synthetic_root(data.synthetic, str(tmp_path))
    data.path = "/data/taskonomy"
    with pytest.raises(ConfigError, match="--ood=FOLDER"):
        prepare.shifted(data)


def test_labelled_subset_is_evenly_spaced_and_checked():
    source = list(range(192))
    subset = prepare.labelled_subset(source, 48)
    assert len(subset) == 48 and [subset[i] for i in range(3)] == [0, 4, 8]
    assert subset[47] == 188
    assert prepare.labelled_subset(source, 0) is source
    with pytest.raises(ConfigError, match=r"data\.train_examples=500: the train split has 192"):
        prepare.labelled_subset(source, 500)


def test_frozen_networks_keep_the_whole_train_split(tmp_path):
    config = normal.get_config("cpu")
    config.data.train_examples = 48
    transfer = experiment._frozen_network_config(config, str(tmp_path), "normal->reshading")
    assert transfer.data.train_examples == 0


def test_consistency_stage_learning_rate_and_warm_start():
    config = normal.get_config("cpu")
    stage = experiment.consistency_stage_config(config, "/w/warmstart")
    assert stage.optimizer.learning_rate == 1e-3 and stage.train.init_from == "/w/warmstart"
    config.optimizer.consistency_learning_rate = 1e-4
    stage = experiment.consistency_stage_config(config, "/w/warmstart")
    assert stage.optimizer.learning_rate == 1e-4
    assert config.optimizer.learning_rate == 1e-3  # the baseline's config is untouched
    assert experiment.baseline_config(config).optimizer.learning_rate == 1e-3


def test_row_configs_apply_their_overrides_with_the_fields_types(tmp_path):
    rows = {r.name: r for r in study.ROWS}
    config = study.row_config(str(tmp_path), rows["weight0_lr1e-4"], 2)
    assert config.seed == 2 and config.optimizer.consistency_learning_rate == 1e-4
    assert all(config.losses[f"percep_{k}"].weight == 0.0 for k in study.PERCEPTUAL)
    config = study.row_config(str(tmp_path), rows["res96"], 0)
    assert config.data.resolution == 96 and isinstance(config.data.resolution, int)
    assert config.networks_dir.endswith(os.path.join("seed0", "networks_res96"))
    shared = study.row_config(str(tmp_path), rows["k7"], 1)
    assert shared.selection.k == 7
    assert shared.networks_dir.endswith(os.path.join("seed1", "networks_default"))
    assert shared.data.cache_dir == os.path.join(str(tmp_path), "data")


def test_every_row_names_existing_config_fields(tmp_path):
    for row in study.ROWS:
        study.row_config(str(tmp_path), row, 0)  # a wrong field name raises here


def _fake_eval(workdir: str, row: str, seed: int, delta: float) -> None:
    os.makedirs(workdir, exist_ok=True)
    metrics = lambda angle: {"angle_mean_deg": angle, "l1": angle / 200}  # noqa: E731
    result = {
        "row": row, "seed": seed,
        "baseline/held_out": metrics(36.0 + seed),
        "consistency/held_out": metrics(36.0 + seed + delta),
        "baseline/shifted": metrics(50.0), "consistency/shifted": metrics(49.0),
        "baseline/curve": [[100, 40.0], [600, 36.0]], "consistency/curve": [[100, 38.0]],
        "frozen/normal->reshading": 0.05 + seed * 0.01, "constant/normal->reshading": 0.2,
        "energy": {"r_clean": 0.2, "r_all": 0.5,
                   "auc": {"style": 0.9, "noise:5": 0.8, "blur:5": 0.6}},
    }  # fmt: skip
    with open(os.path.join(workdir, "study_eval.json"), "w") as f:
        json.dump(result, f)


def test_report_means_paired_differences_table_and_plots(tmp_path):
    out = str(tmp_path)
    rows = [r for r in study.ROWS if r.name in ("default", "k7")]
    for seed, delta in ((0, 1.0), (1, -2.0), (2, 0.4)):
        _fake_eval(study.run_dir(out, "default", seed), "default", seed, delta)
    _fake_eval(study.run_dir(out, "k7", 0), "k7", 0, -0.5)
    table = study_report.write(out, rows, [0, 1, 2])
    default = table["default"]
    assert default["mean"]["baseline"] == pytest.approx(37.0)
    assert default["mean"]["delta"] == pytest.approx(-0.2)
    assert default["delta_range"] == [pytest.approx(-2.0), pytest.approx(1.0)]
    assert len(table["k7"]["seeds"]) == 1
    text = (tmp_path / "results.md").read_text()
    assert "| `default` | 3 | 37.00 ± 0.82 |" in text and "[-2.00, +1.00]" in text
    assert "| normal->reshading | 0.0600 [0.2000] |" in text  # mean over the seeds
    for name in ("curves.png", "differences.png", "results.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_report_without_evaluated_runs_says_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="--phase train and evaluate"):
        study_report.write(str(tmp_path), list(study.ROWS), [0])


def test_unknown_row_is_refused(capsys):
    with pytest.raises(SystemExit):
        study.main(["--out", "/tmp/x", "--rows", "nope"])
    assert "unknown rows nope" in capsys.readouterr().err


def test_row_shares_are_known():
    assert {r.shares for r in study.ROWS} <= {"", "baseline", "networks"}
    assert len(set(study.ROW_NAMES)) == len(study.ROWS)


def test_lab_preset_is_the_fewer_labels_row_of_the_study(tmp_path):
    """:lab is exactly the study's labels12 setting, so that row's figures are the preset's."""
    lab = normal.get_config("lab")
    assert lab.data.train_examples == 12 and lab.selection.k == 3
    row = next(r for r in study.ROWS if r.name == "labels12")
    studied, preset = study.row_config(str(tmp_path), row, 0).to_dict(), lab.to_dict()
    for config in (studied, preset):  # the study's own folders aside
        del config["preset"], config["networks_dir"], config["data"]["cache_dir"]
    assert studied == preset
    frozen = experiment._frozen_network_config(lab, str(tmp_path), "normal->reshading")
    assert frozen.data.train_examples == 0


def test_a_row_shares_the_stages_of_its_base_row(tmp_path):
    rows = {r.name: r for r in study.ROWS}
    control = study.row_config(str(tmp_path), rows["buildings10_weight0"], 0)
    assert control.data.synthetic.buildings == 10
    assert control.networks_dir.endswith(os.path.join("seed0", "networks_buildings10_w0.1"))
    labels = study.row_config(str(tmp_path), rows["labels25_weight0"], 0)
    assert labels.data.train_examples == 48  # the base row's setting, and its networks'
    assert labels.networks_dir.endswith(os.path.join("seed0", "networks_default"))
    base = study.run_dir(str(tmp_path), "buildings10_w0.1", 0)
    for stage in ("baseline", "warmstart"):
        os.makedirs(os.path.join(base, stage, "export"))
    study._copy_shared(str(tmp_path), rows["buildings10_weight0"], 0)
    copied = study.run_dir(str(tmp_path), "buildings10_weight0", 0)
    assert os.path.isdir(os.path.join(copied, "warmstart", "export"))


def test_the_constant_guess_is_the_train_mean_and_its_l1():
    """_valid_mean: the masked mean of a split; _constant_l1: the L1 of guessing it."""
    source = make_source(8, size=16)
    mean = study._valid_mean(source, "reshading", 16, 4)
    assert mean.ndim == 1 and ((mean > 0.0) & (mean < 1.0)).all()  # per channel
    l1 = study._constant_l1(source, "reshading", 16, 4, mean)
    assert 0.0 < l1 < 0.5
    worse = study._constant_l1(source, "reshading", 16, 4, mean + 0.3)
    assert worse > l1  # the mean beats a shifted guess
