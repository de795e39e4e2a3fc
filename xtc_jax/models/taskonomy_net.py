"""Taskonomy's Stage I and II networks, small: one encoder architecture for every task, a
fixed-size representation, a decoder per task, and a transfer readout (taskonomy.md §4.1).

- `TaskEncoder`: a fully convolutional residual encoder (no pooling at the end), four
  stride-2 stages, to a representation of `rep_channels` channels at H/16 (the paper:
  ResNet-50 to 16×16×8 at 256 px; here the same 8 channels and ×16 reduction).
- `TaskDecoder`: four ×2 upsampling stages of conv + GroupNorm + ReLU to the task's
  channels at the input resolution (pixel tasks; every built-in domain is one).
- `TransferReadout`: the transfer function of Stage II: two conv layers on the
  channel-concatenated representations of its sources, to a representation, which a
  fresh `TaskDecoder` turns into the target (interpretation: the readout is trained
  with its decoder, from scratch, on the transfer set).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xtc_jax.models.unet import ModelError, scaled_channels, upsample_bilinear_2x

STAGES = 4


def _conv(features: int, stride: int, name: str, dtype: Any) -> nn.Conv:
    return nn.Conv(features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                   dtype=dtype, param_dtype=jnp.float32, name=name)  # fmt: skip


def _norm(features: int, name: str) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(8, features), name=name)


class _ResidualStage(nn.Module):
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = nn.relu(_norm(self.features, "norm0")(_conv(self.features, 2, "conv0", self.dtype)(x)))
        y = _norm(self.features, "norm1")(_conv(self.features, 1, "conv1", self.dtype)(y))
        skip = nn.Conv(self.features, (1, 1), strides=(2, 2), dtype=self.dtype,
                       param_dtype=jnp.float32, name="skip")(x)  # fmt: skip
        return nn.relu(y + skip)


class TaskEncoder(nn.Module):
    """(N, H, W, C) -> (N, H/16, W/16, rep_channels); H and W multiples of 16."""

    width: float = 1.0
    rep_channels: int = 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[1] % 16 or x.shape[2] % 16:
            raise ModelError(f"TaskEncoder: expected NHWC with H, W multiples of 16, got "
                             f"{tuple(x.shape)}")  # fmt: skip
        x = x.astype(self.dtype)
        for i in range(STAGES):
            x = _ResidualStage(scaled_channels(64 * 2 ** min(i, 2), self.width), self.dtype,
                               name=f"stage{i}")(x)  # fmt: skip
        return nn.Conv(self.rep_channels, (1, 1), dtype=self.dtype, param_dtype=jnp.float32,
                       name="representation")(x).astype(jnp.float32)  # fmt: skip


class TaskDecoder(nn.Module):
    """(N, h, w, rep) -> (N, 16h, 16w, out_channels)."""

    out_channels: int
    width: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, r):
        x = r.astype(self.dtype)
        for i in range(STAGES):
            features = scaled_channels(64 * 2 ** max(0, 2 - i), self.width)
            x = upsample_bilinear_2x(x)
            x = nn.relu(_norm(features, f"norm{i}")(_conv(features, 1, f"conv{i}", self.dtype)(x)))
        return nn.Conv(self.out_channels, (1, 1), dtype=self.dtype, param_dtype=jnp.float32,
                       name="head")(x).astype(jnp.float32)  # fmt: skip


class TransferReadout(nn.Module):
    """Sources' representations (concatenated on channels) -> the target's output."""

    out_channels: int
    rep_channels: int = 8
    width: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, representations):
        x = representations.astype(self.dtype)
        hidden = scaled_channels(64, self.width)
        x = nn.relu(_conv(hidden, 1, "readout0", self.dtype)(x))
        x = _conv(self.rep_channels, 1, "readout1", self.dtype)(x)
        return TaskDecoder(self.out_channels, self.width, self.dtype, name="decoder")(x)


class ScratchNetwork(nn.Module):
    """A task network trained from scratch (encoder + decoder on the image): the reference a
    transfer's gain is measured against, trained on the same transfer images (§4.3)."""

    out_channels: int
    width: float = 1.0
    rep_channels: int = 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        rep = TaskEncoder(self.width, self.rep_channels, self.dtype, name="encoder")(x)
        return TaskDecoder(self.out_channels, self.width, self.dtype, name="decoder")(rep)
