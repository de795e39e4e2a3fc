"""A PyTorch twin of `models/xtask.py`: xtask_mt's `XTaskTSNet`, as the original builds it.

The encoder is torchvision's ResNet trunk (`torch_resnet.TorchResNet`) with its
five taps; the decoders are the original's `DecoderSequential` (three conv3x3
+ BN + ReLU, ×2 bilinear with aligned corners, skip concatenation) and the
transfer nets its `TaskTransferNetWithSkipCN`. Module names mirror the Flax
ones, so `to_flax_variables(net)` gives the same weights as {params,
batch_stats} (`convert/names.to_flax` + the BN split). Tests and benchmarks
only: the library never imports torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xtc_jax.bench.torch_resnet import TorchResNet
from xtc_jax.models.task_transfer import transfer_features
from xtc_jax.models.xtask import encoder_tap_channels, task_channels


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class TorchDecoderBlock(nn.Module):
    def __init__(self, cin: int, features: int = 128) -> None:
        super().__init__()
        for i, c in enumerate((cin, features, features)):
            self.add_module(f"conv{i}", nn.Conv2d(c, features, 3, padding=1))
            self.add_module(f"bn{i}", nn.BatchNorm2d(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(3):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return _up(x)


class TorchTaskDecoder(nn.Module):
    def __init__(self, taps: list[int], out: int, mid: int = 128) -> None:
        super().__init__()
        ins = [taps[-1]] + [mid + c for c in reversed(taps[:-1])]
        for i, cin in enumerate(ins, start=1):
            self.add_module(f"block{i}", TorchDecoderBlock(cin, mid))
        self.head = nn.Conv2d(mid, out, 1, bias=False)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        x = taps[-1]
        skips = [*reversed(taps[:-1]), None]
        for i, skip in enumerate(skips, start=1):
            x = getattr(self, f"block{i}")(x)
            if skip is not None:
                x = torch.cat([x, skip], dim=1)
        return self.head(x)


class _TorchConvs(nn.Module):
    def __init__(self, cin: int, cout: int, batch_norm: bool) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        for i, c in enumerate((cin, cout)):
            self.add_module(f"conv{i}", nn.Conv2d(c, cout, 3, padding=1))
            if batch_norm:
                self.add_module(f"bn{i}", nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(2):
            x = getattr(self, f"conv{i}")(x)
            if self.batch_norm:
                x = getattr(self, f"bn{i}")(x)
            x = F.relu(x)
        return x


class TorchTaskTransferNet(nn.Module):
    def __init__(self, cin: int, out: int, batch_norm: bool = False, wider: bool = False,
                 width: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        f1, f2, f3 = transfer_features(wider, width)
        self.log_softmax_input = out == 1
        for i, (a, b) in enumerate(((cin, f1), (f1, f2), (f2, f3))):
            self.add_module(f"down{i}", _TorchConvs(a, b, batch_norm))
        for i, (a, b) in enumerate(((f3, f2), (2 * f2, f1), (2 * f1, f1))):
            self.add_module(f"up{i}", _TorchConvs(a, b, batch_norm))
        self.head = nn.Conv2d(f1, out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_softmax_input:
            x = F.log_softmax(x, dim=1)
        skips = []
        for i in range(3):
            x = F.max_pool2d(getattr(self, f"down{i}")(x), 2)
            skips.append(x)
        for i in range(3):
            if i:
                x = torch.cat([x, skips[2 - i]], dim=1)
            x = getattr(self, f"up{i}")(_up(x))
        return self.head(x)


class TorchXTaskNet(nn.Module):
    """The original's model: encoder, a decoder per task, s2d and d2s; NCHW in, dict out."""

    def __init__(self, tasks=("seg", "depth"), num_classes: int = 7, encoder_depth: int = 34,
                 transfer: bool = True, transfer_batch_norm: bool = False,
                 transfer_wider: bool = False, mid_features: int = 128,
                 encoder_width: float = 1.0, transfer_width: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.tasks = tuple(tasks)
        self.transfer = transfer
        self.encoder = TorchResNet(encoder_depth, encoder_width)
        taps = encoder_tap_channels(encoder_depth, encoder_width)
        for task in self.tasks:
            self.add_module(f"{task}_decoder", TorchTaskDecoder(
                taps, task_channels(task, num_classes), mid_features))  # fmt: skip
        if transfer:
            options = (transfer_batch_norm, transfer_wider, transfer_width)
            self.s2d = TorchTaskTransferNet(num_classes, 1, *options)
            self.d2s = TorchTaskTransferNet(1, num_classes, *options)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        e = self.encoder
        x0 = e.relu(e.bn1(e.conv1(x)))
        out = [x0]
        x = e.maxpool(x0)
        for stage in range(1, 5):
            x = getattr(e, f"layer{stage}")(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, direct_only: bool = False) -> dict[str, torch.Tensor]:
        taps = self.taps(x)
        out = {t: getattr(self, f"{t}_decoder")(taps) for t in self.tasks}
        if "normal" in out:
            out["normal"] = F.normalize(out["normal"], dim=1, eps=1e-12)
        if self.transfer and not direct_only:
            out["tdepth"] = self.s2d(out["seg"])
            out["tseg"] = self.d2s(out["depth"])
        return out


def to_flax_variables(net: nn.Module) -> dict:
    """{params, batch_stats} for `models/xtask.py` with the twin's weights."""
    from xtc_jax.convert import names
    from xtc_jax.mtl.model import split_frozen_batch_norm

    state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    params, stats = split_frozen_batch_norm(names.to_flax(state))
    return {"params": params, "batch_stats": stats}
