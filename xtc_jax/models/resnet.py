"""torchvision's ResNet 18/34/50/101/152 in Flax (NHWC), up to layer4: the "imagenet" net.

The original's eighth perceptual network (`ResNetClass`, xtconsistency.md §2.3) is
torchvision's `resnet50(pretrained=True)` without avgpool and fc, with BatchNorm
in inference mode: its output is the layer4 map, 2048 channels at H/32. The same
trunk is the multi-task method's shared encoder. Module names follow
torchvision's keys: `conv1`, `bn1`, `layer{1..4}_{i}` with `conv1..3`, `bn1..3`
and `downsample_0` (conv) / `downsample_1` (BN), so the converter maps
`layer1.0.downsample.1.running_mean` to `layer1_0/downsample_1/mean`.

BatchNorm uses the stored running statistics (`FrozenBatchNorm`): they are
parameters here, behind `stop_gradient`, so a checkpoint is one params tree like
every other network's and the statistics never move. The original kept this
net in train mode, so its statistics drifted with every batch (§5, quirk 5);
that is not reproduced. As in the original the input is not ImageNet-normalised
(a [0, 1] map; one channel is repeated to three) unless `imagenet_normalize`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xtc_jax.models.unet import ModelError, conv

#: depth -> (block kind, blocks per stage), as torchvision.models.resnet.
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
STAGE_PLANES = (64, 128, 256, 512)
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def feature_channels(depth: int, width: float = 1.0) -> int:
    """Channels of the layer4 map: 512 (18, 34) or 2048 (50, 101, 152) at width 1."""
    kind, _ = DEPTHS[depth]
    return _planes(STAGE_PLANES[-1], width) * EXPANSION[kind]


def _planes(base: int, width: float) -> int:
    return max(1, round(base * width))


class FrozenBatchNorm(nn.Module):
    """BatchNorm2d in eval mode: (x - mean) / sqrt(var + eps) * scale + bias, per channel."""

    epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        mean = jax.lax.stop_gradient(self.param("mean", nn.initializers.zeros, (features,),
                                                jnp.float32))  # fmt: skip
        var = jax.lax.stop_gradient(self.param("var", nn.initializers.ones, (features,),
                                               jnp.float32))  # fmt: skip
        multiplier = scale * jax.lax.rsqrt(var + self.epsilon)
        return (x.astype(jnp.float32) * multiplier + (bias - mean * multiplier)).astype(x.dtype)


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    """torch's Conv2d(k, stride, padding=k//2, bias=False)."""
    return conv(features, kernel, dtype, name, stride=stride, bias=False)


class Block(nn.Module):
    """torchvision's BasicBlock (two 3×3) or Bottleneck (1×1, 3×3 with the stride, 1×1 ×4)."""

    kind: str
    planes: int
    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        out_channels = self.planes * EXPANSION[self.kind]
        if self.kind == "basic":
            layers = [(self.planes, 3, self.stride), (self.planes, 3, 1)]
        else:
            layers = [(self.planes, 1, 1), (self.planes, 3, self.stride), (out_channels, 1, 1)]
        y = x
        for i, (features, kernel, stride) in enumerate(layers, start=1):
            y = _conv(features, kernel, stride, self.dtype, f"conv{i}")(y)
            y = FrozenBatchNorm(name=f"bn{i}")(y)
            if i < len(layers):
                y = nn.relu(y)
        if self.stride != 1 or x.shape[-1] != out_channels:
            x = _conv(out_channels, 1, self.stride, self.dtype, "downsample_0")(x)
            x = FrozenBatchNorm(name="downsample_1")(x)
        return nn.relu(y + x)


class ResNet(nn.Module):
    """torchvision's ResNet trunk (conv1 … layer4), NHWC, returning the layer4 feature map.

    Attributes:
      depth: 18, 34, 50, 101 or 152 (torchvision's resnet{depth}).
      width: multiplier of every stage's channels (1.0 = torchvision; small for tests).
      imagenet_normalize: subtract ImageNet's mean and divide by its std first (the
        original does not: off reproduces it).
      dtype: computation dtype; params stay float32 and the output is float32.

    Input: (N, H, W, 1 or 3) in [0, 1]; one channel is repeated to three. Output:
    (N, ceil(H/32), ceil(W/32), feature_channels(depth, width)).
    """

    depth: int = 50
    width: float = 1.0
    imagenet_normalize: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise ModelError(f"ResNet: depth must be one of {sorted(DEPTHS)}, got {self.depth}")
        if not self.width > 0:
            raise ModelError(f"ResNet: width must be > 0 (1.0 = torchvision), got {self.width}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ModelError(f"ResNet: expected an NHWC batch with 1 or 3 channels, got an "
                             f"input of shape {tuple(x.shape)}")  # fmt: skip
        x = x.astype(jnp.float32)
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        if self.imagenet_normalize:
            x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        x = _conv(_planes(64, self.width), 7, 2, self.dtype, "conv1")(x.astype(self.dtype))
        x = nn.relu(FrozenBatchNorm(name="bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        kind, counts = DEPTHS[self.depth]
        for stage, (planes, count) in enumerate(zip(STAGE_PLANES, counts, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                x = Block(kind, _planes(planes, self.width), stride, self.dtype,
                          name=f"layer{stage + 1}_{i}")(x)  # fmt: skip
        return x.astype(jnp.float32)
