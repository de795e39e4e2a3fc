"""The built-in synthetic Taskonomy as multi-task records: segment_semantic + depth + normal.

The renderer draws nine of Taskonomy's 17 semantic classes; the multi-task
model predicts those nine (`CLASSES`, in Taskonomy's order), and pixels of
any other id, or "uncertain", are unlabelled (−1). Depth is the z-buffer in
metres (0 where there is no surface); normals are unit vectors in the
camera frame (zero where invalid). The Taskonomy source decodes the PNGs at
`size` square; the example transform does the rest.
"""

from __future__ import annotations

import numpy as np

from xtc_jax import domains as domains_lib
from xtc_jax.data import transforms

CLASSES = ("background", "chair", "couch", "potted plant", "bed", "dining table", "oven",
           "refrigerator", "vase")  # fmt: skip
#: The Taskonomy domains a multi-task record is made of.
DOMAINS = ("rgb", "segment_semantic", "depth_zbuffer", "normal", "mask_valid")
DEPTH_METRES = domains_lib.DEPTH_XTC_SCALE / domains_lib.DEPTH_UNITS_PER_METRE


def class_table() -> np.ndarray:
    """(18,) int32: decoded Taskonomy class id + 1 (0 = uncertain) -> class in CLASSES or −1."""
    table = np.full(len(domains_lib.SEMANTIC_CLASSES) + 1, -1, np.int32)
    for i, name in enumerate(CLASSES):
        table[domains_lib.SEMANTIC_CLASSES.index(name) + 1] = i
    return table


class SyntheticMultiTaskSource:
    """Multi-task records of a Taskonomy-layout source (`prepare.open_split` with DOMAINS)."""

    def __init__(self, source, size: int):
        self.source = source
        self.size = size
        self.table = class_table()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        record = self.source[index]
        arrays = transforms.transform_example(record, DOMAINS, self.size, transforms.NO_AUGMENT)
        valid = arrays["mask_valid"] > 0.5
        ids = np.rint(arrays["segment_semantic"][..., 0]).astype(np.int64) + 1
        normal = 2.0 * arrays["normal"] - 1.0
        return {
            "rgb": arrays["rgb"],
            "seg": self.table[np.clip(ids, 0, len(self.table) - 1)],
            "depth": np.where(valid, arrays["depth_zbuffer"] * DEPTH_METRES, 0.0),
            "normal": np.where(valid, normal, 0.0).astype(np.float32),
            "name": transforms.record_name(record),
        }
