"""The published models in every command: --models_dir in the demo and the energy command."""

from __future__ import annotations

import os

import pytest
from test_demo import _export, _write_inputs

from configs import normal
from xtc_jax.apps import demo
from xtc_jax.convert.published import PublishedModels
from xtc_jax.energy import command as energy_command
from xtc_jax.energy.model import stats_path
from xtc_jax.energy.terms import Standardisation
from xtc_jax.errors import ConfigError

RES = 16


def _convert_like(models, stem: str, edge: str, seed: int) -> str:
    """An export as `python -m xtc_jax.convert` names it (narrow, so the test is quick)."""
    return _export(models / stem, edge, seed)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A converted published set: both rgb->normal models and one energy path via reshading."""
    root = tmp_path_factory.mktemp("published") / "models"
    for seed, (stem, edge) in enumerate([
        ("rgb2normal_baseline", "rgb->normal"), ("rgb2normal_consistency", "rgb->normal"),
        ("rgb2reshading_baseline", "rgb->reshading"), ("reshading2normal", "reshading->normal"),
    ]):  # fmt: skip
        _convert_like(root, stem, edge, seed)
    (root / "rgb2normal_baseline.pth").write_bytes(b"the original file stays beside its export")
    return root


def test_the_folder_answers_which_export_serves_which_model(models):
    published = PublishedModels(str(models))
    assert published.rgb_model("normal", "consistency") == str(models / "rgb2normal_consistency")
    assert published.edge("reshading->normal") == str(models / "reshading2normal")
    assert published.edge("rgb->reshading") == str(models / "rgb2reshading_baseline")
    assert published.edge("normal->principal_curvature") is None
    with pytest.raises(ConfigError, match=r"no consistency rgb->depth_zbuffer model.*convert"):
        published.rgb_model("depth_zbuffer", "consistency")


def test_the_demo_defaults_to_the_converted_models_folder(tmp_path, models, monkeypatch):
    _write_inputs(tmp_path)
    monkeypatch.chdir(models.parent)  # ./models, as the original demo
    lines: list[str] = []
    result = demo.run("normal", str(tmp_path / "good.png"), str(tmp_path / "out"),
                      log=lines.append)  # fmt: skip
    # No statistics yet: fitted first, on synthetic images at the model's resolution, with
    # the folder's networks alone (the energy path through reshading), saved beside the model.
    assert any("fitting them on 32 synthetic images at 16 px" in line for line in lines)
    assert sorted(os.path.basename(p) for p in result["written"]) == [
        "good_normal_baseline.png", "good_normal_consistency.png", "good_normal_energy.png"]
    stats = Standardisation.load(str(models / "rgb2normal_consistency_energy_stats.json"))
    assert stats.middles == ("reshading",) and stats.info["images"] == 32
    assert not (models / "energy_reference" / "networks").exists()  # nothing was trained
    lines.clear()
    again = demo.run("normal", str(tmp_path / "good.png"), str(tmp_path / "other"),
                     models_dir=str(models), log=lines.append)  # fmt: skip
    assert len(again["written"]) == 3 and not any("fitting" in line for line in lines)


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", r"--models_dir .*nothing does not exist: download the original's \.pth files"),
    ("empty", r"holds no converted models: .*python -m xtc_jax\.convert --models_dir DOWNLOADS"),
    ("pth", r"holds \.pth files but no converted exports: .*python -m xtc_jax\.convert"),
])  # fmt: skip
def test_an_empty_models_folder_says_how_to_get_and_convert_the_files(tmp_path, setup, message):
    _write_inputs(tmp_path)
    folder = tmp_path / "nothing"
    if setup != "missing":
        folder.mkdir()
    if setup == "pth":
        (folder / "rgb2normal_consistency.pth").write_bytes(b"")
    with pytest.raises(ConfigError, match=message):
        demo.run("normal", str(tmp_path / "good.png"), str(tmp_path / "out"),
                 models_dir=str(folder))  # fmt: skip


def _tiny_config():
    config = normal.get_config("cpu")
    config.data.resolution = RES
    config.data.synthetic.update(buildings=3, views=8, size=32)
    config.batch_size = 4
    config.energy.reference_images = 8
    return config


def test_the_energy_command_runs_on_the_published_networks_alone(tmp_path, models):
    workdir = tmp_path / "work"
    energy_command.run(_tiny_config(), str(workdir), data="val", max_images=4,
                       models_dir=str(models), log=lambda _: None)  # fmt: skip
    assert not (workdir / "networks").exists()  # nothing was trained
    stats = stats_path(str(models / "rgb2normal_consistency"))
    assert stats == str(models / "rgb2normal_consistency_energy_stats.json")
    info = Standardisation.load(stats).info
    assert info["exports"] == {"rgb->normal": str(models / "rgb2normal_consistency"),
                               "rgb->reshading": str(models / "rgb2reshading_baseline"),
                               "reshading->normal": str(models / "reshading2normal")}
    rows = (workdir / "energy" / "consistency" / "data.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and "percep__reshading" in rows[0]


def test_the_energy_command_names_what_the_folder_lacks(tmp_path, models):
    config = _tiny_config()
    config.energy.middles = ["principal_curvature"]
    with pytest.raises(ConfigError, match=r"lacks the rgb->K or K->normal networks of "
                                          r"principal_curvature"):
        energy_command.run(config, str(tmp_path), models_dir=str(models), log=lambda _: None)
    config = _tiny_config()
    config.energy.middles = ["reshading"]
    config.data.resolution = 18
    with pytest.raises(ConfigError, match=r"data\.resolution=18 does not suit the published"):
        energy_command.run(config, str(tmp_path), models_dir=str(models), log=lambda _: None)


def test_the_web_demo_offers_the_tasks_the_folder_holds(models):
    from xtc_jax.apps.web.engine import Engine

    engine = Engine(models_dir=str(models), log=lambda _: None)
    assert engine.tasks == ["normal"]  # rgb2normal_{baseline,consistency}; no depth, reshading
    with pytest.raises(ConfigError, match=r"task 'depth' is not available here"):
        engine.predictor("depth")
