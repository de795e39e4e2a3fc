"""xtask_mt's `XTaskTSNet`: a shared ResNet encoder, a decoder per task, task-transfer nets.

Tasks are "seg" (class logits), "depth" (one raw channel: metric depth, or
inverse depth for Cityscapes) and, beyond the original's two, "normal"
(three channels, unit length). With both seg and depth and `transfer` on, two
`TaskTransferNet`s map the direct predictions across: "s2d" (seg → depth,
log-softmax input) and "d2s" (depth → seg). They read the direct predictions
themselves, not stop-gradient copies, so a transferred loss trains its source
branch too (xtask_mt.md §1.5). `direct_only=True` skips them (inference).

Output: {"seg", "depth", "normal"} for the model's tasks, plus "tseg" (d2s of
the depth) and "tdepth" (s2d of the seg) when the transfers run.
Input H and W must be multiples of 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xtc_jax.models.mtl_decoder import TaskDecoder
from xtc_jax.models.resnet import DEPTHS, EXPANSION, ResNet
from xtc_jax.models.task_transfer import TaskTransferNet
from xtc_jax.models.unet import ModelError

TASKS = ("seg", "depth", "normal")


def task_channels(task: str, num_classes: int) -> int:
    """Output channels of a task's decoder."""
    return {"seg": num_classes, "depth": 1, "normal": 3}[task]


class XTaskNet(nn.Module):
    """The multi-task network; `tasks` is any subset of TASKS in any order.

    Attributes:
      tasks: the decoders, e.g. ("seg", "depth"); one task is a single-task baseline.
      num_classes: segmentation classes (7 or 19 Cityscapes, 13 NYUv2).
      encoder_depth: ResNet 18/34/50/101/152 (the original's `enc_layers`, default 34).
      encoder_width: channel multiplier of the encoder (1.0 = torchvision; small for tests).
      transfer: build the two transfer nets (needs both seg and depth).
      transfer_batch_norm, transfer_wider: the original's `batch_norm`, `wider_ttnet`.
      transfer_width: multiplier of the transfer nets' features (1.0 = the original).
      mid_features: decoder width (128).
    """

    tasks: Sequence[str] = ("seg", "depth")
    num_classes: int = 7
    encoder_depth: int = 34
    encoder_width: float = 1.0
    transfer: bool = True
    transfer_batch_norm: bool = False
    transfer_wider: bool = False
    transfer_width: float = 1.0
    mid_features: int = 128
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ModelError(f"XTaskNet: tasks must be distinct names from {TASKS}, got "
                             f"{tuple(self.tasks)}")  # fmt: skip
        if self.transfer and not {"seg", "depth"} <= set(self.tasks):
            raise ModelError("XTaskNet: transfer=True needs both the seg and depth tasks; "
                             f"got {tuple(self.tasks)} (set transfer=False)")  # fmt: skip
        if "seg" in self.tasks and self.num_classes < 2:
            raise ModelError(f"XTaskNet: num_classes must be >= 2, got {self.num_classes}")
        if self.encoder_depth not in DEPTHS:
            raise ModelError(f"XTaskNet: encoder_depth must be one of {sorted(DEPTHS)}, got "
                             f"{self.encoder_depth}")  # fmt: skip
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False,
                 direct_only: bool = False) -> dict[str, jnp.ndarray]:  # fmt: skip
        if x.ndim != 4 or x.shape[1] % 32 or x.shape[2] % 32:
            raise ModelError(f"XTaskNet: expected an NHWC batch with H and W multiples of 32, "
                             f"got {tuple(x.shape)}")  # fmt: skip
        taps = ResNet(self.encoder_depth, self.encoder_width, dtype=self.dtype, norm="batch",
                      taps=True, name="encoder")(x, train)  # fmt: skip
        out = {}
        for task in self.tasks:
            decoder = TaskDecoder(task_channels(task, self.num_classes), self.mid_features,
                                  self.dtype, name=f"{task}_decoder")  # fmt: skip
            out[task] = decoder(taps, train)
        if "normal" in out:
            norm = jnp.linalg.norm(out["normal"], axis=-1, keepdims=True)
            out["normal"] = out["normal"] / jnp.maximum(norm, 1e-12)
        if self.transfer and not direct_only:
            options = dict(use_batch_norm=self.transfer_batch_norm, wider=self.transfer_wider,
                           width=self.transfer_width, dtype=self.dtype)  # fmt: skip
            out["tdepth"] = TaskTransferNet(1, log_softmax_input=True, name="s2d",
                                            **options)(out["seg"], train)  # fmt: skip
            out["tseg"] = TaskTransferNet(self.num_classes, name="d2s",
                                          **options)(out["depth"], train)  # fmt: skip
        return out


def encoder_tap_channels(depth: int, width: float = 1.0) -> list[int]:
    """Channels of the five taps: [64, 64, 128, 256, 512] at width 1, ×4 after the first for
    ResNet-50+."""
    kind, _ = DEPTHS[depth]
    planes = [max(1, round(c * width)) for c in (64, 64, 128, 256, 512)]
    return planes[:1] + [c * EXPANSION[kind] for c in planes[1:]]
