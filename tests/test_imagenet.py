"""The ImageNet perceptual loss: a converted ResNet export switches on a frozen, always-on term."""

from __future__ import annotations

import importlib

import jax
import numpy as np
import pytest
from model_helpers import random_params
from test_train import _setup, _small_config

from xtc_jax.consistency.imagenet import add_imagenet_term
from xtc_jax.consistency.plan import make_plan
from xtc_jax.errors import ConfigError
from xtc_jax.infra.export import export_model, load_exported
from xtc_jax.losses import masked
from xtc_jax.models import build


@pytest.fixture(scope="module")
def resnet_export(tmp_path_factory):
    """A narrow ResNet-18 export, as `python -m xtc_jax.convert` writes one."""
    directory = tmp_path_factory.mktemp("imagenet") / "resnet18"
    params = random_params(build("resnet", depth=18, width=0.125), 32, 3,
                           np.random.default_rng(0))  # fmt: skip
    export_model(directory, params, {"arch": "resnet", "depth": 18, "width": 0.125,
                                     "edge": "rgb->imagenet", "src": "rgb", "dst": "imagenet",
                                     "resolution": 256})  # fmt: skip
    return directory


@pytest.mark.parametrize("name", ["normal", "depth", "reshading"])
def test_the_paper_configs_have_the_switch_off_by_default(name):
    config = importlib.import_module(f"configs.{name}").get_config("cpu")
    assert config.imagenet_weights == ""
    assert add_imagenet_term(config) is config  # nothing added
    assert "imagenet" not in make_plan(config).always


def test_the_weights_add_a_frozen_term_that_every_step_optimises(resnet_export):
    config = _small_config()
    config.imagenet_weights = str(resnet_export)
    config.imagenet_weight = 0.5
    config = add_imagenet_term(config)
    assert config.losses.percep_imagenet.weight == 0.5
    plan = make_plan(config)
    assert plan.always == ("imagenet",) and "imagenet" not in plan.perceptual
    assert "normal->imagenet" in plan.frozen and "normal->imagenet" not in plan.trainable
    assert config.networks["normal->imagenet"].checkpoint == str(resnet_export)
    assert list(config.paths.imagenet_of_n_x) == ["rgb", "normal", "imagenet"]

    step, state, frozen, batch = _setup(config, ("principal_curvature",))
    frozen["normal->imagenet"] = load_exported(resnet_export)[0]  # as frozen.load reads it
    before = jax.tree.map(np.array, frozen["normal->imagenet"])
    state, metrics = jax.jit(step)(state, frozen, batch)
    weights = {"mae": 1.0, "percep_principal_curvature": 1.0, "percep_imagenet": 0.5}
    total = sum(w * float(metrics[f"loss/{t}"]) for t, w in weights.items())
    assert float(metrics["loss/total"]) == pytest.approx(total, rel=1e-6)
    assert "loss/direct_imagenet" not in metrics  # no ground truth, no win-rate
    jax.tree.map(np.testing.assert_array_equal, before, frozen["normal->imagenet"])

    # The term is the unmasked L1 of the feature maps of n(x) and y, by hand:
    params = {**frozen, **state["params"]}
    values = plan.graph.evaluate(params, batch, {"a": plan.paths["imagenet_of_n_x"],
                                                 "b": plan.paths["imagenet_of_y"]})
    assert values["a"].shape == (4, 1, 1, 64)  # layer4 of a width-1/8 ResNet-18 at 16 px
    _, after = jax.jit(step)(state, frozen, batch)
    expected = np.abs(np.asarray(values["a"]) - np.asarray(values["b"])).mean()
    assert float(after["loss/percep_imagenet"]) == pytest.approx(float(expected), rel=1e-5)


def test_the_resnet_of_one_channel_targets_repeats_the_channel(resnet_export):
    module = build("resnet", depth=18, width=0.125)
    params = random_params(module, 32, 3, np.random.default_rng(1))
    depth = np.random.default_rng(2).uniform(size=(2, 32, 32, 1)).astype(np.float32)
    one = module.apply({"params": params}, depth)
    three = module.apply({"params": params}, np.repeat(depth, 3, axis=-1))
    np.testing.assert_array_equal(np.asarray(one), np.asarray(three))
    assert masked.loss_fn("l1")(one, three, "imagenet") == 0.0


def test_wrong_weights_are_one_clear_error(tmp_path, resnet_export):
    config = _small_config()
    config.imagenet_weights = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"not an export folder.*python -m xtc_jax\.convert"):
        add_imagenet_term(config)
    unet = tmp_path / "unet"
    export_model(unet, random_params(build("unet", downsample=1, width=0.25), 8, 3,
                                     np.random.default_rng(0)),
                 {"arch": "unet", "downsample": 1, "width": 0.25})  # fmt: skip
    config.imagenet_weights = str(unet)
    with pytest.raises(ConfigError, match=r"holds a 'unet' network, not an ImageNet ResNet"):
        add_imagenet_term(config)
    config = _small_config()
    config.data.domains = [*config.data.domains, "imagenet"]
    with pytest.raises(ConfigError, match=r"data\.domains lists 'imagenet'.*remove it"):
        make_plan(config)
