"""Converting the original's .pth files: key names both ways, the file-name table, parity."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from model_helpers import random_params

import xtc_jax
from xtc_jax.convert import names, table
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.models import build, param_shapes

REPO = Path(__file__).resolve().parents[1]


def test_keys_map_to_the_originals_names_and_back_exactly():
    params = random_params(build("unet", downsample=2, width=0.25), 16, 3,
                           np.random.default_rng(0))  # fmt: skip
    state = names.to_torch(params)
    assert {"down1.conv1.weight", "down_blocks.0.conv1.weight", "up_blocks.1.bn3.weight",
            "mid_conv1.weight", "bn1.weight", "last_conv2.bias"} <= set(state)  # fmt: skip
    kernel = np.asarray(params["down_blocks_0"]["conv1"]["kernel"])  # HWIO
    np.testing.assert_array_equal(state["down_blocks.0.conv1.weight"], kernel.transpose(3, 2, 0, 1))
    back = names.to_flax(state)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, params))
    dense = names.to_torch(random_params(build("dense1by1", width=0.25), 8, 3,
                                         np.random.default_rng(1)))  # fmt: skip
    assert "decoder.6.conv.weight" in dense and "decoder.0.bn.bias" in dense


def test_wrappers_and_prefixes_come_off():
    tensor = np.ones((2,), np.float32)
    wrapped = {"state_dict": {"model.parallel_apply.module.bn1.weight": tensor}, "optimizer": {}}
    for obj in ({"parallel_apply.module.bn1.weight": tensor}, wrapped):
        assert list(names.state_dict_of(obj, "f.pth")) == ["bn1.weight"]
    with pytest.raises(DataError, match=r"f\.pth: 'x' is not a tensor"):
        names.state_dict_of({"x": 3}, "f.pth")


def test_a_checkpoint_of_another_architecture_names_the_first_difference():
    expected = param_shapes(build("unet", downsample=2, width=0.25), 16, 3)
    params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), expected)
    names.check_shapes(params, expected, "f.pth", "unet")
    deeper = param_shapes(build("unet", downsample=3, width=0.25), 16, 3)
    with pytest.raises(DataError, match=r"f\.pth lacks 'down_blocks\.2\.bn1\.bias', which unet"):
        names.check_shapes(params, deeper, "f.pth", "unet")
    with pytest.raises(DataError, match=r"f\.pth has 'down_blocks\.2\.bn1\.bias', which unet does"):
        names.check_shapes(jax.tree.map(np.zeros_like, random_params(
            build("unet", downsample=3, width=0.25), 16, 3, np.random.default_rng(0))),
            expected, "f.pth", "unet")  # fmt: skip
    wider = param_shapes(build("unet", downsample=2, width=0.5), 16, 3)
    with pytest.raises(DataError, match=r"'bn1\.bias' has shape \(16,\).*expects \(32,\)"):
        names.check_shapes(params, wider, "f.pth", "unet")


@pytest.mark.parametrize(("name", "edge", "arch", "downsample"), [
    ("rgb2normal_consistency.pth", "rgb->normal", "unet", 6),
    ("rgb2depth_baseline.pth", "rgb->depth_zbuffer", "unet", 6),
    ("rgb2zdepth_baseline.pth", "rgb->depth_zbuffer", "unet", 6),
    ("rgb2reshading_consistency.pth", "rgb->reshading", "unet_reshade", 5),
    ("normal2curvature.pth", "normal->principal_curvature", "dense1by1", 0),
    ("normal2zdepth_zbuffer.pth", "normal->depth_zbuffer", "unet_depth", 0),
    ("normal2edges2d.pth", "normal->edge_texture", "unet", 4),
    ("normal2keypoints2d_new.pth", "normal->keypoints2d", "unet", 5),
    ("keypoints2d2normal_new.pth", "keypoints2d->normal", "unet", 5),
    ("depth_zbuffer2sobel_edges.pth", "depth_zbuffer->edge_texture", "unet", 4),
    ("sobel_edges2depth_zbuffer.pth", "edge_texture->depth_zbuffer", "unet", 6),
    ("reshading2normal.pth", "reshading->normal", "unet", 4),
    ("rgb2keypoints2d_new.pth", "rgb->keypoints2d", "unet", 3),
    ("principal_curvature2normal.pth", "principal_curvature->normal", "unet_old2", 0),
    ("reshading2depth_zbuffer.pth", "reshading->depth_zbuffer", "unet_reshade", 5),
])  # fmt: skip
def test_the_file_name_table(name, edge, arch, downsample):
    assert table.identify(f"/models/{name}") == table.Identity(edge, arch, downsample)


def test_a_name_outside_the_table_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"weights\.pth: the file name names no edge.*--edge"):
        table.identify("weights.pth")


def test_the_command_refuses_a_file_that_is_no_checkpoint(tmp_path):
    (tmp_path / "rgb2normal_baseline.pth").write_text("not a checkpoint")
    result = subprocess.run(
        [sys.executable, "-m", "xtc_jax.convert", str(tmp_path / "rgb2normal_baseline.pth"),
         "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "rgb2normal_baseline.pth: not a PyTorch .pth file" in result.stderr


# ---------------------------------------------------------------- files made by torch itself


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _original_state(torch, arch: str, kwargs: dict, in_channels: int, seed: int = 0):
    """A torch twin with random weights and its state_dict under the original's key names."""
    from xtc_jax.bench.torch_unet import build_torch, load_flax_params

    params = random_params(build(arch, **kwargs), 64, in_channels, np.random.default_rng(seed))
    net = build_torch(arch, in_channels, **kwargs)
    load_flax_params(net, params)
    net.eval()
    # The twin's modules carry the Flax names (down_blocks_0); the original's ModuleLists
    # number them (down_blocks.0).
    state = {re.sub(r"([a-z]+)_(\d+)\.", r"\1.\2.", k): v for k, v in net.state_dict().items()}
    return net, state


def _assert_same_function(torch, net, export: Path, in_channels: int) -> None:
    converted = xtc_jax.load_network(str(export))
    x = np.random.default_rng(1).uniform(size=(2, 64, 64, in_channels)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    got = converted(x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize(("name", "arch", "kwargs", "in_channels"), [
    ("normal2curvature.pth", "dense1by1", {}, 3),
    ("rgb2keypoints2d_new.pth", "unet", {"downsample": 3, "out_channels": 1}, 3),
])  # fmt: skip
@pytest.mark.parametrize("layout", ["plain", "prefixed", "wrapped"])
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_converted_files_compute_what_torch_computes(tmp_path, torch, name, arch, kwargs,
                                                     in_channels, layout, zip_format):  # fmt: skip
    from xtc_jax.convert.command import convert_file

    net, state = _original_state(torch, arch, kwargs, in_channels)
    if layout != "plain":
        state = {f"parallel_apply.module.{k}": v for k, v in state.items()}
    if layout == "wrapped":
        state = {"state_dict": state, "optimizer": {"state": {}, "param_groups": []}}
    torch.save(state, tmp_path / name, _use_new_zipfile_serialization=zip_format)
    written = convert_file(str(tmp_path / name), str(tmp_path / "out"), log=lambda _: None)
    (export,) = written
    assert Path(export) == tmp_path / "out" / name.removesuffix(".pth")
    _assert_same_function(torch, net, Path(export), in_channels)


def test_reshading_to_depth_is_the_originals_one_channel_unet_reshade(tmp_path, torch):
    """The original's UNetReshade(out_channels=1) gives 3 identical channels; depth has one."""
    from xtc_jax.convert.command import convert_file

    net, state = _original_state(torch, "unet_reshade", {"downsample": 3, "out_channels": 1}, 3)
    torch.save(state, tmp_path / "reshading2depth_zbuffer.pth",
               _use_new_zipfile_serialization=False)  # fmt: skip
    (export,) = convert_file(str(tmp_path / "reshading2depth_zbuffer.pth"),
                             str(tmp_path / "out"), downsample=3, log=lambda _: None)
    converted = xtc_jax.load_network(export)
    x = np.random.default_rng(1).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    assert want.shape[-1] == 3 and (converted.src, converted.dst) == ("reshading", "depth_zbuffer")
    got = converted(x)
    assert got.shape == (2, 64, 64, 1)
    assert np.abs(got - want[..., :1]).max() <= 1e-4 * np.abs(want).max()


def test_a_training_graph_becomes_one_export_per_edge(tmp_path, torch):
    from xtc_jax.convert.command import convert_file

    curvature, curvature_state = _original_state(torch, "dense1by1", {}, 3, seed=2)
    keypoints, keypoints_state = _original_state(
        torch, "unet", {"downsample": 3, "out_channels": 1}, 3, seed=3
    )
    graph = {"('normal', 'principal_curvature')": {f"model.{k}": v for k, v in
                                                   curvature_state.items()},
             "('rgb', 'keypoints2d')": {f"model.parallel_apply.module.{k}": v
                                        for k, v in keypoints_state.items()}}  # fmt: skip
    torch.save(graph, tmp_path / "graph.pth")
    written = convert_file(str(tmp_path / "graph.pth"), str(tmp_path / "out"), log=lambda _: None)
    assert sorted(Path(p).name for p in written) == ["graph_normal__principal_curvature",
                                                     "graph_rgb__keypoints2d"]  # fmt: skip
    _assert_same_function(torch, curvature, tmp_path / "out" / "graph_normal__principal_curvature",
                          3)  # fmt: skip
    _assert_same_function(torch, keypoints, tmp_path / "out" / "graph_rgb__keypoints2d", 3)


def test_a_renamed_file_converts_with_edge_and_arch(tmp_path, torch):
    net, state = _original_state(torch, "unet_reshade", {"downsample": 2}, 3)
    torch.save(state, tmp_path / "my_model.pth")
    command = [sys.executable, "-m", "xtc_jax.convert", str(tmp_path / "my_model.pth"),
               "--out", str(tmp_path / "out")]  # fmt: skip
    plain = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and "names no edge" in plain.stderr, plain.stderr
    named = subprocess.run([*command, "--edge=rgb->reshading", "--arch=unet_reshade",
                            "--downsample=2"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert named.returncode == 0, named.stderr
    _assert_same_function(torch, net, tmp_path / "out" / "my_model", 3)
    wrong = subprocess.run([*command, "--edge=rgb->reshading", "--arch=unet_reshade",
                            "--downsample=3"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert wrong.returncode == 2 and "lacks 'down_blocks.2" in wrong.stderr, wrong.stderr


def test_an_export_goes_back_to_the_originals_keys_without_torch(tmp_path):
    from xtc_jax.convert.command import export_to_torch
    from xtc_jax.convert.pth import read_pth
    from xtc_jax.infra.export import export_model

    params = random_params(build("dense1by1", width=0.25), 8, 3, np.random.default_rng(4))
    export_model(tmp_path / "export", params, {"arch": "dense1by1", "width": 0.25})
    export_to_torch(str(tmp_path / "export"), str(tmp_path / "back.pth"), log=lambda _: None)
    state = read_pth(tmp_path / "back.pth")
    assert list(state)[:2] == ["decoder.0.bn.bias", "decoder.0.bn.weight"]
    jax.tree.map(np.testing.assert_array_equal, names.to_flax(state),
                 jax.tree.map(np.asarray, params))  # fmt: skip


def test_pth_to_export_to_pth_reproduces_every_tensor(tmp_path, torch):
    from xtc_jax.convert.command import convert_file

    net, state = _original_state(torch, "unet", {"downsample": 3, "out_channels": 1}, 3, seed=5)
    torch.save(state, tmp_path / "rgb2keypoints2d_new.pth", _use_new_zipfile_serialization=False)
    convert_file(str(tmp_path / "rgb2keypoints2d_new.pth"), str(tmp_path / "out"),
                 log=lambda _: None)  # fmt: skip
    back = tmp_path / "back.pth"
    result = subprocess.run(
        [sys.executable, "-m", "xtc_jax.convert", "--to_torch",
         str(tmp_path / "out" / "rgb2keypoints2d_new"), str(back)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    loaded = torch.load(back, weights_only=True)  # torch's safe loader reads it
    assert sorted(loaded) == sorted(state)  # the same keys (in Flax's sorted order)
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor), key
    net.load_state_dict({re.sub(r"([a-z]+)\.(\d+)\.", r"\1_\2.", k): v
                         for k, v in loaded.items()})  # the twin takes it back, strictly


def test_a_models_dir_converts_every_known_file_and_writes_an_index(tmp_path, torch):
    import json

    models = tmp_path / "models"
    models.mkdir()
    net, state = _original_state(torch, "dense1by1", {}, 3, seed=6)
    torch.save(state, models / "normal2curvature.pth")
    (models / "weights.pth").write_bytes(b"")  # a name outside the table
    (models / "README.txt").write_text("not a checkpoint")
    result = subprocess.run(
        [sys.executable, "-m", "xtc_jax.convert", "--models_dir", str(models),
         "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["converted"]["normal2curvature.pth"] == {
        "file": str(models / "normal2curvature.pth"), "edge": "normal->principal_curvature",
        "arch": "dense1by1", "downsample": 0, "export": str(tmp_path / "out" / "normal2curvature"),
    }  # fmt: skip
    assert "names no edge" in index["skipped"]["weights.pth"]
    _assert_same_function(torch, net, tmp_path / "out" / "normal2curvature", 3)


def test_unet_old2_has_the_originals_parameter_count_and_keys():
    from xtc_jax.models import count_params

    shapes = param_shapes(build("unet_old2"), 64, 3)
    assert count_params(shapes) == 75_532_217  # xtconsistency.md §2.3
    keys = names.to_torch(jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes))
    assert {"initial.0.bn.weight", "initial.1.conv.weight", "down_block1.conv1.weight",
            "down_block7.bn3.bias", "up_block6.conv3.weight", "last_conv2.bias"} <= set(keys)
    assert keys["down_block1.conv1.weight"].shape == (16, 16, 3, 3)


@pytest.mark.slow
def test_a_full_size_unet_old2_file_computes_what_torch_computes(tmp_path, torch):
    """principal_curvature2normal.pth at its real size (75.5 M parameters, ~300 MB)."""
    from xtc_jax.convert.command import convert_file

    net, state = _original_state(torch, "unet_old2", {}, 3, seed=7)
    torch.save(state, tmp_path / "principal_curvature2normal.pth")
    written = convert_file(str(tmp_path / "principal_curvature2normal.pth"),
                           str(tmp_path / "out"), log=lambda _: None)  # fmt: skip
    _assert_same_function(torch, net, Path(next(iter(written))), 3)
