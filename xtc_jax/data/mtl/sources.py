"""The train, validation and test sources of a multi-task config's `data` section.

data.dataset: "synthetic" (the built-in data; its train/val/test buildings),
"nyuv2" (MTAN layout at data.path) or "cityscapes" (official layout at
data.path). NYUv2's and Cityscapes' "val" folder is the test split their
papers report on; the original selected its checkpoint on it (§1.12 item 8).
Here the validation split is data.val_fraction of the train folder's images,
evenly spaced and held out of training, and the test split is "val".
"""

from __future__ import annotations

from xtc_jax.data import prepare
from xtc_jax.data.mtl import cityscapes, nyuv2, synthetic
from xtc_jax.errors import ConfigError

DATASETS = ("synthetic", "nyuv2", "cityscapes")
SPLITS = ("train", "val", "test")


class Subset:
    """The examples `indices` of a random-access source."""

    def __init__(self, source, indices: list[int]):
        self.source = source
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.source[self.indices[index]]


def held_out(n: int, fraction: float) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): every round(1/fraction)-th image is validation."""
    if not 0 < fraction < 1:
        raise ConfigError(f"data.val_fraction={fraction}: use a fraction in (0, 1), e.g. 0.1.")
    every = max(2, round(1 / fraction))
    val = list(range(every // 2, n, every))
    chosen = set(val)
    return [i for i in range(n) if i not in chosen], val


def num_classes(data) -> int:
    """The segmentation classes of the config's dataset."""
    if data.dataset == "synthetic":
        return len(synthetic.CLASSES)
    return data.num_classes


def class_names(data) -> tuple[str, ...]:
    if data.dataset == "synthetic":
        return synthetic.CLASSES
    if data.dataset == "nyuv2":
        return nyuv2.CLASSES
    return cityscapes.CLASSES[data.num_classes]


def check(data) -> None:
    """ConfigError for a dataset setting that cannot work, before anything is read."""
    if data.dataset not in DATASETS:
        raise ConfigError(f"data.dataset={data.dataset!r}: use one of {', '.join(DATASETS)}.")
    if data.dataset != "synthetic" and not data.path:
        raise ConfigError(f"data.dataset={data.dataset!r} needs --config.data.path=ROOT (the "
                          "dataset's folder; see docs/mtl.md for its layout).")  # fmt: skip
    if data.dataset == "nyuv2" and data.num_classes != nyuv2.NUM_CLASSES:
        raise ConfigError(f"data.num_classes={data.num_classes}: NYUv2 has 13 classes.")
    if data.dataset == "cityscapes" and data.num_classes not in (7, 19):
        raise ConfigError(f"data.num_classes={data.num_classes}: Cityscapes has 7 "
                          "(categories) or 19 classes.")  # fmt: skip
    height, width = data.size
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ConfigError(f"data.size={tuple(data.size)}: height and width must be positive "
                          "multiples of 32 (the encoder downsamples 32 times).")  # fmt: skip


def open_splits(data, workdir: str, normals: bool = False) -> dict:
    """{"train", "val", "test"}: random-access sources of multi-task records."""
    check(data)
    if data.dataset == "synthetic":
        location = prepare.data_location(data, workdir)
        size = data.synthetic.size
        return {name: synthetic.SyntheticMultiTaskSource(
                    prepare.open_split(data, location, data[f"{name}_split"]), size)
                for name in SPLITS}  # fmt: skip
    if data.dataset == "nyuv2":
        full = nyuv2.NYUv2Source(data.path, "train", normals=normals)
        test = nyuv2.NYUv2Source(data.path, "val", normals=normals)
    else:
        full = cityscapes.CityscapesSource(data.path, "train", data.num_classes)
        test = cityscapes.CityscapesSource(data.path, "val", data.num_classes)
    train, val = held_out(len(full), data.val_fraction)
    return {"train": Subset(full, train), "val": Subset(full, val), "test": test}
