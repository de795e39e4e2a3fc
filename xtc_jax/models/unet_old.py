"""``UNetOld2`` (principal_curvature→normal, reference §2.3): the original's older UNet layout.

Two pre-norm 1×1 ConvBlocks ``initial_0`` (GN(3) on the input) and ``initial_1`` (GN(4)),
then a UNet with 6 downsamples under the old key names: ``down_block1`` (UNet's ``down1``,
here 16→16), ``down_block{j+2}`` (``down_blocks_j``), ``up_block{k}`` (``up_blocks_{6−k}``),
the same bottleneck and head, and a final ReLU. 75,532,217 parameters at width 1.0.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xtc_jax.models.dense1by1 import ConvBlock
from xtc_jax.models.unet import (
    BASE_WIDTH,
    blocks,
    bottleneck,
    check_fields,
    check_resolution,
    head,
    scaled_channels,
)

DOWNSAMPLE = 6


class UNetOld2(nn.Module):
    """See the module doc. Input channels are taken from the input (3 in the original)."""

    out_channels: int = 3
    width: float = 1.0
    dtype: Any = jnp.float32
    remat: bool = False

    def __post_init__(self) -> None:
        check_fields(type(self).__name__, self.out_channels, self.width)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        check_resolution(type(self).__name__, x.shape, DOWNSAMPLE)
        ch = [scaled_channels(BASE_WIDTH * 2**k, self.width) for k in range(DOWNSAMPLE + 1)]
        down, up = blocks(self.remat)
        x = ConvBlock(ch[0], 1, 3, self.dtype, name="initial_0")(x)
        x = ConvBlock(ch[0], 1, 4, self.dtype, name="initial_1")(x)
        x = down(ch[0], pool=False, dtype=self.dtype, name="down_block1")(x)
        skips = [x]
        for j in range(DOWNSAMPLE):
            x = down(ch[j + 1], pool=True, dtype=self.dtype, name=f"down_block{j + 2}")(x)
            skips.append(x)
        x = bottleneck(x, ch[DOWNSAMPLE], self.dtype)
        for i in reversed(range(DOWNSAMPLE)):
            x = up(ch[i], dtype=self.dtype, name=f"up_block{DOWNSAMPLE - i}")(skips[i], x)
        return nn.relu(head(x, ch[0], self.out_channels, self.dtype)).astype(jnp.float32)
