"""XTConsistency's UNets in Flax (NHWC): `UNet`, `UNetReshade` and `UNetDepth`.

Faithful to `modules/unet.py` and `modules/depth_nets.py` of EPFL-VILAB/XTConsistency
(reference §2.1–2.3): every conv is 3×3 / pad 1 / bias followed by GroupNorm(8, eps=1e-5) and
ReLU; down blocks pool *after* their three convs; up blocks upsample ×2 bilinearly
(``align_corners=False``), concatenate ``[upsampled, skip]`` and run three convs.

Submodule names mirror the PyTorch state_dict keys so a checkpoint converter only has to
replace ``.`` list indices by ``_`` (``down_blocks.3.conv1.weight`` ->
``params/down_blocks_3/conv1/kernel``, OIHW -> HWIO; GroupNorm ``weight`` -> ``scale``).

``width`` scales the base width 16 for small presets. Every width is rounded *up* to a multiple
of 8 so GroupNorm(8) always divides it; ``width=1.0`` gives the original networks exactly.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from xtc_jax.errors import ConfigError

BASE_WIDTH = 16
GN_GROUPS = 8
GN_EPSILON = 1e-5  # PyTorch's GroupNorm default; Flax's default is 1e-6.


class ModelError(ConfigError, ValueError):
    """A model configuration or input the network cannot accept.

    Subclasses both the project's ConfigError (it is a user error with a named fix) and
    ValueError (it is a bad value), so either can be caught.
    """


def scaled_channels(base: int, width: float) -> int:
    """``base * width`` rounded up to a multiple of 8 (at least 8), for GroupNorm(8)."""
    return max(GN_GROUPS, math.ceil(base * width / GN_GROUPS) * GN_GROUPS)


def conv(features: int, kernel: int, dtype: Any, name: str, stride: int = 1,
         bias: bool = True) -> nn.Conv:  # fmt: skip
    """Conv k×k, zero padding k//2 (pad 1 for 3×3 = SAME at stride 1), fp32 params: torch's
    Conv2d(k, stride, padding=k//2, bias)."""
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class GroupNorm(nn.Module):
    """PyTorch's GroupNorm (eps 1e-5, affine) with float32 statistics summed in stages.

    Flax's GroupNorm reduces each group (H·W·C/G values: 49,152 for a 64-channel map at
    64 px) in one float32 sum, whose rounding error grows with the count; at 64 px that
    put converted perceptual networks 1e-4 (relative) away from PyTorch, 100x further
    than PyTorch's own float32 from float64. Here the mean and the two-pass variance are
    means of means (over the channels of a group, then W, then H), each a short sum, so
    the statistics stay within a few float32 ulps. Params: ``scale`` and ``bias`` (C,).
    """

    groups: int
    epsilon: float = GN_EPSILON
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        grouped = x.astype(jnp.float32).reshape(*x.shape[:-1], self.groups, -1)
        spatial = tuple(range(1, x.ndim - 1))  # H, W: the group axis sits after them

        def mean(values: jnp.ndarray) -> jnp.ndarray:
            values = jnp.mean(values, axis=-1, keepdims=True)
            for axis in reversed(spatial):
                values = jnp.mean(values, axis=axis, keepdims=True)
            return values

        centred = grouped - mean(grouped)
        normed = centred * lax.rsqrt(mean(jnp.square(centred)) + self.epsilon)
        return (normed.reshape(x.shape) * scale + bias).astype(self.dtype)


def group_norm(groups: int, dtype: Any, name: str) -> GroupNorm:
    """PyTorch-equivalent GroupNorm: eps 1e-5, affine, two-pass variance, fp32 statistics."""
    return GroupNorm(groups=groups, dtype=dtype, name=name)


def upsample_bilinear_2x(x: jnp.ndarray) -> jnp.ndarray:
    """×2 bilinear upsampling of NHWC ``x``, exactly PyTorch's ``align_corners=False``.

    With half-pixel centres, output pixel 2i samples source i - 1/4 and 2i + 1 samples
    i + 1/4, so out[2i] = 0.25·x[i-1] + 0.75·x[i] and out[2i+1] = 0.75·x[i] + 0.25·x[i+1],
    where indices are clamped at the borders (PyTorch clamps the source coordinate at 0 and
    the upper neighbour at n-1). Written with shifts instead of ``jax.image.resize`` (which
    gives the same numbers) because it is O(n) per axis rather than a dense weight matmul.
    """
    for axis in (1, 2):
        n = x.shape[axis]
        # x[i-1] and x[i+1] with the border index clamped, built from static slices.
        prev = jnp.concatenate(
            [lax.slice_in_dim(x, 0, 1, axis=axis), lax.slice_in_dim(x, 0, n - 1, axis=axis)],
            axis=axis,
        )
        nxt = jnp.concatenate(
            [lax.slice_in_dim(x, 1, n, axis=axis), lax.slice_in_dim(x, n - 1, n, axis=axis)],
            axis=axis,
        )
        even = 0.25 * prev + 0.75 * x
        odd = 0.75 * x + 0.25 * nxt
        x = jnp.stack([even, odd], axis=axis + 1)
        shape = list(x.shape)
        shape[axis : axis + 2] = [2 * n]
        x = x.reshape(shape)
    return x


def check_resolution(
    model: str, shape: tuple[int, ...], factor_log2: int, alternative: str = "fewer downsamples"
) -> None:
    """Raise ModelError unless ``shape`` is NHWC with H and W divisible by 2**factor_log2."""
    if len(shape) != 4:
        raise ModelError(
            f"{model}: expected an NHWC batch (batch, height, width, channels), got an input "
            f"of shape {tuple(shape)}; add a batch axis with x[None] for a single image"
        )
    factor = 2**factor_log2
    height, width = shape[1], shape[2]
    if height % factor or width % factor:
        if height == width:
            bad = str(height)
        else:
            bad = ", ".join(f"{n}={s}" for n, s in (("H", height), ("W", width)) if s % factor)
        sizes = ", ".join(str(factor * k) for k in (1, 2, 4))
        raise ModelError(
            f"{model}: input shape {tuple(shape)} (NHWC): resolution {bad} is not "
            f"divisible by 2^{factor_log2}={factor}; use {sizes} ... (a multiple of {factor}), "
            f"or {alternative}. Inputs are channels-last; a channels-first array "
            f"(N, C, H, W) also fails this check"
        )


class DownBlock(nn.Module):
    """``UNet_down_block``: 3×(conv3×3 → GN(8) → ReLU), then max-pool 2×2/2 if ``pool``."""

    features: int
    pool: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i in (1, 2, 3):
            x = conv(self.features, 3, self.dtype, f"conv{i}")(x)
            x = nn.relu(group_norm(GN_GROUPS, self.dtype, f"bn{i}")(x))
        if self.pool:
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        return x


class UpBlock(nn.Module):
    """``UNet_up_block``: upsample ×2 (if ``upsample``), concat [x_up, skip], 3 convs.

    Called as ``UpBlock(...)(skip, x)`` like PyTorch's ``forward(prev_feature_map, x)``;
    ``conv1``'s kernel input channels ``[:C_x]`` see the upsampled tensor, the rest the skip.
    """

    features: int
    upsample: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, skip: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
        if self.upsample:
            x = upsample_bilinear_2x(x)
        x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
        for i in (1, 2, 3):
            x = conv(self.features, 3, self.dtype, f"conv{i}")(x)
            x = nn.relu(group_norm(GN_GROUPS, self.dtype, f"bn{i}")(x))
        return x


def blocks(remat: bool) -> tuple[type[nn.Module], type[nn.Module]]:
    """(DownBlock, UpBlock), each rematerialised as a whole when ``remat``.

    With remat the backward pass keeps only each block's input and output and recomputes
    its three conv/GroupNorm/ReLU layers, so the activations alive at once are those of one
    block rather than of the whole network. Parameter names are unchanged.
    """
    if remat:
        return nn.remat(DownBlock), nn.remat(UpBlock)
    return DownBlock, UpBlock


def check_fields(model: str, out_channels: int, width: float) -> None:
    if out_channels < 1:
        raise ModelError(f"{model}: out_channels must be >= 1, got {out_channels}")
    if not width > 0:
        raise ModelError(f"{model}: width must be > 0 (1.0 = original widths), got {width}")


def bottleneck(x: jnp.ndarray, width: int, dtype: Any) -> jnp.ndarray:
    """``mid_conv1..3`` / ``bn1..3``: three conv3×3 → GN(8) → ReLU at the lowest resolution.

    Call it inside a module's compact ``__call__``; the layers are that module's children.
    """
    for i in (1, 2, 3):
        x = conv(width, 3, dtype, f"mid_conv{i}")(x)
        x = nn.relu(group_norm(GN_GROUPS, dtype, f"bn{i}")(x))
    return x


def head(x: jnp.ndarray, width: int, out_channels: int, dtype: Any) -> jnp.ndarray:
    """``last_conv1`` → ``last_bn`` → ReLU → ``last_conv2`` (1×1, linear; callers add a ReLU)."""
    x = conv(width, 3, dtype, "last_conv1")(x)
    x = nn.relu(group_norm(GN_GROUPS, dtype, "last_bn")(x))
    return conv(out_channels, 1, dtype, "last_conv2")(x)


class UNet(nn.Module):
    """XTC's main network (reference §2.2), used for every rgb→X and most X→Y edges.

    Attributes:
      downsample: number of 2× poolings (ds); the bottleneck has 16·2^ds channels at H/2^ds,
        so H and W must be divisible by 2^ds. 6 for rgb→normal/depth, 5 for most others.
      out_channels: output channels; input channels are taken from the input.
      width: multiplier of the base width 16 (rounded up to multiples of 8); 1.0 = original.
      dtype: computation dtype (e.g. jnp.bfloat16); params stay float32, output is float32.
      remat: rematerialise each down/up block in the backward pass (see ``blocks``).

    Output: ReLU of the final 1×1 conv, so values lie in [0, ∞) with no clamp.
    """

    downsample: int = 6
    out_channels: int = 3
    width: float = 1.0
    dtype: Any = jnp.float32
    remat: bool = False

    def __post_init__(self) -> None:
        check_fields(type(self).__name__, self.out_channels, self.width)
        if not 1 <= self.downsample <= 10:
            raise ModelError(
                f"{type(self).__name__}: downsample must be in 1..10, got {self.downsample}"
            )
        super().__post_init__()

    def channels(self, level: int) -> int:
        """Width of resolution level ``level`` (16·2^level at width 1.0)."""
        return scaled_channels(BASE_WIDTH * 2**level, self.width)

    def postprocess(self, y: jnp.ndarray) -> jnp.ndarray:
        """Hook applied to the float32 output; identity for UNet."""
        return y

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        ds = self.downsample
        check_resolution(f"{type(self).__name__}(downsample={ds})", x.shape, ds)
        down, up = blocks(self.remat)
        x = down(self.channels(0), pool=False, dtype=self.dtype, name="down1")(x)
        skips = [x]
        for i in range(ds):
            x = down(self.channels(i + 1), pool=True, dtype=self.dtype, name=f"down_blocks_{i}")(x)
            skips.append(x)
        x = bottleneck(x, self.channels(ds), self.dtype)
        for i in reversed(range(ds)):
            x = up(self.channels(i), dtype=self.dtype, name=f"up_blocks_{i}")(skips[i], x)
        x = nn.relu(head(x, self.channels(0), self.out_channels, self.dtype))
        return self.postprocess(x.astype(jnp.float32))


class UNetReshade(UNet):
    """UNet whose output is clamped to [0, 1], averaged over channels and broadcast.

    Same parameters as UNet. The original always broadcasts to 3 identical channels, even
    with ``out_channels=1`` (reshading→depth_zbuffer); ``broadcast_channels`` is how many
    copies come out, so that edge gives depth_zbuffer its one channel (one of the original's
    three identical ones). `models.edges.edge_network` sets it from the target domain.
    """

    downsample: int = 5
    broadcast_channels: int = 3

    def postprocess(self, y: jnp.ndarray) -> jnp.ndarray:
        y = jnp.mean(jnp.clip(y, 0.0, 1.0), axis=-1, keepdims=True)
        return jnp.broadcast_to(y, (*y.shape[:-1], self.broadcast_channels))


class UNetDepth(nn.Module):
    """``depth_nets.UNetDepth`` (normal→depth_zbuffer, reference §2.3).

    Seven down blocks (16…1024 channels) of which the first and last do not pool, so there
    are 5 poolings and H, W must be divisible by 32; the bottleneck is 1024 @ H/32.
    ``up_block1`` does not upsample. The output is the linear 1×1 conv (no final ReLU).
    Keys: ``down_block1..7``, ``mid_conv1..3``/``bn1..3``, ``up_block1..6``, ``last_*``.
    """

    out_channels: int = 1
    width: float = 1.0
    dtype: Any = jnp.float32
    remat: bool = False

    def __post_init__(self) -> None:
        check_fields(type(self).__name__, self.out_channels, self.width)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        check_resolution(type(self).__name__, x.shape, 5, "resize the input (it pools 5 times)")
        ch = [scaled_channels(BASE_WIDTH * 2**k, self.width) for k in range(7)]
        down, up = blocks(self.remat)
        skips = []
        for k in range(7):
            pool = 1 <= k <= 5
            x = down(ch[k], pool=pool, dtype=self.dtype, name=f"down_block{k + 1}")(x)
            skips.append(x)
        x = bottleneck(x, ch[6], self.dtype)
        for j in range(6):  # up_block1 pairs with down_block6's output, up_block6 with block1
            block = up(ch[5 - j], upsample=j > 0, dtype=self.dtype, name=f"up_block{j + 1}")
            x = block(skips[5 - j], x)
        return head(x, ch[0], self.out_channels, self.dtype).astype(jnp.float32)
