"""Which network a published `.pth` file holds, from its file name (xtconsistency.md §2.5).

`identify("normal2curvature.pth")` -> Identity(edge="normal->principal_curvature",
arch="dense1by1", downsample=0). The original's domain spellings (zdepth,
curvature, reshade, edges2d, sobel_edges, ...) come out canonical; the `_new`,
`_baseline` and `_consistency` suffixes are dropped. A `{src}2{dst}` pair not
in the table gets the original's fallback, a UNet with 5 downsamples.
torchvision's ImageNet files (`resnet50-0676ba61.pth`, `resnet18-f37072fd.pth`,
...) are the "imagenet" perceptual network: rgb->imagenet, a ResNet of that depth.
"""

from __future__ import annotations

import dataclasses
import os
import re

from xtc_jax import domains as domains_lib
from xtc_jax.errors import ConfigError

#: The original's spellings of a domain in file names, where they differ from ours.
_SPELLINGS = {
    "zdepth": "depth_zbuffer", "depth": "depth_zbuffer", "zdepth_zbuffer": "depth_zbuffer",
    "curvature": "principal_curvature", "reshade": "reshading", "edges2d": "edge_texture",
    "sobel_edges": "edge_texture",
}  # fmt: skip
#: (src, dst) -> (arch, downsample) where the original's table is not "unet, 5".
_TABLE = {
    ("normal", "principal_curvature"): ("dense1by1", 0),
    ("normal", "depth_zbuffer"): ("unet_depth", 0),
    ("normal", "edge_texture"): ("unet", 4),
    ("normal", "reshading"): ("unet_reshade", 5),
    ("depth_zbuffer", "normal"): ("unet", 6),
    ("depth_zbuffer", "edge_texture"): ("unet", 4),
    ("depth_zbuffer", "principal_curvature"): ("unet", 4),
    ("depth_zbuffer", "reshading"): ("unet_reshade", 5),
    ("reshading", "normal"): ("unet", 4),
    ("rgb", "keypoints2d"): ("unet", 3),
    ("rgb", "normal"): ("unet", 6),
    ("rgb", "reshading"): ("unet_reshade", 5),
    ("rgb", "depth_zbuffer"): ("unet", 6),
    ("principal_curvature", "edge_texture"): ("unet", 4),
    ("edge_texture", "depth_zbuffer"): ("unet", 6),
    ("principal_curvature", "normal"): ("unet_old2", 0),
    ("reshading", "depth_zbuffer"): ("unet_reshade", 5),  # 1 output channel
}
_SUFFIX = re.compile(r"(_new)?(_baseline|_consistency)?$")
_TORCHVISION = re.compile(r"^resnet(18|34|50|101|152)(-[0-9a-f]+)?$")
#: The edge of an ImageNet network: its features serve normal, depth and reshading alike.
IMAGENET_EDGE = "rgb->imagenet"


@dataclasses.dataclass(frozen=True)
class Identity:
    edge: str
    arch: str
    downsample: int
    depth: int = 0  # a ResNet's depth (18 ... 152)


def _domain(spelling: str) -> str | None:
    try:
        return domains_lib.get(_SPELLINGS.get(spelling, spelling)).name
    except ConfigError:
        return None


def split_name(path: str) -> tuple[str, str]:
    """(src, dst) of a file named SRC2DST[_new][_baseline|_consistency].pth, canonical."""
    stem = _SUFFIX.sub("", os.path.splitext(os.path.basename(path))[0])
    for i, char in enumerate(stem):  # "keypoints2d2normal": try every "2"
        if char == "2":
            src, dst = _domain(stem[:i]), _domain(stem[i + 1 :])
            if src and dst:
                return src, dst
    raise ConfigError(f"{path}: the file name names no edge (the original's names are "
                      "SRC2DST[_new].pth); pass --edge src->dst --arch NAME.")  # fmt: skip


def identify(path: str) -> Identity:
    """The edge and architecture of a published file; ConfigError for an unknown name."""
    torchvision = _TORCHVISION.match(os.path.splitext(os.path.basename(path))[0])
    if torchvision:
        return Identity(IMAGENET_EDGE, "resnet", 0, int(torchvision.group(1)))
    src, dst = split_name(path)
    arch, downsample = _TABLE.get((src, dst), ("unet", 5))
    return Identity(f"{src}->{dst}", arch, downsample)
