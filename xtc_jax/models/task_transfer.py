"""xtask_mt's task-transfer network `TaskTransferNetWithSkipCN`: one task's prediction to another's.

A three-level mini U-Net (§1.4). Down(in → out): two conv3x3 (with bias) +
optional BatchNorm + ReLU, then 2×2 max-pool. Up(in → out): ×2 aligned
bilinear upsampling first, then two such convs. Features [64, 128, 256]
(`wider`: doubled; `width` scales them, 1.0 = the original). The skips of the
first two levels are concatenated into the second and third up-blocks, and a
1×1 conv without bias gives the output.
The segmentation → depth net (`log_softmax_input`) takes the log-softmax of
the logits, as the original does when its output has one channel; the
depth → segmentation net takes the raw depth.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xtc_jax.models.mtl_decoder import conv1x1, conv3x3
from xtc_jax.models.resize import upsample_bilinear_2x_aligned
from xtc_jax.models.resnet import batch_norm


def transfer_features(wider: bool, width: float = 1.0) -> tuple[int, int, int]:
    """The three levels' features: (64, 128, 256), doubled when `wider`, times `width`."""
    base = (128, 256, 512) if wider else (64, 128, 256)
    return tuple(max(1, round(f * width)) for f in base)


class _Convs(nn.Module):
    """Two conv3x3 (+ BN) + ReLU: the original's pair of `SingleConvBlock`s."""

    features: int
    use_batch_norm: bool
    dtype: Any

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        for i in range(2):
            x = conv3x3(self.features, f"conv{i}", self.dtype)(x.astype(self.dtype))
            if self.use_batch_norm:
                x = batch_norm("batch", train, f"bn{i}")(x).astype(self.dtype)
            x = nn.relu(x)
        return x


class TaskTransferNet(nn.Module):
    """(N, H, W, in) prediction of one task -> (N, H, W, out_features) of another.

    H and W must be divisible by 8 (three 2×2 pools).
    """

    out_features: int
    log_softmax_input: bool = False
    use_batch_norm: bool = False
    wider: bool = False
    width: float = 1.0  # a multiplier of the features (1.0 = the original; small for the CPU)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        f1, f2, f3 = transfer_features(self.wider, self.width)
        if self.log_softmax_input:
            x = jax.nn.log_softmax(x.astype(jnp.float32), axis=-1)
        skips = []
        for i, features in enumerate((f1, f2, f3)):
            x = _Convs(features, self.use_batch_norm, self.dtype, name=f"down{i}")(x, train)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            skips.append(x)
        for i, features in enumerate((f2, f1, f1)):
            if i:
                x = jnp.concatenate([x, skips[2 - i]], axis=-1)
            x = upsample_bilinear_2x_aligned(x)
            x = _Convs(features, self.use_batch_norm, self.dtype, name=f"up{i}")(x, train)
        return conv1x1(self.out_features, "head", self.dtype)(x).astype(jnp.float32)
