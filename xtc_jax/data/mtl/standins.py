"""Tiny NYUv2 and Cityscapes stand-ins rendered by the built-in renderer, in the real layouts.

    python -m xtc_jax.data.mtl.standins --layout nyuv2 --out DIR [--views 24 --size 64]
    python -m xtc_jax.data.mtl.standins --layout cityscapes --out DIR

The real loaders (`nyuv2.py`, `cityscapes.py`) are tested end to end on
these, and `configs/mtl_nyu.py:cpu` / `configs/mtl_cityscapes.py:cpu` run on
them with no download. Scenes come from the synthetic Taskonomy; its nine
classes are mapped onto NYUv2's 13 classes or Cityscapes label ids, depth is
written in metres (NYUv2) or as 16-bit disparity p = 65536·(0.1 / depth) + 1
(Cityscapes, so the loader's inverse depth is 0.1 / metres). Images are
square renders stretched to a 3:4 (NYUv2) or 1:2 (Cityscapes) frame.
The pictures are not NYUv2's or Cityscapes'; only the layout and encodings are.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from xtc_jax.data.mtl import synthetic
from xtc_jax.data.mtl.example import _resize
from xtc_jax.data.sources import shards
from xtc_jax.data.synthetic import generate
from xtc_jax.infra import atomic, png

#: synthetic class -> NYUv2 class (bed books ceiling chair floor furniture objects painting
#: sofa table tv wall window).
TO_NYU = {"background": 11, "chair": 3, "couch": 8, "potted plant": 6, "bed": 0,
          "dining table": 9, "oven": 5, "refrigerator": 5, "vase": 6}  # fmt: skip
#: synthetic class -> Cityscapes label id (0 = unlabeled).
TO_CITYSCAPES = {"background": 11, "chair": 26, "couch": 24, "potted plant": 21, "bed": 22,
                 "dining table": 7, "oven": 17, "refrigerator": 23, "vase": 33}  # fmt: skip
LAYOUTS = ("nyuv2", "cityscapes")
SHAPES = {"nyuv2": (3, 4), "cityscapes": (1, 2)}  # height : width
DISPARITY_SCALE = 0.1  # inverse depth = 0.1 / metres


def _records(views: int, size: int, seed: int, scratch: str):
    """(split, record) of a rendered tree: every split of the synthetic Taskonomy."""
    tree = os.path.join(scratch, "tree")
    generate.generate(tree, buildings=3, views=views, size=size, seed=seed, progress=False)
    for split in ("train", "val"):
        source = synthetic.SyntheticMultiTaskSource(
            shards.open_source(tree, split, list(synthetic.DOMAINS)), size)
        for i in range(len(source)):
            yield split, i, source[i]


def _remap(seg: np.ndarray, table: dict[str, int], unlabelled: int) -> np.ndarray:
    out = np.full(seg.shape, unlabelled, np.int32)
    for index, name in enumerate(synthetic.CLASSES):
        out[seg == index] = table[name]
    return out


def write(layout: str, out: str, views: int = 24, size: int = 64, seed: int = 0) -> dict:
    """Writes the stand-in tree of `layout` into `out`; returns {split: images}."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: use one of {LAYOUTS}")
    rows, cols = SHAPES[layout]
    height, width = size * rows // cols, size
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for split, _, record in _records(views, size, seed, scratch):
            i = counts.get(split, 0)
            counts[split] = i + 1
            rgb = _resize(record["rgb"], height, width, "bilinear")
            seg = _resize(record["seg"], height, width, "nearest")
            depth = _resize(record["depth"], height, width, "nearest")
            if layout == "nyuv2":
                _write_nyu(out, split, i, rgb, seg, depth,
                           _resize(record["normal"], height, width, "nearest"))  # fmt: skip
            else:
                _write_cityscapes(out, split, i, rgb, seg, depth)
    return counts


def _save_npy(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic.write_bytes(path, buffer.getvalue())


def _write_nyu(out, split, i, rgb, seg, depth, normal) -> None:
    folder = os.path.join(out, split)
    _save_npy(os.path.join(folder, "image", f"{i}.npy"), rgb.astype(np.float32))
    _save_npy(os.path.join(folder, "label", f"{i}.npy"),
              _remap(seg, TO_NYU, -1).astype(np.float32))  # fmt: skip
    _save_npy(os.path.join(folder, "depth", f"{i}.npy"), depth.astype(np.float32))
    _save_npy(os.path.join(folder, "normal", f"{i}.npy"), normal.astype(np.float32))


def _write_cityscapes(out, split, i, rgb, seg, depth) -> None:
    city = "synthtown"
    stem = f"{city}_{i // 100:06d}_{i % 100:06d}"
    labels = _remap(seg, TO_CITYSCAPES, 0).astype(np.uint8)
    metres = depth[..., 0]
    disparity = np.where(metres > 0, np.rint(65536 * DISPARITY_SCALE / np.maximum(metres, 1e-3))
                         + 1, 0)  # fmt: skip
    files = {
        ("leftImg8bit", "leftImg8bit"): np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8),
        ("gtFine", "gtFine_labelIds"): labels,
        ("disparity", "disparity"): np.clip(disparity, 0, 65535).astype(np.uint16),
    }
    for (folder, suffix), array in files.items():
        path = os.path.join(out, folder, split, city, f"{stem}_{suffix}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic.write_bytes(path, png.encode_png(array))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xtc_jax.data.mtl.standins",
        description="Write a tiny NYUv2 (MTAN layout) or Cityscapes (official layout) stand-in "
                    "rendered by the built-in renderer.")  # fmt: skip
    parser.add_argument("--layout", choices=LAYOUTS, required=True)
    parser.add_argument("--out", required=True, help="folder to write (the data.path to use)")
    parser.add_argument("--views", type=int, default=24, help="views per building (3 buildings)")
    parser.add_argument("--size", type=int, default=64, help="render size; width of the images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = write(args.layout, args.out, args.views, args.size, args.seed)
    print(f"wrote a {args.layout} stand-in into {args.out}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
