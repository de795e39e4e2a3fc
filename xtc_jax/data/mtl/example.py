"""One multi-task example: resize to the config's size, RandomScaleCrop and flip (xtask_mt.md §1.8).

A record (from any multi-task source) holds decoded arrays at native size:
"rgb" (H, W, 3) float in [0, 1], "seg" (H, W) int (−1 = unlabelled), "depth"
(H, W, 1) float with 0 = invalid, optionally "normal" (H, W, 3) unit vectors
(zero = invalid), and "name" (the file, for messages).

The transform resizes to (height, width) (image and normals bilinear, labels
and depth nearest, so no invalid pixel bleeds into a valid one) and, when
augmenting, applies MTAN's RandomScaleCrop: s ∈ {1.0, 1.2, 1.5}, a random
(H/s, W/s) crop resized back, depth rescaled with the zoom (metric depth
÷ s, inverse depth × s), then a horizontal flip with p = 0.5 (normals' x
negated). Unlike the original on Cityscapes (§1.12 items 1, 2), the masks are
derived after the crop, so they stay aligned, and images are never resized
nearest-neighbour. Output: "rgb", "seg" (int32), "depth", "depth_mask"
(float 0/1) and "normal" with "normal_mask" when the record has normals.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from xtc_jax.errors import DataError

SCALES = (1.0, 1.2, 1.5)
DEPTH_KINDS = ("metric", "inverse")


def _resize(array: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    """(h, w[, c]) float or int -> (height, width[, c]), per channel through PIL's 'F' mode."""
    if array.shape[:2] == (height, width):
        return array
    resample = Image.Resampling.BILINEAR if method == "bilinear" else Image.Resampling.NEAREST
    channels = array[..., None] if array.ndim == 2 else array
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c], np.float32), "F")
                      .resize((width, height), resample)) for c in range(channels.shape[-1])]
    stacked = np.stack(out, axis=-1).astype(array.dtype if method == "nearest" else np.float32)
    return stacked[..., 0] if array.ndim == 2 else stacked


@dataclasses.dataclass(frozen=True)
class MultiTaskTransform:
    """record, rng (None: no augmentation) -> a training example of fixed (height, width)."""

    height: int
    width: int
    depth_kind: str = "metric"

    def __post_init__(self):
        if self.depth_kind not in DEPTH_KINDS:
            raise DataError(f"depth kind {self.depth_kind!r}: use one of {DEPTH_KINDS}.")

    def __call__(self, record: dict[str, Any], rng: np.random.Generator | None) -> dict:
        h, w = self.height, self.width
        rgb = _resize(np.asarray(record["rgb"], np.float32), h, w, "bilinear")
        seg = _resize(np.asarray(record["seg"], np.int32), h, w, "nearest")
        depth = _resize(np.asarray(record["depth"], np.float32), h, w, "nearest")
        normal = record.get("normal")
        if normal is not None:
            normal = _resize(np.asarray(normal, np.float32), h, w, "bilinear")
        if rng is not None:
            scale = float(rng.choice(SCALES))
            ch, cw = int(h / scale), int(w / scale)
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            flip = bool(rng.random() < 0.5)

            def crop(a: np.ndarray, method: str) -> np.ndarray:
                return _resize(a[top:top + ch, left:left + cw], h, w, method)

            rgb, seg, depth = crop(rgb, "bilinear"), crop(seg, "nearest"), crop(depth, "nearest")
            depth = depth / scale if self.depth_kind == "metric" else depth * scale
            if normal is not None:
                normal = crop(normal, "bilinear")
            if flip:
                rgb, seg, depth = rgb[:, ::-1], seg[:, ::-1], depth[:, ::-1]
                if normal is not None:
                    normal = normal[:, ::-1] * np.array([-1.0, 1.0, 1.0], np.float32)
        example = {
            "rgb": np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), np.float32),
            "seg": np.ascontiguousarray(seg, np.int32),
            "depth": np.ascontiguousarray(depth, np.float32),
            "depth_mask": (np.asarray(depth) > 0).astype(np.float32),
        }
        if normal is not None:
            length = np.linalg.norm(normal, axis=-1, keepdims=True)
            example["normal"] = np.ascontiguousarray(normal / np.maximum(length, 1e-6),
                                                     np.float32)  # fmt: skip
            example["normal_mask"] = (length[..., 0] > 0.5).astype(np.float32)
        return example
