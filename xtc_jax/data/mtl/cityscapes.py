"""Cityscapes in the official layout, as xtask_mt reads it (xtask_mt.md §1.9).

    ROOT/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png
    ROOT/disparity/{split}/{city}/{stem}_disparity.png        (16-bit)

Labels: the official label ids mapped to 19 train classes or to the 7
categories (MTAN's setting); void ids become −1. Depth is xtask_mt's inverse
depth: (p − 1) / 256² for disparity p > 0, clipped at 0.4922; p = 0 is
invalid (0). Images are read at their size; the example transform resizes
(images bilinear, unlike the original's nearest-neighbour, §1.12 item 2).
"""

from __future__ import annotations

import os

import numpy as np

from xtc_jax.errors import DataError
from xtc_jax.infra import png

SPLITS = ("train", "val", "test")
INVERSE_DEPTH_MAX = 0.4922
#: train id of each official label id for the 19 classes (void ids are absent: −1).
TRAIN_IDS_19 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
#: the 7 categories: flat, construction, object, nature, sky, human, vehicle.
CATEGORY_RANGES_7 = ((7, 10, 0), (11, 16, 1), (17, 20, 2), (21, 22, 3), (23, 23, 4),
                     (24, 25, 5), (26, 33, 6))  # fmt: skip
CLASSES = {
    7: ("flat", "construction", "object", "nature", "sky", "human", "vehicle"),
    19: ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
         "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
         "bus", "train", "motorcycle", "bicycle"),
}  # fmt: skip


def label_table(num_classes: int) -> np.ndarray:
    """(256,) int32: official label id -> class (−1 for void), for 7 or 19 classes."""
    table = np.full(256, -1, np.int32)
    if num_classes == 19:
        for label_id, train_id in TRAIN_IDS_19.items():
            table[label_id] = train_id
    elif num_classes == 7:
        for lo, hi, category in CATEGORY_RANGES_7:
            table[lo:hi + 1] = category
    else:
        raise DataError(f"Cityscapes has 7 (categories) or 19 classes, not {num_classes}; set "
                        "data.num_classes to 7 or 19.")  # fmt: skip
    return table


def inverse_depth(disparity: np.ndarray) -> np.ndarray:
    """xtask_mt's inverse depth from the 16-bit disparity PNG values (0 = invalid)."""
    p = disparity.astype(np.float32)
    value = np.clip((p - 1.0) / 65536.0, 0.0, INVERSE_DEPTH_MAX)
    return np.where(p > 0, value, 0.0).astype(np.float32)


class CityscapesSource:
    """Random access to one split; records as `data/mtl/example.py` describes."""

    def __init__(self, root: str, split: str, num_classes: int = 7):
        if split not in SPLITS:
            raise DataError(f"Cityscapes split {split!r}: use one of {', '.join(SPLITS)}.")
        self.table = label_table(num_classes)
        self.num_classes = num_classes
        images = os.path.join(root, "leftImg8bit", split)
        for folder in ("leftImg8bit", "gtFine", "disparity"):
            path = os.path.join(root, folder, split)
            if not os.path.isdir(path):
                raise DataError(f"{path} is missing: data.path must be a Cityscapes root with "
                                f"leftImg8bit/, gtFine/ and disparity/ (the official "
                                f"packages leftImg8bit_trainvaltest, gtFine_trainvaltest, "
                                f"disparity_trainvaltest unpacked into it).")  # fmt: skip
        self.items = []
        for city in sorted(os.listdir(images)):
            for name in sorted(os.listdir(os.path.join(images, city))):
                if name.endswith("_leftImg8bit.png"):
                    stem = name[: -len("_leftImg8bit.png")]
                    self.items.append(tuple(
                        os.path.join(root, folder, split, city, f"{stem}_{suffix}.png")
                        for folder, suffix in (("leftImg8bit", "leftImg8bit"),
                                               ("gtFine", "gtFine_labelIds"),
                                               ("disparity", "disparity"))))  # fmt: skip
        if not self.items:
            raise DataError(f"{images} holds no */*_leftImg8bit.png images.")
        missing = [p for item in self.items for p in item[1:] if not os.path.isfile(p)]
        if missing:
            raise DataError(f"{len(missing)} label or disparity files are missing, e.g. "
                            f"{missing[0]}: every image needs its gtFine labelIds and its "
                            "disparity.")  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        image_path, label_path, disparity_path = self.items[index]
        rgb = _read(image_path, 8)
        labels = _read(label_path, 8)
        disparity = _read(disparity_path, 16)
        if rgb.ndim != 3 or rgb.shape[-1] < 3:
            raise DataError(f"{image_path}: expected an RGB image, got shape {rgb.shape}.")
        hw = rgb.shape[:2]
        for path, array in ((label_path, labels), (disparity_path, disparity)):
            if array.shape[:2] != hw:
                raise DataError(f"{path}: size {array.shape[:2]} differs from its image's "
                                f"{hw}.")  # fmt: skip
        labels = labels if labels.ndim == 2 else labels[..., 0]
        disparity = disparity if disparity.ndim == 2 else disparity[..., 0]
        return {"rgb": rgb[..., :3].astype(np.float32) / 255.0,
                "seg": self.table[labels.astype(np.int64)],
                "depth": inverse_depth(disparity)[..., None], "name": image_path}  # fmt: skip


def _read(path: str, bit_depth: int) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    image = png.decode_png(data, path)
    expected = np.uint16 if bit_depth == 16 else np.uint8
    if image.dtype != expected:
        raise DataError(f"{path}: a {8 * image.dtype.itemsize}-bit PNG, expected {bit_depth}-bit "
                        f"({'disparity' if bit_depth == 16 else 'images and labelIds'}).")
    return image
