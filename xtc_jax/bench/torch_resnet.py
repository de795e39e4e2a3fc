"""A PyTorch twin of `xtc_jax.models.resnet.ResNet` with torchvision's module names.

`TorchResNet(depth, width)` is torchvision's `resnet{depth}` without avgpool and fc,
written here so that the tests and benchmarks need torch only (torchvision's wheels
must match torch's build exactly). Its `state_dict()` has torchvision's keys
(`layer1.0.downsample.1.running_mean`, ...), so a file it saves converts exactly
like torchvision's own `resnet50-*.pth`; with width 1.0 and torchvision installed,
`load_state_dict` moves weights between the two unchanged. Test and benchmark
code only: the library never imports torch.
"""

from __future__ import annotations

import torch
from torch import nn

from xtc_jax.models.resnet import DEPTHS, EXPANSION, STAGE_PLANES, _planes


class _Block(nn.Module):
    def __init__(self, kind: str, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * EXPANSION[kind]
        if kind == "basic":
            layers = [(inplanes, planes, 3, stride), (planes, planes, 3, 1)]
        else:
            layers = [(inplanes, planes, 1, 1), (planes, planes, 3, stride), (planes, out, 1, 1)]
        self.count = len(layers)
        for i, (cin, cout, kernel, s) in enumerate(layers, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, kernel, s, kernel // 2, bias=False))
            self.add_module(f"bn{i}", nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i in range(1, self.count + 1):
            y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
            if i < self.count:
                y = self.relu(y)
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
    """conv1, bn1, relu, maxpool, layer1..4 of torchvision's ResNet; NCHW in and out."""

    def __init__(self, depth: int = 50, width: float = 1.0) -> None:
        super().__init__()
        kind, counts = DEPTHS[depth]
        stem = _planes(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem
        for stage, (base, count) in enumerate(zip(STAGE_PLANES, counts, strict=True)):
            planes = _planes(base, width)
            blocks = []
            for i in range(count):
                blocks.append(_Block(kind, inplanes, planes, 2 if stage > 0 and i == 0 else 1))
                inplanes = planes * EXPANSION[kind]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return x


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, BN scale/bias away from 1/0 and running stats away from 0/1, eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(1, 10_000, (1,), generator=generator)))
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif tensor.ndim == 1:  # BN weight, bias, running_mean
                tensor.copy_(0.8 + 0.4 * torch.rand(tensor.shape, generator=generator)
                             if name.endswith("weight")
                             else 0.1 * torch.randn(tensor.shape, generator=generator))
            else:  # He-scaled conv weights keep activations O(1) through 50+ layers
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / fan_in) ** 0.5)
    return net.eval()
