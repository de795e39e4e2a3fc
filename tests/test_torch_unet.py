"""The PyTorch benchmark twins (`xtc_jax.bench.torch_unet`) compute the Flax networks' function.

For each arch at a tiny size: the same parameter count, and, with the Flax params copied in,
the same output (NCHW and channels_last) and the same input gradient of an L1 loss. Skipped
where torch is absent. One case per arch: compiling each Flax gradient dominates the run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_helpers import random_params  # noqa: E402

from xtc_jax.bench.torch_unet import build_torch, count_params, load_flax_params  # noqa: E402
from xtc_jax.models import build, param_shapes  # noqa: E402
from xtc_jax.models import count_params as flax_count_params  # noqa: E402

# (arch, build kwargs, input channels, resolution)
CASES = [
    ("unet", {"downsample": 2, "width": 0.25, "out_channels": 2}, 1, 32),
    ("unet_reshade", {"downsample": 3, "width": 0.25, "out_channels": 1}, 3, 32),
    # 64 px, not 32: UNetDepth pools 5 times, and at 32 px its bottleneck is 1x1, where a
    # GroupNorm of one pixel makes the float32 input gradient ill-conditioned (5% off float64,
    # measured on an AMD EPYC; within 1e-4 at 64 px), so the outcome depended on the CPU.
    ("unet_depth", {"width": 0.25}, 3, 64),
    ("dense1by1", {"width": 0.5}, 3, 16),
    ("unet_old2", {"width": 0.25}, 3, 128),  # 6 poolings: a 2x2 bottleneck, as unet_depth
]


def _assert_grads_close(actual: np.ndarray, desired: np.ndarray) -> None:
    """Input gradients agree to rtol 1e-3 / atol 1e-4, except near ReLU kinks.

    A pre-activation within float32 rounding of 0 (|a| ~ 1e-7 happens at these sizes) can take
    the other side of the kink in one framework, which changes the gradient of the few inputs
    in its receptive field. So: at most 2% of the elements may differ, and the whole gradient
    must still agree to 1% in L2 norm.
    """
    close = np.isclose(actual, desired, rtol=1e-3, atol=1e-4)
    assert close.mean() >= 0.98, f"{(~close).sum()} of {close.size} gradient elements differ"
    rel = np.linalg.norm(actual - desired) / np.linalg.norm(desired)
    assert rel < 1e-2, f"relative L2 error of the input gradient {rel:.2e}"


@pytest.mark.parametrize(("arch", "kwargs", "in_channels", "resolution"), CASES)
def test_torch_twin_matches_flax(arch, kwargs, in_channels, resolution):
    model = build(arch, **kwargs)
    params = random_params(model, resolution, in_channels, np.random.default_rng(0))
    net = build_torch(arch, in_channels, **kwargs)
    load_flax_params(net, params)
    assert count_params(net) == flax_count_params(params)

    data = np.random.default_rng(1)
    x = data.uniform(size=(2, resolution, resolution, in_channels)).astype(np.float32)

    def l1(p, x_nhwc):
        y = model.apply({"params": p}, x_nhwc)
        return jnp.mean(jnp.abs(y - 0.5)), y

    (_, y_flax), g_flax = jax.jit(jax.value_and_grad(l1, argnums=1, has_aux=True))(params, x)

    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    y_torch = net(x_torch)
    torch.mean(torch.abs(y_torch - 0.5)).backward()

    y_torch_nhwc = y_torch.detach().numpy().transpose(0, 2, 3, 1)
    scale = float(np.abs(np.asarray(y_flax)).max())  # 1e-4 of the output's scale
    tolerance = max(scale, 1.0)
    np.testing.assert_allclose(y_torch_nhwc, np.asarray(y_flax), rtol=0, atol=1e-4 * tolerance)
    _assert_grads_close(x_torch.grad.numpy().transpose(0, 2, 3, 1), np.asarray(g_flax))

    # channels_last computes the same function. Looser: torch's CPU GroupNorm kernel for
    # channels_last is ~10x less accurate than its NCHW one (~1e-4 here vs ~2e-5 for NCHW).
    net_cl = net.to(memory_format=torch.channels_last)
    with torch.no_grad():
        y_cl = net_cl(x_torch.detach().to(memory_format=torch.channels_last))
    np.testing.assert_allclose(y_cl.numpy().transpose(0, 2, 3, 1), np.asarray(y_flax),
                               atol=1e-3 * tolerance)  # fmt: skip


def test_load_flax_params_rejects_a_mismatched_tree():
    """Params of another config do not fit: the error names them and nothing is copied."""
    net = build_torch("unet", 3, downsample=2, width=0.25)
    before = net.mid_conv1.weight.detach().clone()
    for kwargs, match in [
        ({"downsample": 2, "width": 0.5}, r"mid_conv1\.kernel: shape \(32, 32, 3, 3\)"),
        ({"downsample": 3, "width": 0.25}, r"down_blocks_2\.conv1\.kernel: no torch parameter"),
        ({"downsample": 1, "width": 0.25}, r"down_blocks_1\.conv1\.weight: no Flax leaf"),
    ]:
        shapes = param_shapes(build("unet", **kwargs), 32, 3)
        params = jax.tree_util.tree_map(lambda s: np.ones(s.shape, np.float32), shapes)
        with pytest.raises(ValueError, match=match):
            load_flax_params(net, params)
    assert torch.equal(net.mid_conv1.weight, before)


def test_build_torch_uses_flax_fields_and_defaults():
    """Defaults and field validation come from the Flax registry."""
    reshade = build_torch("unet_reshade", 3, width=0.25)
    assert reshade.downsample == 5  # UNetReshade's default, not UNet's 6
    assert build_torch("unet_depth", 3, width=0.25).last_conv2.out_channels == 1
    with pytest.raises(ValueError, match="does not take"):
        build_torch("unet", 3, depth=3)


def test_the_torch_sobel_matches_the_flax_edge():
    from xtc_jax.models.sobel import SobelEdges

    rgb = np.random.default_rng(0).random((2, 32, 40, 3)).astype(np.float32)
    expected = np.asarray(SobelEdges().apply({}, jnp.asarray(rgb)))
    net = build_torch("sobel", 3)
    with torch.no_grad():
        got = net(torch.from_numpy(rgb).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert got.shape == expected.shape == (2, 32, 40, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
