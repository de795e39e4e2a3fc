"""The viewers' shared parts: energy statistics fitted on first use, uploads, the queue."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time

import jax
import numpy as np
import pytest
import viewer_fixtures
from PIL import Image

from xtc_jax.apps import demo
from xtc_jax.apps.predictor import Predictor
from xtc_jax.apps.web import uploads
from xtc_jax.apps.web.engine import Busy, Engine
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.energy.terms import Standardisation

RES = viewer_fixtures.RES


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_first_use_fits_statistics_that_the_viewers_then_use(viewer_workdir, tmp_path):
    stats_file = os.path.join(viewer_workdir, "consistency", "energy_stats.json")
    stats = Standardisation.load(stats_file)
    assert stats.middles == ("edge_texture",) and stats.info["images"] == 16
    assert len(stats.info["reference_energies"]) == 16
    # Standardised on their own reference set: the reference energies have mean 0.
    assert abs(np.mean(stats.info["reference_energies"])) < 1e-3
    rgb = np.random.default_rng(0).random((2, RES, RES, 3), dtype=np.float32)
    out = Predictor.load("normal", workdir=viewer_workdir, log=lambda _: None)(rgb)
    assert out.energy.shape == (2, RES, RES) and out.image_energy.shape == (2,)
    # The image energy is the mean of its map (the standardisation is affine per term).
    np.testing.assert_allclose(out.energy.mean(axis=(1, 2)), out.image_energy, atol=1e-4)
    assert set(out.paths) == {"edge_texture"}
    assert out.paths["edge_texture"].shape == (2, RES, RES, 3)
    assert not np.array_equal(out.baseline, out.consistency)
    assert out.baseline_energy.shape == (2,) and not np.allclose(out.baseline_energy,
                                                                 out.image_energy)
    # The demo, on a copy whose statistics are gone, fits them again and writes energy maps.
    copy = viewer_fixtures.copy_without_statistics(viewer_workdir, str(tmp_path / "copy"))
    Image.fromarray((rgb[0] * 255).astype(np.uint8)).save(tmp_path / "x.png")
    messages: list[str] = []
    result = demo.run("normal", str(tmp_path / "x.png"), str(tmp_path / "out"), workdir=copy,
                      log=messages.append)  # fmt: skip
    assert any("fitting them with the workdir's config" in m for m in messages)
    assert not any("training frozen network" in m for m in messages)  # the cache was copied
    assert sorted(os.path.basename(p) for p in result["written"]) == [
        "x_normal_baseline.png", "x_normal_consistency.png", "x_normal_energy.png"]
    assert os.path.exists(os.path.join(copy, "consistency", "energy_stats.json"))


def test_the_web_engine_fits_missing_statistics_too(viewer_workdir, tmp_path):
    copy = viewer_fixtures.copy_without_statistics(viewer_workdir, str(tmp_path / "copy"))
    messages: list[str] = []
    engine = Engine(copy, log=messages.append)
    assert engine.tasks == ["normal"]
    rgb = np.random.default_rng(1).random((RES, RES, 3), dtype=np.float32)
    result = engine.predict("normal", rgb)
    assert any("fitting them" in m for m in messages)
    for seed in (2, 3):  # loaded once, compiled once: the same jitted program every time
        engine.predict("normal", np.random.default_rng(seed).random((RES, RES, 3), np.float32))
    assert engine.predictor("normal") is engine.predictor("normal")
    assert engine.predictor("normal")._energy._cache_size() == 1
    assert {"input", "baseline", "consistency", "energy", "reference"} == set(result["pngs"])
    assert result["energy"]["low"] < result["energy"]["high"]
    assert 0 <= result["energy"]["percentile"] <= 100


def test_a_workdir_without_config_or_statistics_still_predicts(tmp_path):
    root = viewer_fixtures.make_workdir(str(tmp_path), save_config=False)
    messages: list[str] = []
    predictor = Predictor.load("normal", workdir=root, log=messages.append)
    assert predictor.energy_model is None
    assert any("holds no config.json" in m and "--config=CONFIG" in m for m in messages)
    out = predictor(np.zeros((1, RES, RES, 3), np.float32))
    assert out.energy is None and out.paths == {}


def test_uploads_are_checked_with_one_message_each():
    rng = np.random.default_rng(0)
    good = _png((rng.random((40, 60, 3)) * 255).astype(np.uint8))
    image = uploads.read_upload(good, "good.png", RES)
    assert image.rgb.shape == (RES, RES, 3) and image.original_size == (60, 40)
    assert image.note == ""
    with pytest.raises(uploads.UploadError, match=r"notes\.txt: not an image"):
        uploads.read_upload(b"hello, not an image", "notes.txt", RES)
    with pytest.raises(uploads.UploadError, match=r"cut\.png: the image is truncated or corrupt"):
        uploads.read_upload(good[: len(good) // 2], "cut.png", RES)
    with pytest.raises(uploads.UploadError, match=r"tiny\.png: 8x8 pixels is too small"):
        uploads.read_upload(_png(np.zeros((8, 8, 3), np.uint8)), "tiny.png", RES)
    with pytest.raises(uploads.UploadError, match="empty"):
        uploads.read_upload(b"", "empty.png", RES)
    wide = uploads.read_upload(_png(np.zeros((20, uploads.MAX_SIDE + 904, 3), np.uint8)),
                               "wide.png", RES)  # fmt: skip
    assert wide.note.startswith("downscaled from 5000x20 to 4096x16")
    # A header announcing more pixels than the limit is refused before any decoding.
    bomb = Image.new("1", (10_000, 6_000))
    buffer = io.BytesIO()
    bomb.save(buffer, format="PNG")
    with pytest.raises(uploads.UploadError, match="megapixel limit"):
        uploads.read_upload(buffer.getvalue(), "bomb.png", RES)


def test_the_queue_runs_one_job_at_a_time_and_refuses_beyond_its_length(viewer_workdir):
    engine = Engine(viewer_workdir, max_waiting=2, log=lambda _: None)
    running, overlaps, release = [], [], threading.Event()

    def job():
        running.append(1)
        overlaps.append(len(running))
        release.wait(5)
        running.pop()
        return {}

    threads = [threading.Thread(target=engine.run, args=(job,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    with pytest.raises(Busy, match="already waiting"):
        engine.run(job)
    release.set()
    for thread in threads:
        thread.join()
    assert overlaps == [1, 1]
    assert engine.run(lambda: {"ok": 1}) == {"ok": 1}


def _fake_train(config, run_dir: str, log) -> dict:
    """In place of a training run: the export of its trained network, random weights."""
    from xtc_jax.consistency.plan import make_plan
    from xtc_jax.infra import export as export_lib
    from xtc_jax.infra import workdir as workdir_lib

    edge = make_plan(config).target_edge
    spec = config.networks[edge].to_dict()
    graph = TaskGraph({edge: spec})
    params = jax.device_get(graph.init(jax.random.PRNGKey(0), RES, [edge])[edge])
    src, dst = edge.split("->")
    export_lib.export_model(workdir_lib.export(run_dir), params,
                            dict(spec, edge=edge, src=src, dst=dst, resolution=RES))  # fmt: skip
    log(f"trained {edge} (fake)")
    return {"l1": 0.5, "export": workdir_lib.export(run_dir)}


def test_the_main_run_saves_its_config_and_fits_energy_statistics_at_the_end(tmp_path,
                                                                               monkeypatch):
    """The orchestration of a whole run, each training replaced by a random export: the
    config is saved first, and the energy's K -> target network is trained (by the same
    fake) and its statistics fitted last, where the viewers find them."""
    from xtc_jax.consistency import experiment
    from xtc_jax.consistency.config import consistency_config
    from xtc_jax.energy import after_training
    from xtc_jax.infra import run_config

    monkeypatch.setattr(experiment, "train", _fake_train)
    config = consistency_config("normal", ["reshading"], "cpu")
    config.data.resolution = RES
    config.data.synthetic.update(buildings=3, views=8, size=32)
    config.batch_size = 4
    config.energy.reference_images = 8
    for spec in config.networks.values():
        spec.downsample = 2
    workdir = str(tmp_path / "run")
    lines: list[str] = []
    after_training.run(config, workdir, log=lines.append)  # what the main command runs
    assert run_config.load(workdir).to_dict() == config.to_dict()
    energy_stage = lines.index(next(x for x in lines if x.startswith("== consistency energy")))
    assert "trained reshading->normal (fake)" in lines[energy_stage:]  # the energy's path net
    stats = Standardisation.load(os.path.join(workdir, "consistency", "energy_stats.json"))
    assert stats.middles == ("reshading",) and stats.info["images"] == 8
    messages: list[str] = []
    Predictor.load("normal", workdir=workdir, log=messages.append)
    assert not any("fitting" in m for m in messages)  # the viewers find them


def test_the_web_engine_shows_a_multi_task_model_beside_the_consistency_models(viewer_workdir,
                                                                               tmp_path):
    copy = str(tmp_path / "both")
    shutil.copytree(viewer_workdir, copy)
    viewer_fixtures.add_multitask_export(copy, size=(32, 64))
    engine = Engine(copy, log=lambda _: None)
    assert engine.tasks == ["normal", "mtl"]
    assert engine.resolution("mtl") == (32, 64)
    upload = uploads.read_upload(_png(np.full((50, 40, 3), 90, np.uint8)), "a.png",
                                 engine.resolution("mtl"))  # fmt: skip
    assert upload.rgb.shape == (32, 64, 3)
    result = engine.predict("mtl", upload.rgb)
    assert [key for key, _ in result["cards"]] == ["input", "segmentation", "depth", "energy"]
    for key in ("segmentation", "depth", "energy"):
        assert Image.open(io.BytesIO(result["pngs"][key])).size == (64, 32)
    assert np.isfinite(result["energy"]["image"])


def test_the_web_demo_starts_on_a_multi_task_run_alone(tmp_path):
    from xtc_jax.apps.web import launch

    root = viewer_fixtures.add_multitask_export(str(tmp_path), size=(32, 64))
    lines: list[str] = []
    launch.build_app(root, None, log=lines.append)  # loads and compiles the first task
    assert any(line.startswith("mtl: models loaded and compiled") for line in lines), lines
