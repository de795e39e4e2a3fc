"""NYUv2 in MTAN's preprocessed layout (xtask_mt.md §1.8, §2).

    ROOT/{train,val}/{image,label,depth,normal}/{i}.npy     i = 0 .. N-1

image: (H, W, 3) float in [0, 1]; label: (H, W) classes 0..12, −1 unlabelled;
depth: (H, W, 1) metres, 0 invalid; normal: (H, W, 3), zero invalid (optional:
read only for the 3-task setting). MTAN's "val" is the official 654-image test
split. Files are read with `np.load(allow_pickle=False)`: an object array is
refused, never unpickled.
"""

from __future__ import annotations

import os

import numpy as np

from xtc_jax.errors import DataError

NUM_CLASSES = 13
CLASSES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "painting",
           "sofa", "table", "tv", "wall", "window")  # fmt: skip
SPLITS = ("train", "val")
FIELDS = ("image", "label", "depth")


def _count(folder: str) -> int:
    names = [n for n in os.listdir(folder) if n.endswith(".npy")]
    expected = {f"{i}.npy" for i in range(len(names))}
    if set(names) != expected:
        missing = sorted(expected - set(names))[:3]
        raise DataError(f"{folder}: files must be 0.npy .. {len(names) - 1}.npy with no gaps "
                        f"(missing e.g. {', '.join(missing)}); MTAN's layout numbers them "
                        "from 0.")  # fmt: skip
    return len(names)


def load_npy(path: str) -> np.ndarray:
    """np.load without pickles, with a DataError naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npy array ({error}); re-export it with "
                        "np.save.") from error  # fmt: skip


class NYUv2Source:
    """Random access to one split of an MTAN-layout NYUv2 tree; records as `data/mtl/example.py`."""

    def __init__(self, root: str, split: str, normals: bool = False,
                 num_classes: int = NUM_CLASSES):  # fmt: skip
        if split not in SPLITS:
            raise DataError(f"NYUv2 split {split!r}: MTAN's layout has {' and '.join(SPLITS)} "
                            "(val is the official test split).")  # fmt: skip
        self.folder = os.path.join(root, split)
        self.fields = FIELDS + (("normal",) if normals else ())
        self.num_classes = num_classes
        counts = {}
        for field in self.fields:
            path = os.path.join(self.folder, field)
            if not os.path.isdir(path):
                raise DataError(
                    f"{path} is missing: data.path must be an MTAN-preprocessed NYUv2 root "
                    f"with {split}/{{{','.join(self.fields)}}}/0.npy ... (see docs/mtl.md)."
                )
            counts[field] = _count(path)
        if len(set(counts.values())) != 1:
            raise DataError(f"{self.folder}: the folders hold different numbers of files "
                            f"({', '.join(f'{k} {v}' for k, v in counts.items())}); every "
                            "image needs its label and depth.")  # fmt: skip
        self.size = counts["image"]
        if not self.size:
            raise DataError(f"{self.folder}/image holds no .npy files.")

    def __len__(self) -> int:
        return self.size

    def _read(self, field: str, index: int) -> tuple[np.ndarray, str]:
        path = os.path.join(self.folder, field, f"{index}.npy")
        return load_npy(path), path

    def __getitem__(self, index: int) -> dict:
        image, image_path = self._read("image", index)
        label, label_path = self._read("label", index)
        depth, depth_path = self._read("depth", index)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise DataError(f"{image_path}: shape {image.shape}, expected (H, W, 3) floats "
                            "in [0, 1].")  # fmt: skip
        hw = image.shape[:2]
        if label.shape != hw:
            raise DataError(f"{label_path}: shape {label.shape}, expected {hw} (the image's "
                            "height and width).")  # fmt: skip
        if depth.shape not in (hw, (*hw, 1)):
            raise DataError(f"{depth_path}: shape {depth.shape}, expected {(*hw, 1)}.")
        label = np.rint(label).astype(np.int32)
        bad = (label < -1) | (label >= self.num_classes)
        if bad.any():
            raise DataError(f"{label_path}: label {int(label[bad][0])} is outside the "
                            f"{self.num_classes} classes 0..{self.num_classes - 1} (−1 = "
                            "unlabelled); fix the file or data.num_classes.")  # fmt: skip
        record = {"rgb": image.astype(np.float32), "seg": label, "name": image_path,
                  "depth": depth.reshape(*hw, 1).astype(np.float32)}  # fmt: skip
        if "normal" in self.fields:
            normal, normal_path = self._read("normal", index)
            if normal.shape != (*hw, 3):
                raise DataError(f"{normal_path}: shape {normal.shape}, expected {(*hw, 3)}.")
            record["normal"] = normal.astype(np.float32)
        return record
