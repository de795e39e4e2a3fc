"""The multi-task networks: parameter counts of the reference table, the aligned upsampling and
the whole network against a PyTorch twin of the original, and their errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtc_jax.models.registry import count_params
from xtc_jax.models.resize import upsample_bilinear_2x_aligned
from xtc_jax.models.unet import ModelError
from xtc_jax.models.xtask import XTaskNet


def _params(model: XTaskNet, size=(64, 64)) -> dict:
    shapes = jax.eval_shape(lambda r: model.init(r, jnp.zeros((1, *size, 3))), jax.random.key(0))
    return shapes["params"]


def test_resnet34_seven_classes_has_the_reference_31_55_million_parameters():
    counts = {k: count_params(v) for k, v in _params(XTaskNet(num_classes=7)).items()}
    assert counts["encoder"] == 21_284_672  # torchvision resnet34 without fc
    assert counts["seg_decoder"] + counts["depth_decoder"] == 6_500_608
    assert counts["s2d"] + counts["d2s"] == 3_768_064
    assert sum(counts.values()) == 31_553_344  # the table's 31.55 M


@pytest.mark.parametrize(
    "fields,millions",
    [
        (dict(num_classes=13), 31.56),
        (dict(num_classes=19), 31.56),
        (dict(num_classes=7, encoder_depth=18), 21.45),
        (dict(num_classes=7, encoder_depth=50), 40.41),
    ],
)
def test_totals_of_the_reference_table(fields, millions):
    assert round(count_params(_params(XTaskNet(**fields))) / 1e6, 2) == millions


@pytest.mark.parametrize("option,millions", [("transfer_batch_norm", 3.77),
                                             ("transfer_wider", 15.06)])  # fmt: skip
def test_transfer_net_options_of_the_reference_table(option, millions):
    params = _params(XTaskNet(num_classes=7, **{option: True}))
    assert round((count_params(params["s2d"]) + count_params(params["d2s"])) / 1e6, 2) == millions


def test_aligned_upsampling_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, 5, 3, 4)).astype(np.float32)
    ours = np.asarray(upsample_bilinear_2x_aligned(jnp.asarray(x)))
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), scale_factor=2,
                                          mode="bilinear", align_corners=True)  # fmt: skip
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    assert ours.shape == (2, 10, 6, 4)


def test_network_matches_a_pytorch_twin_of_the_original_on_random_weights():
    pytest.importorskip("torch")
    import torch

    from xtc_jax.bench.torch_resnet import randomize
    from xtc_jax.bench.torch_xtask import TorchXTaskNet, to_flax_variables

    net = randomize(TorchXTaskNet(num_classes=5, encoder_depth=18, mid_features=16,
                                  transfer_batch_norm=True), seed=3)  # fmt: skip
    model = XTaskNet(num_classes=5, encoder_depth=18, mid_features=16, transfer_batch_norm=True)
    x = np.random.default_rng(1).random((2, 64, 96, 3), np.float32)
    out = model.apply(to_flax_variables(net), jnp.asarray(x))
    with torch.no_grad():
        ref = net(torch.from_numpy(x).permute(0, 3, 1, 2))
    assert set(out) == set(ref) == {"seg", "depth", "tseg", "tdepth"}
    for key, value in out.items():
        expected = ref[key].permute(0, 2, 3, 1).numpy()
        scale = np.abs(expected).max()
        np.testing.assert_allclose(np.asarray(value) / scale, expected / scale, atol=2e-5)


def test_direct_only_skips_the_transfer_nets_and_single_task_has_one_decoder():
    x = jnp.zeros((1, 32, 32, 3))
    model = XTaskNet(num_classes=3, encoder_depth=18, encoder_width=0.125, mid_features=8)
    variables = model.init(jax.random.key(0), x)
    assert set(model.apply(variables, x, direct_only=True)) == {"seg", "depth"}
    single = XTaskNet(tasks=("depth",), transfer=False, encoder_depth=18, encoder_width=0.125,
                      mid_features=8)  # fmt: skip
    out = single.apply(single.init(jax.random.key(0), x), x)
    assert set(out) == {"depth"} and out["depth"].shape == (1, 32, 32, 1)


def test_batch_statistics_move_in_training_and_stay_at_evaluation():
    model = XTaskNet(num_classes=3, encoder_depth=18, encoder_width=0.125, mid_features=8)
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    before = variables["batch_stats"]["encoder"]["bn1"]["mean"]
    after = updates["batch_stats"]["encoder"]["bn1"]["mean"]
    assert not np.allclose(before, after)
    same = jax.tree.map(lambda a, b: a.shape == b.shape, variables["batch_stats"],
                        updates["batch_stats"])  # fmt: skip
    assert all(jax.tree.leaves(same))


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(tasks=("seg",), transfer=True), "needs both the seg and depth"),
        (dict(tasks=("seg", "edges")), "tasks must be distinct names"),
        (dict(encoder_depth=20), "encoder_depth must be one of"),
    ],
)
def test_bad_model_fields_are_one_clear_error(fields, message):
    with pytest.raises(ModelError, match=message):
        XTaskNet(**fields)


def test_input_size_not_a_multiple_of_32_is_one_clear_error():
    model = XTaskNet(num_classes=3, encoder_depth=18, encoder_width=0.125, mid_features=8)
    with pytest.raises(ModelError, match="multiples of 32"):
        model.init(jax.random.key(0), jnp.zeros((1, 48, 64, 3)))


def test_a_converted_torchvision_encoder_loads_into_the_trained_batch_norm_layout(tmp_path):
    from xtc_jax.errors import ConfigError
    from xtc_jax.infra import export as export_lib
    from xtc_jax.models.resnet import ResNet
    from xtc_jax.mtl.model import load_pretrained_encoder

    x = jax.random.uniform(jax.random.key(2), (1, 64, 64, 3))
    frozen = ResNet(18, 0.125)  # the converter's layout: BN statistics among the params
    params = frozen.init(jax.random.key(0), x)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: (rng.uniform(0.5, 1.5, v.shape) if path[-1].key == "var"
                         else rng.normal(0, 0.1, v.shape) if path[-1].key == "mean"
                         else v).astype(np.float32), params)  # fmt: skip
    export_lib.export_model(tmp_path / "r18", params, {"arch": "resnet", "depth": 18})
    model = XTaskNet(num_classes=3, encoder_depth=18, encoder_width=0.125, mid_features=8)
    variables = model.init(jax.random.key(1), x)
    loaded = load_pretrained_encoder(variables, str(tmp_path / "r18"), 18)
    trained = ResNet(18, 0.125, norm="batch")
    ours = trained.apply({"params": loaded["params"]["encoder"],
                          "batch_stats": loaded["batch_stats"]["encoder"]}, x)  # fmt: skip
    np.testing.assert_allclose(ours, frozen.apply({"params": params}, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"model.encoder_depth=34; convert resnet34"):
        load_pretrained_encoder(variables, str(tmp_path / "r18"), 34)
    with pytest.raises(ConfigError, match="is not an exported model"):
        load_pretrained_encoder(variables, str(tmp_path / "nothing"), 18)
