"""torchvision's ResNet 18/34/50/101/152 in Flax (NHWC), up to layer4: the "imagenet" net.

The original's eighth perceptual network (`ResNetClass`, xtconsistency.md §2.3) is
torchvision's `resnet50(pretrained=True)` without avgpool and fc, with BatchNorm
in inference mode: its output is the layer4 map, 2048 channels at H/32. The same
trunk is the multi-task method's shared encoder. Module names follow
torchvision's keys: `conv1`, `bn1`, `layer{1..4}_{i}` with `conv1..3`, `bn1..3`
and `downsample_0` (conv) / `downsample_1` (BN), so the converter maps
`layer1.0.downsample.1.running_mean` to `layer1_0/downsample_1/mean`.

BatchNorm is one of two kinds (`norm`). "frozen" (the perceptual net) uses the
stored running statistics (`FrozenBatchNorm`): they are parameters here, behind
`stop_gradient`, so a checkpoint is one params tree like every other network's
and the statistics never move. The original kept this net in train mode, so its
statistics drifted with every batch (§5, quirk 5); that is not reproduced.
"batch" (the multi-task encoder, trained) is Flax's BatchNorm: batch statistics
while training, running averages in the "batch_stats" collection (torch's
momentum 0.1), used at evaluation. Under jit with the batch sharded over the
mesh's data axis the batch mean is a mean over the global batch, so the
statistics are synchronised across devices with no extra code. `taps=True`
returns the five feature maps a U-Net decoder needs (xtask_mt.md §1.2).

As in the original the input is not ImageNet-normalised
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


NORMS = ("frozen", "batch")


def batch_norm(norm: str, train: bool, name: str) -> nn.Module:
    """The `norm` kind's BatchNorm2d (torch's eps; momentum 0.1 = Flax's 0.9)."""
    if norm == "frozen":
        return FrozenBatchNorm(name=name)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPSILON,
                        dtype=jnp.float32, param_dtype=jnp.float32, name=name)  # fmt: skip


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    """torch's Conv2d(k, stride, padding=k//2, bias=False)."""
    return conv(features, kernel, dtype, name, stride=stride, bias=False)


class Block(nn.Module):
    """torchvision's BasicBlock (two 3×3) or Bottleneck (1×1, 3×3 with the stride, 1×1 ×4)."""

    kind: str
    planes: int
    stride: int
    dtype: Any = jnp.float32
    norm: str = "frozen"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        out_channels = self.planes * EXPANSION[self.kind]
        if self.kind == "basic":
            layers = [(self.planes, 3, self.stride), (self.planes, 3, 1)]
        else:
            layers = [(self.planes, 1, 1), (self.planes, 3, self.stride), (out_channels, 1, 1)]
        y = x
        for i, (features, kernel, stride) in enumerate(layers, start=1):
            y = _conv(features, kernel, stride, self.dtype, f"conv{i}")(y)
            y = batch_norm(self.norm, train, f"bn{i}")(y).astype(self.dtype)
            if i < len(layers):
                y = nn.relu(y)
        if self.stride != 1 or x.shape[-1] != out_channels:
            x = _conv(out_channels, 1, self.stride, self.dtype, "downsample_0")(x)
            x = batch_norm(self.norm, train, "downsample_1")(x).astype(self.dtype)
        return nn.relu(y + x)


class ResNet(nn.Module):
    """torchvision's ResNet trunk (conv1 … layer4), NHWC, returning the layer4 feature map.

    Attributes:
      depth: 18, 34, 50, 101 or 152 (torchvision's resnet{depth}).
      width: multiplier of every stage's channels (1.0 = torchvision; small for tests).
      imagenet_normalize: subtract ImageNet's mean and divide by its std first (the
        original does not: off reproduces it).
      dtype: computation dtype; params stay float32 and the output is float32.
      norm: "frozen" (stored statistics, never updated) or "batch" (trained; running
        averages in "batch_stats"; call with train=True and mutable=["batch_stats"]).
      taps: return [layer0, layer1, layer2, layer3, layer4] (H/2 … H/32) instead of
        layer4 alone; layer0 is conv1+bn1+relu, layer1 includes the max-pool.

    Input: (N, H, W, 1 or 3) in [0, 1]; one channel is repeated to three. Output:
    (N, ceil(H/32), ceil(W/32), feature_channels(depth, width)), or the five taps.
    """

    depth: int = 50
    width: float = 1.0
    imagenet_normalize: bool = False
    dtype: Any = jnp.float32
    norm: str = "frozen"
    taps: bool = False

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise ModelError(f"ResNet: depth must be one of {sorted(DEPTHS)}, got {self.depth}")
        if not self.width > 0:
            raise ModelError(f"ResNet: width must be > 0 (1.0 = torchvision), got {self.width}")
        if self.norm not in NORMS:
            raise ModelError(f"ResNet: norm must be one of {NORMS}, got {self.norm!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray | list[jnp.ndarray]:
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ModelError(f"ResNet: expected an NHWC batch with 1 or 3 channels, got an "
                             f"input of shape {tuple(x.shape)}")  # fmt: skip
        x = x.astype(jnp.float32)
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        if self.imagenet_normalize:
            x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        x = _conv(_planes(64, self.width), 7, 2, self.dtype, "conv1")(x.astype(self.dtype))
        x = nn.relu(batch_norm(self.norm, train, "bn1")(x)).astype(self.dtype)
        features = [x]
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        kind, counts = DEPTHS[self.depth]
        for stage, (planes, count) in enumerate(zip(STAGE_PLANES, counts, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                x = Block(kind, _planes(planes, self.width), stride, self.dtype, self.norm,
                          name=f"layer{stage + 1}_{i}")(x, train)  # fmt: skip
            features.append(x)
        if self.taps:
            return [f.astype(jnp.float32) for f in features]
        return x.astype(jnp.float32)
