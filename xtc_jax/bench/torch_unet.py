"""The project's networks in PyTorch, as a benchmark baseline: same architecture, same weights.

Mirrors the Flax modules of `xtc_jax.models` (UNet, UNetReshade, UNetDepth in `models/unet.py`,
Dense1by1Net in `models/dense1by1.py`), which follow the original XTConsistency PyTorch code
(shared/reference/xtconsistency.md §2.1–2.3): conv 3×3 pad 1 with bias → GroupNorm(8, eps 1e-5)
→ ReLU, pooling after the convs, bilinear ×2 upsampling with ``align_corners=False`` and the
concatenation order [upsampled, skip]. Channel widths come from the same ``scaled_channels``
and the constructor fields from the same ``xtc_jax.models.build``, so a config builds the same
network in both frameworks; `load_flax_params` then makes them compute the same function.

Submodules carry the Flax names (``down_blocks_0.conv1``, ``up_block3.bn2``, ``decoder_6.bn``),
so a Flax param path joined by dots is the torch parameter name, with ``kernel``/``scale``
mapped to ``weight``. Modules take NCHW input and also run in ``torch.channels_last``.

torch is a benchmark-only extra (requirements-bench.txt), never imported by the library.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xtc_jax.models import build
from xtc_jax.models.unet import BASE_WIDTH, GN_EPSILON, GN_GROUPS, scaled_channels

__all__ = ["build_torch", "count_params", "load_flax_params"]


def _conv_gn(cin: int, cout: int) -> tuple[nn.Conv2d, nn.GroupNorm]:
    """Conv 3×3 / pad 1 / bias and the GroupNorm(8, eps 1e-5) that follows it."""
    return nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(GN_GROUPS, cout, eps=GN_EPSILON)


class _ConvStack(nn.Module):
    """Three conv3×3 → GN(8) → ReLU layers named ``conv1..3`` / ``bn1..3`` (as in Flax)."""

    def __init__(self, cin: int, features: int) -> None:
        super().__init__()
        for i, c in enumerate((cin, features, features), start=1):
            conv, norm = _conv_gn(c, features)
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", norm)

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        for i in (1, 2, 3):
            x = F.relu(self.get_submodule(f"bn{i}")(self.get_submodule(f"conv{i}")(x)))
        return x


class DownBlock(_ConvStack):
    """``UNet_down_block``: 3×(conv → GN → ReLU), then max-pool 2×2/2 if ``pool``."""

    def __init__(self, cin: int, features: int, pool: bool) -> None:
        super().__init__(cin, features)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return F.max_pool2d(x, 2, 2) if self.pool else x


class UpBlock(_ConvStack):
    """``UNet_up_block``: bilinear ×2 (if ``upsample``), concat [x_up, skip], 3 convs.

    ``cin`` is the channels of x plus those of the skip (conv1's input after the concat).
    """

    def __init__(self, cin: int, features: int, upsample: bool = True) -> None:
        super().__init__(cin, features)
        self.upsample = upsample

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class _MidAndHead(nn.Module):
    """Shared bottleneck and head layout of UNet and UNetDepth (``mid_conv*``, ``last_*``)."""

    def _add_mid(self, width: int) -> None:
        for i in (1, 2, 3):
            conv, norm = _conv_gn(width, width)
            self.add_module(f"mid_conv{i}", conv)
            self.add_module(f"bn{i}", norm)

    def _add_head(self, width: int, out_channels: int) -> None:
        self.last_conv1, self.last_bn = _conv_gn(width, width)
        self.last_conv2 = nn.Conv2d(width, out_channels, 1)

    def mid(self, x: torch.Tensor) -> torch.Tensor:
        for i in (1, 2, 3):
            x = F.relu(self.get_submodule(f"bn{i}")(self.get_submodule(f"mid_conv{i}")(x)))
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """last_conv1 → last_bn → ReLU → last_conv2 (linear; UNet adds its own ReLU)."""
        return self.last_conv2(F.relu(self.last_bn(self.last_conv1(x))))


class UNet(_MidAndHead):
    """XTConsistency's ``UNet`` (reference §2.2); ``reshade`` gives ``UNetReshade`` (§2.3).

    UNetReshade has the same parameters; its output is clamped to [0, 1], averaged over
    channels and expanded to 3 identical channels (even with ``out_channels=1``).
    """

    def __init__(
        self, in_channels: int, downsample: int, out_channels: int, width: float, reshade: bool
    ) -> None:
        super().__init__()
        ch = [scaled_channels(BASE_WIDTH * 2**k, width) for k in range(downsample + 1)]
        self.downsample, self.reshade = downsample, reshade
        self.down1 = DownBlock(in_channels, ch[0], pool=False)
        for i in range(downsample):
            self.add_module(f"down_blocks_{i}", DownBlock(ch[i], ch[i + 1], pool=True))
        self._add_mid(ch[downsample])
        for i in range(downsample):  # up_blocks_i maps level i+1 (plus skip i) to level i
            self.add_module(f"up_blocks_{i}", UpBlock(ch[i + 1] + ch[i], ch[i]))
        self._add_head(ch[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down1(x)
        skips = [x]
        for i in range(self.downsample):
            x = self.get_submodule(f"down_blocks_{i}")(x)
            skips.append(x)
        x = self.mid(x)
        for i in reversed(range(self.downsample)):
            x = self.get_submodule(f"up_blocks_{i}")(skips[i], x)
        y = F.relu(self.head(x))
        if self.reshade:
            y = y.clamp(0.0, 1.0).mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        return y


class UNetDepth(_MidAndHead):
    """``depth_nets.UNetDepth`` (reference §2.3): 7 down blocks, 5 poolings, linear output.

    ``down_block1`` and ``down_block7`` do not pool; ``up_block1`` does not upsample and pairs
    with ``down_block6``'s output, ``up_block6`` with ``down_block1``'s.
    """

    def __init__(self, in_channels: int, out_channels: int, width: float) -> None:
        super().__init__()
        ch = [scaled_channels(BASE_WIDTH * 2**k, width) for k in range(7)]
        for k in range(7):
            cin = in_channels if k == 0 else ch[k - 1]
            self.add_module(f"down_block{k + 1}", DownBlock(cin, ch[k], pool=1 <= k <= 5))
        self._add_mid(ch[6])
        for j in range(6):  # up_block{j+1}: x has ch[6-j] channels, the skip ch[5-j]
            up = UpBlock(ch[6 - j] + ch[5 - j], ch[5 - j], upsample=j > 0)
            self.add_module(f"up_block{j + 1}", up)
        self._add_head(ch[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k in range(7):
            x = self.get_submodule(f"down_block{k + 1}")(x)
            skips.append(x)
        x = self.mid(x)
        for j in range(6):
            x = self.get_submodule(f"up_block{j + 1}")(skips[5 - j], x)
        return self.head(x)


class ConvBlock(nn.Module):
    """Pre-norm block of ``percep_nets``: GN(groups, *input* channels) → conv k×k → ReLU."""

    def __init__(self, cin: int, features: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.bn = nn.GroupNorm(groups, cin, eps=GN_EPSILON)
        self.conv = nn.Conv2d(cin, features, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(self.bn(x)))


class Dense1by1Net(nn.Sequential):
    """``percep_nets.Dense1by1Net``: seven pre-norm ConvBlocks ``decoder_0..6`` (reference §2.3)."""

    def __init__(
        self, in_channels: int, out_channels: int, width: float, input_groups: int
    ) -> None:
        c64, c96 = scaled_channels(64, width), scaled_channels(96, width)
        layers = [(input_groups, c64, 1), (GN_GROUPS, c96, 1)]
        layers += [(GN_GROUPS, c96, 3)] * 4 + [(GN_GROUPS, out_channels, 3)]
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        cin = in_channels
        for i, (groups, features, kernel) in enumerate(layers):
            blocks[f"decoder_{i}"] = ConvBlock(cin, features, kernel, groups)
            cin = features
        super().__init__(blocks)


class UNetOld2(_MidAndHead):
    """``UNetOld2`` (reference §2.3): pre-norm ``initial_0/1``, then a ds6 UNet under the old
    names ``down_block1..7`` / ``up_block1..6`` (``up_block{k}`` is UNet's level 6−k)."""

    def __init__(self, in_channels: int, out_channels: int, width: float) -> None:
        super().__init__()
        ch = [scaled_channels(BASE_WIDTH * 2**k, width) for k in range(7)]
        self.initial_0 = ConvBlock(in_channels, ch[0], 1, 3)
        self.initial_1 = ConvBlock(ch[0], ch[0], 1, 4)
        self.down_block1 = DownBlock(ch[0], ch[0], pool=False)
        for j in range(6):
            self.add_module(f"down_block{j + 2}", DownBlock(ch[j], ch[j + 1], pool=True))
        self._add_mid(ch[6])
        for i in range(6):
            self.add_module(f"up_block{6 - i}", UpBlock(ch[i + 1] + ch[i], ch[i]))
        self._add_head(ch[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down_block1(self.initial_1(self.initial_0(x)))
        skips = [x]
        for j in range(6):
            x = self.get_submodule(f"down_block{j + 2}")(x)
            skips.append(x)
        x = self.mid(x)
        for i in reversed(range(6)):
            x = self.get_submodule(f"up_block{6 - i}")(skips[i], x)
        return F.relu(self.head(x))


class Sobel(nn.Module):
    """The analytic rgb -> edge_texture edge (`models/sobel.py`) for NCHW tensors: channel
    mean, Gaussian blur σ 2 with a mirrored border, Sobel x and y with a zero border, hypot."""

    def __init__(self):
        super().__init__()
        from xtc_jax.models.sobel import _gaussian_taps

        self.register_buffer("taps", torch.from_numpy(_gaussian_taps()))

    @staticmethod
    def _correlate(x: torch.Tensor, taps: torch.Tensor, dim: int, mirror: bool) -> torch.Tensor:
        r = len(taps) // 2
        if mirror:  # scipy's "reflect" (numpy's "symmetric"): the edge sample is repeated
            x = torch.cat([x.narrow(dim, 0, r).flip(dim), x,
                           x.narrow(dim, x.shape[dim] - r, r).flip(dim)], dim)  # fmt: skip
        else:
            x = F.pad(x, (0, 0, r, r) if dim == 2 else (r, r, 0, 0))
        shape = (1, 1, len(taps), 1) if dim == 2 else (1, 1, 1, len(taps))
        return F.conv2d(x, taps.to(x.dtype).reshape(shape))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        gray = rgb.float().mean(dim=1, keepdim=True)
        blurred = self._correlate(self._correlate(gray, self.taps, 2, True), self.taps, 3, True)
        derivative = torch.tensor([-1.0, 0.0, 1.0], device=rgb.device)
        smooth = torch.tensor([1.0, 2.0, 1.0], device=rgb.device)
        gx = self._correlate(self._correlate(blurred, derivative, 3, False), smooth, 2, False)
        gy = self._correlate(self._correlate(blurred, derivative, 2, False), smooth, 3, False)
        return torch.hypot(gx, gy)


def build_torch(arch: str, in_channels: int, **kwargs: Any) -> nn.Module:
    """The PyTorch twin of ``xtc_jax.models.build(arch, **kwargs)`` for ``in_channels`` inputs.

    The kwargs go through the Flax ``build`` first, so the fields, their defaults (e.g.
    UNetReshade's downsample=5, UNetDepth's out_channels=1) and the errors for bad values are
    exactly the Flax ones. ``dtype`` is accepted and ignored: cast the torch module instead.
    Supports "unet", "unet_reshade", "unet_depth", "unet_old2", "dense1by1" and "sobel".
    """
    if arch == "sobel":
        return Sobel()
    flax_model = build(arch, **kwargs)
    if arch in ("unet", "unet_reshade"):
        return UNet(
            in_channels,
            flax_model.downsample,
            flax_model.out_channels,
            flax_model.width,
            reshade=arch == "unet_reshade",
        )
    if arch == "unet_depth":
        return UNetDepth(in_channels, flax_model.out_channels, flax_model.width)
    if arch == "unet_old2":
        return UNetOld2(in_channels, flax_model.out_channels, flax_model.width)
    if arch == "dense1by1":
        return Dense1by1Net(
            in_channels, flax_model.out_channels, flax_model.width, flax_model.input_groups
        )
    raise ValueError(f"build_torch: no PyTorch version of arch {arch!r}")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf) pairs of a nested params mapping (dict or FrozenDict)."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def load_flax_params(module: nn.Module, flax_params: Mapping[str, Any]) -> None:
    """Copy a Flax params tree into ``module`` (built by `build_torch` with the same config).

    ``a/b/kernel`` (HWIO) -> ``a.b.weight`` (OIHW), ``a/b/scale`` -> ``a.b.weight``,
    ``a/b/bias`` -> ``a.b.bias``. Everything is checked before anything is copied: raises
    ValueError, listing the offending names, unless every torch parameter receives exactly one
    Flax leaf of the matching shape (so a config mismatch cannot half-load the module).
    """
    targets = dict(module.named_parameters())
    values: dict[str, np.ndarray] = {}
    problems = []
    for path, leaf in _flatten(flax_params):
        prefix, _, leaf_name = path.rpartition(".")
        value = np.asarray(leaf, dtype=np.float32)
        if leaf_name == "kernel":
            value = value.transpose(3, 2, 0, 1)
        name = f"{prefix}.{'bias' if leaf_name == 'bias' else 'weight'}"
        if name not in targets:
            problems.append(f"{path}: no torch parameter {name}")
        elif tuple(targets[name].shape) != value.shape:
            torch_shape = tuple(targets[name].shape)
            problems.append(f"{path}: shape {value.shape} (torch layout) vs {torch_shape}")
        values[name] = value
    problems += [f"{name}: no Flax leaf" for name in sorted(set(targets) - set(values))]
    if problems:
        raise ValueError(
            "load_flax_params: params do not match the module:\n" + "\n".join(problems)
        )
    with torch.no_grad():
        for name, value in values.items():
            targets[name].copy_(torch.from_numpy(np.array(value, copy=True)))


def count_params(module: nn.Module) -> int:
    """Number of scalars in the module's parameters (comparable to models.count_params)."""
    return sum(p.numel() for p in module.parameters())
