"""torchvision's ResNet in Flax: shapes, parameter counts, conversion and parity with torch."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xtc_jax
from xtc_jax.convert import names
from xtc_jax.errors import ConfigError
from xtc_jax.models import build, count_params, param_shapes
from xtc_jax.models.resnet import feature_channels

#: torchvision's parameter counts without the classifier (fc: 512*1000+1000, 2048*1000+1000).
TORCHVISION_TRUNK = {18: 11_689_512 - 513_000, 50: 25_557_032 - 2_049_000}


@pytest.mark.parametrize("depth", [18, 50])
def test_parameter_count_is_torchvisions_trunk_plus_running_statistics(depth):
    shapes = param_shapes(build("resnet", depth=depth), 64, 3)
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    statistics = sum(int(np.prod(leaf.shape)) for path, leaf in leaves
                     if path[-1].key in ("mean", "var"))  # fmt: skip
    assert count_params(shapes) - statistics == TORCHVISION_TRUNK[depth]
    keys = names.to_torch(jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes))
    assert {"conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked",
            "layer4.1.bn2.running_var"} <= set(keys)  # fmt: skip
    if depth == 50:
        assert keys["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
        assert keys["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # v1.5: stride here


def test_features_are_layer4_at_a_32nd_of_the_input():
    module = build("resnet", depth=50, width=0.125)
    params = param_shapes(module, 64, 3)
    x = jnp.zeros((2, 64, 96, 1))  # one channel is repeated to three
    y = jax.eval_shape(lambda p: module.apply({"params": p}, x), params)
    assert y.shape == (2, 2, 3, feature_channels(50, 0.125)) and y.dtype == jnp.float32
    assert feature_channels(50) == 2048 and feature_channels(18) == 512
    with pytest.raises(ConfigError, match="depth must be one of"):
        build("resnet", depth=20)


# ---------------------------------------------------------------- against torch


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _torch_net(torch, depth: int, width: float, seed: int):
    from xtc_jax.bench.torch_resnet import TorchResNet, randomize

    return randomize(TorchResNet(depth, width), seed)


def _torch_features(torch, net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)


def _save_torchvision_file(torch, net, path: Path, zip_format: bool = True) -> dict:
    """The twin's state_dict plus a classifier, as torchvision's resnetN-*.pth holds."""
    state = dict(net.state_dict())
    channels = state["layer4.1.bn1.weight"].shape[0] * (4 if "layer4.0.conv3.weight" in state
                                                        else 1)  # fmt: skip
    state["fc.weight"] = torch.randn(10, channels)
    state["fc.bias"] = torch.randn(10)
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    return state


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize(("depth", "zip_format"), [(18, True), (50, False)])
def test_a_converted_torchvision_file_computes_what_torch_computes(tmp_path, torch, depth,
                                                                   zip_format):  # fmt: skip
    from xtc_jax.convert.command import convert_file

    net = _torch_net(torch, depth, 1.0, seed=depth)
    path = tmp_path / f"resnet{depth}-0676ba61.pth"
    _save_torchvision_file(torch, net, path, zip_format)
    (export,) = convert_file(str(path), str(tmp_path / "out"), log=lambda _: None)
    converted = xtc_jax.load_network(export)
    assert (converted.src, converted.dst) == ("rgb", "imagenet")
    x = np.random.default_rng(1).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    got, want = converted(x), _torch_features(torch, net, x)
    assert got.shape == want.shape == (2, 2, 2, feature_channels(depth))
    assert _relative_error(got, want) <= 1e-4


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_narrow_resnets_match_the_torch_twin_on_one_and_three_channels(torch, depth):
    net = _torch_net(torch, depth, 0.125, seed=depth + 1)
    params = names.to_flax({k: v.numpy() for k, v in net.state_dict().items()})
    module = build("resnet", depth=depth, width=0.125)
    expected = param_shapes(module, 64, 3)
    names.check_shapes(params, expected, "twin", f"resnet{depth}")
    for channels in (3, 1):
        x = np.random.default_rng(channels).uniform(size=(2, 64, 64, channels))
        x = x.astype(np.float32)
        got = np.asarray(module.apply({"params": params}, x))
        assert _relative_error(got, _torch_features(torch, net, x)) <= 1e-4


def test_the_twin_is_torchvisions_network(torch):
    """Where torchvision imports, the twin's weights load into it strictly and agree."""
    models = pytest.importorskip("torchvision.models")
    reference = models.resnet50().eval()
    net = _torch_net(torch, 50, 1.0, seed=3)
    state = dict(net.state_dict(), **{k: v for k, v in reference.state_dict().items()
                                      if k.startswith("fc.")})  # fmt: skip
    reference.load_state_dict(state)  # strict: the same keys and shapes
    trunk = torch.nn.Sequential(*list(reference.children())[:-2])
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype(np.float32)
    assert _relative_error(_torch_features(torch, trunk, x), _torch_features(torch, net, x)) < 1e-6


def test_a_resnet_goes_back_to_torchvisions_keys_exactly(tmp_path, torch):
    from xtc_jax.convert.command import convert_file, export_to_torch

    net = _torch_net(torch, 18, 1.0, seed=9)
    path = tmp_path / "resnet18-f37072fd.pth"
    state = _save_torchvision_file(torch, net, path)
    (export,) = convert_file(str(path), str(tmp_path / "out"), log=lambda _: None)
    export_to_torch(export, str(tmp_path / "back.pth"), log=lambda _: None)
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert sorted(back) == sorted(trunk)
    for key, tensor in trunk.items():  # running statistics and batch counts included
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key
    net.load_state_dict(back)  # strictly
