"""Networks: exact parameter counts, shapes, activations, and a NumPy re-derivation of the
PyTorch forward pass (conv pad 1, GroupNorm eps 1e-5, pool after convs, bilinear
align_corners=False, concat [upsampled, skip]). Big models are only shape-evaluated."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import random_params

from xtc_jax import models
from xtc_jax.errors import ConfigError
from xtc_jax.models import ModelError, build, count_params, param_shapes
from xtc_jax.models.dense1by1 import Dense1by1Net
from xtc_jax.models.registry import init_params
from xtc_jax.models.unet import (
    GroupNorm,
    UNet,
    UNetDepth,
    UNetReshade,
    UpBlock,
    upsample_bilinear_2x,
)
from xtc_jax.models.unet_old import UNetOld2

KEY = jax.random.key(0)


def _params(model, resolution, in_channels=3, seed=0):
    """Random params drawn on the host from the traced shapes (see `model_helpers`), the same
    for the same model and seed whatever ran before (no shared generator)."""
    return random_params(model, resolution, in_channels, np.random.default_rng(seed))


def _apply(model, params, *args, **kwargs):
    """Jitted apply: eager Flax dispatches op by op, which is slow on CPU."""
    return jax.jit(lambda p, *a: model.apply({"params": p}, *a, **kwargs))(params, *args)


def _rand(shape, seed=1):
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


# ---------------------------------------------------------------- NumPy reference (float64)


def np_conv(x, p):
    k = np.asarray(p["kernel"], np.float64)
    pad = k.shape[0] // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = x.shape[1:3]
    out = sum(
        np.einsum("nhwc,co->nhwo", xp[:, dy : dy + h, dx : dx + w], k[dy, dx])
        for dy in range(k.shape[0])
        for dx in range(k.shape[1])
    )
    return out + np.asarray(p["bias"], np.float64)


def np_gn(x, p, groups=8, eps=1e-5):
    n, h, w, c = x.shape
    g = x.reshape(n, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    g = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return g * np.asarray(p["scale"], np.float64) + np.asarray(p["bias"], np.float64)


def torch_upsample_1d(x, axis):
    """PyTorch's bilinear align_corners=False source-index formula, one axis, scale 2."""
    n = x.shape[axis]
    src = np.maximum((np.arange(2 * n) + 0.5) / 2 - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = (src - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return (1 - lam) * np.take(x, i0, axis=axis) + lam * np.take(x, i1, axis=axis)


def np_upsample(x):
    return torch_upsample_1d(torch_upsample_1d(x, 1), 2)


def np_triple(x, p, conv="conv"):
    for i in (1, 2, 3):
        x = np.maximum(np_gn(np_conv(x, p[f"{conv}{i}"]), p[f"bn{i}"]), 0)
    return x


def np_unet(p, x, ds):
    x = np_triple(x, p["down1"])
    skips = [x]
    for i in range(ds):
        x = np_triple(x, p[f"down_blocks_{i}"])
        n, h, w, c = x.shape
        x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        skips.append(x)
    x = np_triple(x, p, conv="mid_conv")  # mid_conv{i} with bn{i} at the top level
    for i in reversed(range(ds)):
        x = np_triple(np.concatenate([np_upsample(x), skips[i]], axis=-1), p[f"up_blocks_{i}"])
    x = np.maximum(np_gn(np_conv(x, p["last_conv1"]), p["last_bn"]), 0)
    return np.maximum(np_conv(x, p["last_conv2"]), 0)


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    ("arch", "kwargs", "in_ch", "expected"),
    [
        ("unet", {"downsample": 6}, 3, 75_529_971),
        ("unet", {"downsample": 5}, 3, 18_888_435),
        ("unet", {"downsample": 4}, 3, 4_723_443),
        ("unet", {"downsample": 3, "out_channels": 1}, 3, 1_179_857),
        ("unet_reshade", {"downsample": 6}, 3, 75_529_971),
        ("unet_reshade", {"downsample": 5}, 3, 18_888_435),
        ("unet_depth", {}, 3, 75_529_937),
        ("dense1by1", {}, 3, 342_345),
    ],
)
def test_parameter_counts_match_the_original(arch, kwargs, in_ch, expected):
    shapes = param_shapes(build(arch, **kwargs), 256, in_ch)
    assert count_params(shapes) == expected
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(shapes)}
    assert dtypes == {jnp.dtype(jnp.float32)}


def test_state_dict_layout_and_concat_kernel_split():
    p = param_shapes(build("unet", downsample=6), 256, 3)
    assert len(jax.tree_util.tree_leaves(p)) == 174  # as many tensors as the state_dict
    p5 = param_shapes(build("unet", downsample=5), 256, 3)
    assert len(jax.tree_util.tree_leaves(p5)) == 150
    for i in range(6):
        c = 16 * 2**i
        assert p[f"up_blocks_{i}"]["conv1"]["kernel"].shape == (3, 3, 2 * c + c, c)
        assert p[f"down_blocks_{i}"]["conv1"]["kernel"].shape == (3, 3, c, 2 * c)
    assert p["mid_conv1"]["kernel"].shape == (3, 3, 1024, 1024)
    assert p["last_conv2"]["kernel"].shape == (1, 1, 16, 3)


def test_width_rounds_up_to_multiples_of_eight():
    p = param_shapes(build("unet", downsample=3, width=0.25), 32, 3)
    assert p["down1"]["conv1"]["kernel"].shape == (3, 3, 3, 8)  # 4 -> 8 for GroupNorm(8)
    assert p["down_blocks_0"]["conv1"]["kernel"].shape == (3, 3, 8, 8)
    assert p["down_blocks_2"]["conv1"]["kernel"].shape == (3, 3, 16, 32)
    assert p["mid_conv1"]["kernel"].shape == (3, 3, 32, 32)


# ---------------------------------------------------------------- forward behaviour


@pytest.mark.parametrize("ds", [1, 2, 3, 4, 5, 6])
def test_output_shapes_for_every_downsample(ds):
    model = build("unet", downsample=ds, out_channels=2, width=0.25)
    params = param_shapes(model, 64, 3)
    out = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params, _rand((2, 64, 128, 3)))
    assert out.shape == (2, 64, 128, 2)
    assert out.dtype == jnp.float32


@pytest.mark.parametrize("ds", [1, 3])
def test_small_forward_is_relu_output(ds):
    model = build("unet", downsample=ds, width=0.25)
    params = _params(model, 32)
    y = np.asarray(_apply(model, params, _rand((2, 32, 32, 3))))
    assert y.shape == (2, 32, 32, 3)
    assert (y >= 0).all() and (y > 0).any()  # ReLU, not clamped above
    assert np.isfinite(y).all()


def test_unet_matches_numpy_reference_of_pytorch_forward():
    model = build("unet", downsample=2, out_channels=2, width=0.25)
    params = _params(model, 16)
    x = _rand((2, 16, 12, 3))
    got = np.asarray(_apply(model, params, x))
    ref = np_unet(params, np.asarray(x, np.float64), ds=2)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert (got >= 0).all() and (got > 0).any()


def test_every_group_norm_is_8_groups_eps_1e5():
    seen = []

    def spy(next_fun, args, kwargs, context):
        if isinstance(context.module, GroupNorm) and context.method_name == "__call__":
            seen.append((context.module.groups, context.module.epsilon))
        return next_fun(*args, **kwargs)

    model = build("unet", downsample=2, width=0.25)
    with nn.intercept_methods(spy):
        jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 8, 8, 3))))
    assert len(seen) == 3 + 2 * 3 + 3 + 2 * 3 + 1
    assert set(seen) == {(8, 1e-5)}


def test_group_norm_statistics_are_accurate_in_float32():
    """Against float64 on a large group with a large mean (where one long float32 sum drifts)."""
    x = (5.0 + 3.0 * np.random.default_rng(0).uniform(size=(1, 64, 64, 96))).astype(np.float32)
    norm = GroupNorm(groups=8)
    scale = np.random.default_rng(1).uniform(0.5, 1.5, 96).astype(np.float32)
    bias = np.random.default_rng(2).normal(size=96).astype(np.float32)
    got = np.asarray(norm.apply({"params": {"scale": scale, "bias": bias}}, x))
    grouped = x.astype(np.float64).reshape(1, 64, 64, 8, 12)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = ((grouped - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
    want = ((grouped - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * scale + bias
    assert np.abs(got - want).max() < 5e-6


def test_concat_order_is_upsampled_then_skip():
    block = UpBlock(8)
    skip, x = _rand((1, 8, 8, 8), 2), _rand((1, 4, 4, 16), 3)
    shapes = jax.eval_shape(block.init, KEY, skip, x)["params"]
    rng = np.random.default_rng(3)
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), shapes)
    assert params["conv1"]["kernel"].shape == (3, 3, 16 + 8, 8)
    kernel = params["conv1"]["kernel"]
    see_up = {**params, "conv1": {**params["conv1"], "kernel": kernel.at[:, :, 16:].set(0)}}
    see_skip = {**params, "conv1": {**params["conv1"], "kernel": kernel.at[:, :, :16].set(0)}}
    other_skip, other_x = _rand((1, 8, 8, 8), 4), _rand((1, 4, 4, 16), 5)

    def run(p, s, v):
        return np.asarray(_apply(block, p, s, v))

    np.testing.assert_array_equal(run(see_up, skip, x), run(see_up, other_skip, x))
    np.testing.assert_array_equal(run(see_skip, skip, x), run(see_skip, skip, other_x))
    assert not np.allclose(run(see_up, skip, x), run(see_up, skip, other_x))


def test_unet_reshade_gives_three_identical_channels_in_unit_range():
    for out in (1, 3):
        reshade = build("unet_reshade", downsample=2, out_channels=out, width=0.25)
        params = _params(reshade, 16)
        x = 3.0 * _rand((2, 16, 16, 3))
        y = np.asarray(_apply(reshade, params, x))
        assert y.shape == (2, 16, 16, 3)
        assert (y >= 0).all() and (y <= 1).all()
        np.testing.assert_array_equal(y[..., 0], y[..., 1])
        np.testing.assert_array_equal(y[..., 0], y[..., 2])
        plain = build("unet", downsample=2, out_channels=out, width=0.25)
        raw = np.asarray(_apply(plain, params, x))
        np.testing.assert_allclose(y[..., 0], np.clip(raw, 0, 1).mean(-1), rtol=1e-6, atol=1e-7)


def test_unet_reshade_gives_a_one_channel_domain_one_copy():
    from xtc_jax.models.edges import edge_network

    module = edge_network("reshading->depth_zbuffer", {"arch": "unet_reshade", "downsample": 2,
                                                       "width": 0.25})  # fmt: skip
    assert (module.out_channels, module.broadcast_channels) == (1, 1)
    params = _params(module, 16)
    y = np.asarray(_apply(module, params, 3.0 * _rand((2, 16, 16, 3))))
    three = build("unet_reshade", downsample=2, out_channels=1, width=0.25)
    want = np.asarray(_apply(three, params, 3.0 * _rand((2, 16, 16, 3))))
    assert y.shape == (2, 16, 16, 1)
    np.testing.assert_array_equal(y[..., 0], want[..., 0])


def test_unet_depth_structure_and_linear_output():
    model = build("unet_depth", width=0.25)
    params = _params(model, 64)
    assert params["up_block1"]["conv1"]["kernel"].shape == (3, 3, 256 + 128, 128)
    y, state = _apply(model, params, _rand((1, 64, 64, 3)), capture_intermediates=True)
    inter = state["intermediates"]
    assert inter["down_block1"]["__call__"][0].shape[1:3] == (64, 64)  # block 1 does not pool
    assert inter["down_block7"]["__call__"][0].shape[1:3] == (2, 2)  # 5 pools, 7 does not pool
    assert inter["up_block1"]["__call__"][0].shape[1:3] == (2, 2)  # no upsampling
    assert y.shape == (1, 64, 64, 1) and y.dtype == jnp.float32
    assert float(y.min()) < 0  # no final ReLU


def test_dense1by1_matches_numpy_reference():
    model = build("dense1by1", width=0.25)
    params = _params(model, 8)
    assert params["decoder_0"]["bn"]["scale"].shape == (3,)  # GN on the *input* channels
    x = _rand((2, 8, 8, 3))
    got = np.asarray(_apply(model, params, x))
    ref = np.asarray(x, np.float64)
    p = jax.tree.map(np.asarray, params)
    for i in range(7):
        groups = 3 if i == 0 else 8
        ref = np.maximum(
            np_conv(np_gn(ref, p[f"decoder_{i}"]["bn"], groups), p[f"decoder_{i}"]["conv"]), 0
        )
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert got.shape == (2, 8, 8, 3) and (got >= 0).all()


@pytest.mark.parametrize("arch", ["unet", "unet_reshade", "unet_depth", "dense1by1"])
def test_bf16_compute_keeps_fp32_params_and_output(arch):
    kwargs = {"width": 0.25, "dtype": jnp.bfloat16}
    if arch.startswith("unet") and arch != "unet_depth":
        kwargs["downsample"] = 2
    model = build(arch, **kwargs)
    shapes = param_shapes(model, 32, 3)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(shapes)} == {jnp.dtype(jnp.float32)}
    params = _params(model, 32)
    x = _rand((1, 32, 32, 3))
    y = _apply(model, params, x)
    assert y.dtype == jnp.float32 and y.shape[:3] == (1, 32, 32)
    assert bool(jnp.isfinite(y).all())
    if arch == "unet":  # bf16 compute stays close to fp32 compute with the same params
        y32 = _apply(build(arch, **{**kwargs, "dtype": jnp.float32}), params, x)
        # Measured over param seeds 0-5: 4.3-6.6 % mean relative difference (bf16 keeps 8
        # mantissa bits); a broken cast (bf16 params, a lost layer) is near 100 %.
        assert float(jnp.mean(jnp.abs(y - y32))) < 0.15 * float(jnp.mean(jnp.abs(y32)))


# ---------------------------------------------------------------- upsampling


def test_bilinear_upsampling_matches_pytorch_align_corners_false():
    line = jnp.arange(4.0).reshape(1, 4, 1, 1)
    got = np.asarray(upsample_bilinear_2x(jnp.broadcast_to(line, (1, 4, 1, 1))))[0, :, 0, 0]
    np.testing.assert_allclose(got, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])  # edges kept
    for shape in [(2, 5, 7, 3), (1, 1, 1, 2), (1, 2, 3, 1)]:
        x = np.asarray(_rand(shape, 9), np.float64)
        got = np.asarray(upsample_bilinear_2x(jnp.asarray(x, jnp.float32)))
        np.testing.assert_allclose(got, np_upsample(x), rtol=1e-6, atol=1e-6)
        n, h, w, c = shape
        resized = jax.image.resize(jnp.asarray(x, jnp.float32), (n, 2 * h, 2 * w, c), "bilinear")
        np.testing.assert_allclose(got, np.asarray(resized), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- errors and registry


def test_indivisible_resolution_names_model_shape_and_fix():
    with pytest.raises(ValueError, match=r"UNet\(downsample=6\).*\(1, 100, 100, 3\)") as err:
        init_params(build("unet"), KEY, 100, 3)
    assert "resolution 100 is not divisible by 2^6=64; use 64, 128, 256" in str(err.value)
    with pytest.raises(ModelError, match=r"2\^5=32"):
        param_shapes(build("unet_depth"), (64, 48), 3)
    model = build("unet", downsample=3, width=0.25)
    params = param_shapes(model, 32, 3)
    x = jax.ShapeDtypeStruct((1, 3, 32, 32), jnp.float32)  # channels-first by mistake
    with pytest.raises(ValueError, match="not divisible by 2\\^3=8"):  # raised while tracing
        jax.eval_shape(jax.jit(lambda p, x: model.apply({"params": p}, x)), params, x)


def test_registry_errors_are_clear():
    expected = {
        "unet": UNet,
        "unet_reshade": UNetReshade,
        "unet_depth": UNetDepth,
        "dense1by1": Dense1by1Net,
        "unet_old2": UNetOld2,
    }
    assert {name: models.MODELS[name] for name in expected} == expected
    with pytest.raises(
        ConfigError, match=r"known archs: dense1by1, .*unet, unet_depth, unet_old2, unet_reshade"
    ):
        build("unte")
    with pytest.raises(ValueError, match="does not take downsample; its fields are"):
        build("unet_depth", downsample=6)
    with pytest.raises(ValueError, match="width must be > 0"):
        build("unet", width=0)
    with pytest.raises(ValueError, match="downsample must be in"):
        build("unet", downsample=0)
    assert isinstance(build("unet_reshade"), UNet)
    assert build("unet_reshade").downsample == 5


def test_init_params_and_count_params_on_real_arrays():
    params = init_params(build("dense1by1"), KEY, 8, 3)
    assert count_params(params) == 342_345
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(params))
