"""Writes small fake Taskonomy trees (tiny PNGs in the right formats) for tests.

Files follow the real naming (`point_P_view_V_domain_{token}`, e.g. the
`segmentsemantic` token inside `segment_semantic/`) in any of the four
layouts of `xtc_jax.data.layouts`. Pixel values are random: these trees test
indexing, splits and storage, not the meaning of the pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from xtc_jax import domains as domains_lib
from xtc_jax.data.sources import layouts
from xtc_jax.infra.png import encode_png

SPLITS = ("train", "val", "test")
DEFAULT_DOMAINS = ("rgb", "normal", "depth_zbuffer", "segment_semantic")


def fake_array(domain: str, size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random array in `domain`'s on-disk format (bit depth, channels); (H, W) = size."""
    height, width = (size, size) if isinstance(size, int) else size
    spec = domains_lib.DOMAINS.get(domain)
    if spec is None or spec.bit_depth == 16:  # unknown pixel domains: 16-bit gray
        return rng.integers(0, 65535, (height, width), dtype=np.uint16)
    channels = 3 if 3 in spec.stored_channels else spec.stored_channels[0]
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 255, shape, dtype=np.uint8)


def fake_file(domain: str, size: int | tuple[int, int], rng: np.random.Generator) -> bytes:
    """Encoded bytes of one fake file of `domain` (JSON for point_info)."""
    if domain == "point_info":
        return json.dumps({"point_uuid": int(rng.integers(1 << 30)), "fov": 0.9}).encode()
    return encode_png(fake_array(domain, size, rng))


def write_file(
    root: str | Path,
    layout: str,
    building: str,
    domain: str,
    point: int,
    view: int,
    data: bytes,
) -> Path:
    """Writes `data` where `layout` puts this file; returns its path."""
    ext = "json" if domain == "point_info" else "png"
    path = Path(root) / layouts.relative_path(layout, building, domain, point, view, ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_tree(
    root: str | Path,
    layout: str = "plain",
    buildings: Iterable[str] = ("alpha", "synth_000"),
    points: Iterable[int] = (1, 10),
    views: Iterable[int] = (0, 2),
    domains: Iterable[str] = DEFAULT_DOMAINS,
    size: int = 8,
    seed: int = 0,
) -> dict[tuple[str, int, int, str], Path]:
    """Writes every (building, point, view, domain) file; returns their paths by that key."""
    rng = np.random.default_rng(seed)
    paths = {}
    for building in buildings:
        for point in points:
            for view in views:
                for domain in domains:
                    data = fake_file(domain, size, rng)
                    path = write_file(root, layout, building, domain, point, view, data)
                    paths[(building, point, view, domain)] = path
    return paths


def write_split_csv(
    path: str | Path, table: Mapping[str, Iterable[str]], line_ending: str = "\r"
) -> Path:
    """A Taskonomy split CSV (`id,train,val,test`), by default with old Mac `\\r` endings."""
    rows = ["id,train,val,test"]
    split_of = {b: s for s, bs in table.items() for b in bs}
    for building, split in split_of.items():
        rows.append(",".join([building, *("1" if s == split else "0" for s in SPLITS)]))
    Path(path).write_bytes(line_ending.join(rows).encode() + line_ending.encode())
    return Path(path)
