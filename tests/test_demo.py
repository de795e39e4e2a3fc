"""Images from anywhere and the demo: formats, bad files, outputs named as the original."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from PIL import Image

from xtc_jax.apps import demo
from xtc_jax.consistency.graph import TaskGraph
from xtc_jax.data import images
from xtc_jax.energy import terms as energy_terms
from xtc_jax.energy.model import EnergyModel
from xtc_jax.energy.terms import Standardisation
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra import export as export_lib

RES = 16
SPEC = {"arch": "unet", "downsample": 2, "width": 0.25}


def _write_inputs(folder):
    rng = np.random.default_rng(0)
    pixels = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "good.png")
    Image.fromarray(pixels[..., 0]).save(folder / "gray.jpg")
    rgba = np.concatenate([pixels, np.full((40, 60, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "notes.txt").write_text("not an image, not listed")


def test_load_image_handles_every_mode_and_crops_the_centre(tmp_path):
    _write_inputs(tmp_path)
    Image.fromarray((np.arange(48 * 32).reshape(32, 48) * 40).astype(np.uint16)).save(
        tmp_path / "sixteen.png"
    )
    files = images.list_images(str(tmp_path))
    assert [os.path.basename(f) for f in files] == [
        "alpha.png", "corrupt.png", "good.png", "gray.jpg", "sixteen.png"]  # fmt: skip
    for name in ("good.png", "gray.jpg", "alpha.png", "sixteen.png"):
        image = images.load_image(str(tmp_path / name), RES)
        assert image.shape == (RES, RES, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0
    gray = images.load_image(str(tmp_path / "gray.jpg"), RES)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    alpha = images.load_image(str(tmp_path / "alpha.png"), RES)
    np.testing.assert_array_equal(alpha, images.load_image(str(tmp_path / "good.png"), RES))
    # Shorter side to RES, then the centre: a 1-pixel-wide bright column in the middle stays.
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 29:31] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    cropped = images.load_image(str(tmp_path / "wide.png"), 20)
    assert cropped.shape == (20, 20, 3) and cropped[:, 9:11].min() > 0.9
    with pytest.raises(DataError, match=r"corrupt\.png: not a readable image"):
        images.load_image(str(tmp_path / "corrupt.png"), RES)
    with pytest.raises(DataError, match="missing does not exist: pass an image file or a folder"):
        images.list_images(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        images.list_images(str(tmp_path / "empty"))


def _export(path, edge, seed):
    graph = TaskGraph({edge: SPEC})
    params = jax.device_get(graph.init(jax.random.PRNGKey(seed), RES, [edge])[edge])
    src, dst = edge.split("->")
    export_lib.export_model(path, params, dict(SPEC, edge=edge, src=src, dst=dst, resolution=RES))
    return str(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir as the main command and the energy command leave it (random weights)."""
    root = tmp_path_factory.mktemp("demo_workdir")
    _export(root / "baseline" / "export", "rgb->normal", 0)
    consistency = _export(root / "consistency" / "export", "rgb->normal", 1)
    exports = {"rgb->normal": os.path.abspath(consistency)}
    for i, edge in enumerate(["rgb->reshading", "reshading->normal"]):
        exports[edge] = os.path.abspath(_export(root / "networks" / edge.replace("->", "__")
                                                / "export", edge, 2 + i))  # fmt: skip
    specs = {edge: dict(SPEC) for edge in exports}
    info = {"target": "normal", "resolution": RES, "specs": specs, "exports": exports}
    model = EnergyModel.from_stats(Standardisation(("reshading",), (0.0,), (1.0,), info))
    rng = np.random.default_rng(0)
    terms = model(rng.random((8, RES, RES, 3), dtype=np.float32))["terms"]
    stats = Standardisation.fit(terms, ["reshading"], dict(model.info(), pixel_range=[-3.0, 3.0]))
    stats.save(str(root / "consistency" / "energy_stats.json"))
    return root


def test_demo_writes_three_outputs_per_good_image_and_names_the_bad_one(tmp_path, workdir):
    _write_inputs(tmp_path)
    messages = []
    result = demo.run("normal", str(tmp_path), str(tmp_path / "out"), workdir=str(workdir),
                      log=messages.append)  # fmt: skip
    expected = {f"{stem}_normal_{kind}.png" for stem in ("good", "gray", "alpha")
                for kind in ("baseline", "consistency", "energy")}  # fmt: skip
    assert set(os.listdir(tmp_path / "out")) == expected
    assert [os.path.basename(p) for p, _ in result["skipped"]] == ["corrupt.png"]
    assert any("skipped" in m and "corrupt.png" in m for m in messages)
    prediction = Image.open(tmp_path / "out" / "good_normal_baseline.png")
    assert prediction.size == (RES, RES) and prediction.mode == "RGB"
    energy = Image.open(tmp_path / "out" / "good_normal_energy.png")
    assert energy.size[0] > RES  # a figure with a colour bar, not the raw map
    baseline = np.asarray(prediction)
    consistency = np.asarray(Image.open(tmp_path / "out" / "good_normal_consistency.png"))
    assert not np.array_equal(baseline, consistency)  # two different models ran


def test_demo_rejects_a_model_of_another_task_and_missing_models(tmp_path, workdir):
    _write_inputs(tmp_path)
    with pytest.raises(ConfigError, match="predicts rgb->normal, but --task depth"):
        demo.run("depth", str(tmp_path), str(tmp_path / "out"), workdir=str(workdir))
    with pytest.raises(ConfigError, match=r"--models_dir .* does not exist"):
        demo.run("normal", str(tmp_path), str(tmp_path / "out"),
                 models_dir=str(tmp_path / "none"))  # fmt: skip
    with pytest.raises(DataError, match="does not exist"):
        demo.run("normal", str(tmp_path), str(tmp_path / "out"), workdir=str(tmp_path))


def test_demo_without_energy_statistics_still_writes_predictions(tmp_path, workdir):
    _write_inputs(tmp_path)
    messages = []
    demo.run("normal", str(tmp_path / "good.png"), str(tmp_path / "out"), workdir=str(workdir),
             energy_stats=str(tmp_path / "none.json"), log=messages.append)  # fmt: skip
    assert sorted(os.listdir(tmp_path / "out")) == [
        "good_normal_baseline.png", "good_normal_consistency.png"]  # fmt: skip
    assert any("python -m xtc_jax.energy" in m for m in messages)


def test_energy_model_terms_match_the_core_functions(workdir):
    stats = Standardisation.load(str(workdir / "consistency" / "energy_stats.json"))
    model = EnergyModel.from_stats(stats)
    rgb = np.random.default_rng(5).random((2, RES, RES, 3), dtype=np.float32)
    out = model(rgb)
    assert set(out["terms"]) == {energy_terms.term_name(energy_terms.DIRECT, "reshading")}
    np.testing.assert_allclose(out["pixels"]["reshading"].mean(axis=(1, 2)),
                               out["terms"]["percep__reshading"], rtol=1e-5)  # fmt: skip


def test_load_network_is_the_public_entry_point(tmp_path):
    import xtc_jax
    from xtc_jax.consistency.graph import TaskGraph as Graph

    path = _export(tmp_path / "export", "rgb->normal", 3)
    net = xtc_jax.load_network(path)
    assert (net.src, net.dst, net.resolution) == ("rgb", "normal", RES)
    x = np.random.default_rng(0).random((2, RES, RES, 3), dtype=np.float32)
    graph = Graph({"rgb->normal": SPEC})
    apply = jax.jit(lambda params, x: graph.apply("rgb->normal", params, x))
    expected = apply(export_lib.load_exported(path)[0], x)
    # The same network; only XLA's fusion and reduction order may differ between programs.
    np.testing.assert_allclose(net(x), np.asarray(expected), atol=1e-4 * np.abs(expected).max())
    assert net(x).shape == (2, RES, RES, 3)
    with pytest.raises(DataError, match=r"takes \(N, H, W, 3\) arrays of rgb; got shape \(16,"):
        net(x[0])
