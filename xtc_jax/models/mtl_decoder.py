"""xtask_mt's per-task decoder: a U-Net-like stack over the five encoder taps (§1.3).

`DecoderSequential(enc_features, out_features, mid_features=128)` of the
original: five blocks of three 3×3 conv + BatchNorm + ReLU (in → 128 → 128 →
128), each followed by a ×2 bilinear upsampling with aligned corners; the
skip of the next-shallower tap is concatenated after each upsampling; a
1×1 conv without bias gives the output (class logits, or one raw depth
channel, or three normal channels). Block 1 reads layer4 (H/32) and block 5
ends at the input resolution. Convs are Xavier-normal with zero bias, as the
original initialises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xtc_jax.models.resize import upsample_bilinear_2x_aligned
from xtc_jax.models.resnet import batch_norm

XAVIER = nn.initializers.xavier_normal()


def conv3x3(features: int, name: str, dtype: Any, bias: bool = True) -> nn.Conv:
    """torch's Conv2d(3, padding=1) with Xavier-normal weights and zero bias."""
    return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), use_bias=bias, dtype=dtype,
                   param_dtype=jnp.float32, kernel_init=XAVIER, name=name)  # fmt: skip


def conv1x1(features: int, name: str, dtype: Any) -> nn.Conv:
    """torch's Conv2d(1, bias=False): the heads of the decoders and transfer nets."""
    return nn.Conv(features, (1, 1), use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                   kernel_init=XAVIER, name=name)  # fmt: skip


class DecoderBlock(nn.Module):
    """Three conv3x3 + BN + ReLU, then ×2 aligned bilinear upsampling (`ConvBlock`)."""

    features: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        for i in range(3):
            x = conv3x3(self.features, f"conv{i}", self.dtype)(x.astype(self.dtype))
            x = nn.relu(batch_norm("batch", train, f"bn{i}")(x)).astype(self.dtype)
        return upsample_bilinear_2x_aligned(x)


class TaskDecoder(nn.Module):
    """One task's decoder over the taps [layer0 … layer4]; returns (N, H, W, out_features)."""

    out_features: int
    mid_features: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, taps: Sequence[jnp.ndarray], train: bool = False) -> jnp.ndarray:
        x = taps[-1]
        for i, skip in enumerate([*reversed(taps[:-1]), None], start=1):
            x = DecoderBlock(self.mid_features, self.dtype, name=f"block{i}")(x, train)
            if skip is not None:
                x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
        return conv1x1(self.out_features, "head", self.dtype)(x).astype(jnp.float32)
