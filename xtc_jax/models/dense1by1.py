"""``percep_nets.Dense1by1Net`` in Flax (NHWC): the normal→principal_curvature perceptual net.

Seven pre-norm ConvBlocks (GroupNorm on the block's *input*, then conv, then ReLU), no
resolution change (reference §2.3). Submodules are named ``decoder_{i}`` with children ``bn``
and ``conv``, mirroring the PyTorch keys ``decoder.{i}.{bn,conv}.{weight,bias}``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xtc_jax.models.unet import (
    GN_GROUPS,
    ModelError,
    check_fields,
    conv,
    group_norm,
    scaled_channels,
)


class ConvBlock(nn.Module):
    """Pre-norm block of ``percep_nets``: GN(groups, input channels) → conv k×k → ReLU.

    The GroupNorm normalises the *input*, so its group count must divide the input channels
    (3 groups on the 3-channel normal input of the first block, 8 elsewhere). Padding is
    k//2 (0 for 1×1, 1 for 3×3), as in the original.
    """

    features: int
    kernel_size: int = 3
    groups: int = GN_GROUPS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if x.shape[-1] % self.groups:
            raise ModelError(
                f"ConvBlock({self.name}): GroupNorm with {self.groups} groups needs input "
                f"channels divisible by {self.groups}, got input shape {tuple(x.shape)} (NHWC)"
            )
        x = group_norm(self.groups, self.dtype, "bn")(x)
        return nn.relu(conv(self.features, self.kernel_size, self.dtype, "conv")(x))


class Dense1by1Net(nn.Module):
    """Per layer (groups, in→out, kernel): 0: GN(3), 3→64, 1×1; 1: GN(8), 64→96, 1×1;
    2–5: GN(8), 96→96, 3×3; 6: GN(8), 96→out, 3×3. The output is ReLU'd (in [0, ∞)).

    Attributes:
      out_channels: output channels (3 for principal_curvature).
      width: multiplier of the hidden widths 64 and 96 (rounded up to multiples of 8).
      input_groups: GroupNorm groups of the first block, which normalises the input; must
        divide the input channels (3 in the original).
      dtype: computation dtype; params stay float32 and the output is float32.
      remat: rematerialise each block in the backward pass (less memory, one more forward).

    342,345 parameters at the defaults with a 3-channel input. Any resolution works.
    """

    out_channels: int = 3
    width: float = 1.0
    input_groups: int = 3
    dtype: Any = jnp.float32
    remat: bool = False

    def __post_init__(self) -> None:
        check_fields(type(self).__name__, self.out_channels, self.width)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if x.ndim != 4:
            raise ModelError(
                f"Dense1by1Net: expected an NHWC batch (batch, height, width, channels), got "
                f"an input of shape {tuple(x.shape)}; add a batch axis with x[None]"
            )
        if x.shape[-1] % self.input_groups:
            raise ModelError(
                f"Dense1by1Net: input shape {tuple(x.shape)} (NHWC) has {x.shape[-1]} channels, "
                f"not divisible by input_groups={self.input_groups}; set input_groups to a "
                f"divisor of the input channels (e.g. input_groups=1)"
            )
        c64 = scaled_channels(64, self.width)
        c96 = scaled_channels(96, self.width)
        layers = [(self.input_groups, c64, 1), (GN_GROUPS, c96, 1)]
        layers += [(GN_GROUPS, c96, 3)] * 4 + [(GN_GROUPS, self.out_channels, 3)]
        # remat: keep each block's input only; its GroupNorm and conv are recomputed backward.
        block_type = nn.remat(ConvBlock) if self.remat else ConvBlock
        for i, (groups, features, kernel) in enumerate(layers):
            block = block_type(features, kernel, groups, self.dtype, name=f"decoder_{i}")
            x = block(x)
        return x.astype(jnp.float32)
