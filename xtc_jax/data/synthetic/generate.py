"""Synthetic Taskonomy: procedural indoor buildings rendered to every domain, on disk.

    python -m xtc_jax.data.synthetic --out DIR --buildings 4 --views 30 --size 256 --seed 0

Each building (`synth_000`, `synth_001`, ...) is one procedural room
(`scene.py`). Views are grouped by fixation point: every view of point P
looks at the same 3D point, which projects to the image centre (Taskonomy's
"fixated" cameras). Files are written in Taskonomy's encodings
(`shared/reference/taskonomy.md` §2) and file names, in any of the four tree
layouts (`data/sources/layouts.py`), plus `train_val_test_synthetic.csv` (`\\r` line
endings, as the real split files). Every file is written atomically.

Determinism: a building's scene comes from SeedSequence(seed, (b, 0, 0, 0)),
its point P from (b, 1, P, 0), view V of P from (b, 2, P, V); so the output
is bit-identical for a seed whatever the number of workers.

Style: "base" (the default, what every model trains on) or "shifted" (`--style
shifted`): buildings `synth_shifted_000`, ... with held-out texture families,
lighting and furniture shapes (`scene.py`, `annotate.shade_rgb`), for testing
generalisation and shift detection. Their streams carry the style as a fifth
key element, so they never repeat a base building.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from xtc_jax.data.sources import layouts
from xtc_jax.data.synthetic import annotate, raycast
from xtc_jax.data.synthetic.scene import (
    STYLES,
    Scene,
    bounds,
    look_at_euler,
    opencv_rotation,
    sample_scene,
)
from xtc_jax.infra import atomic
from xtc_jax.infra.png import encode_png

#: Domains written per view (png), in this order; plus point_info (json).
PNG_DOMAINS = (
    "rgb", "depth_zbuffer", "depth_euclidean", "normal", "reshading", "principal_curvature",
    "edge_texture", "edge_occlusion", "keypoints2d", "keypoints3d", "segment_semantic",
)  # fmt: skip
SPLIT_FILE = "train_val_test_synthetic.csv"
WORLD_FRAME = "metres; z up; floor z=0; room spans [0,Lx]x[0,Ly]x[0,H] (see bounding_box_ranges)"
_UUID_NAMESPACE = uuid.UUID("5d1f4c1e-8a51-4c0e-9a57-7a1c0ffee000")


def building_name(index: int, style: str = "base") -> str:
    return f"synth_{index:03d}" if style == "base" else f"synth_{style}_{index:03d}"


def _rng(seed: int, *key: int, style: str = "base") -> np.random.Generator:
    """Independent stream for (seed, key); key padded to a fixed length so keys never collide,
    and a non-base style appended as a fifth element (base streams are unchanged)."""
    key = tuple(key) + (0,) * (4 - len(key))
    if style != "base":
        key += (STYLES.index(style),)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@functools.lru_cache(maxsize=8)
def building_scene(seed: int, building: int, style: str = "base") -> Scene:
    """The (cached) procedural scene of building index `building`."""
    rng = _rng(seed, building, 0, style=style)
    return sample_scene(rng, building_name(building, style), style)


def _first_hit(scene: Scene, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Batch cast of K rays (origins, dirs (K, 3)): t (K,), world normals (K, 3)."""
    hits = raycast.cast(scene, origins[:, None, :], dirs[:, None, :])
    return hits.t[:, 0], np.stack([c[:, 0] for c in hits.normal], axis=1)


def sample_point(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A point of interest on a visible surface (not a window) and its world normal."""
    lx, ly, h = scene.room
    for _ in range(20):
        origins = rng.uniform([0.4, 0.4, 0.8], [lx - 0.4, ly - 0.4, min(2.0, h - 0.3)], (32, 3))
        yaw, pitch = rng.uniform(0, 2 * np.pi, 32), rng.uniform(-1.0, 0.35, 32)
        dirs = np.stack(
            [np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], 1
        )
        if scene.prims:  # aim at objects more than their share of solid angle
            prim = [scene.prims[i] for i in rng.integers(len(scene.prims), size=32)]
            targets = np.array([np.mean(bounds(p), axis=0) for p in prim])
            aim = rng.random(32) < 0.6
            dirs[aim] = targets[aim] - origins[aim]
        ok = ~scene.inside_objects(origins, 0.05)
        t, normals = _first_hit(scene, origins, dirs)
        good = np.flatnonzero(ok & np.isfinite(t))
        if len(good):
            i = good[0]
            return origins[i] + t[i] * dirs[i], normals[i]
    raise RuntimeError(f"{scene.name}: found no surface point to fixate")


def sample_camera(scene: Scene, rng: np.random.Generator, point: np.ndarray) -> np.ndarray:
    """A camera location inside the room, outside objects, that sees `point` unoccluded."""
    lx, ly, h = scene.room
    best = None
    for _ in range(20):
        cams = rng.uniform([0.3, 0.3, 0.8], [lx - 0.3, ly - 0.3, min(2.2, h - 0.25)], (64, 3))
        delta = point - cams
        dist = np.linalg.norm(delta, axis=1)
        pitch = np.arcsin(np.clip(delta[:, 2] / dist, -1, 1))
        ok = (dist > 0.8) & (dist < 6.5) & (np.hypot(delta[:, 0], delta[:, 1]) > 0.25)
        ok &= (pitch > -1.3) & (pitch < 0.9) & ~scene.inside_objects(cams, 0.1)
        t, _ = _first_hit(scene, cams, delta)
        seen = ok & (t * dist > dist - 0.02)
        if seen.any():
            return cams[np.flatnonzero(seen)[0]]
        if best is None and ok.any():
            best = cams[np.flatnonzero(ok)[0]]
    if best is None:
        raise RuntimeError(f"{scene.name}: found no camera for point {point}")
    return best


@dataclasses.dataclass
class RenderedView:
    """One rendered view: raw on-disk arrays per domain, its point_info, and ground truth extras."""

    arrays: dict[str, np.ndarray]
    point_info: dict
    surface: np.ndarray  # (S, S) surface id per pixel (-1 = nothing hit); room faces 0..5
    scene: Scene


@functools.lru_cache(maxsize=64)
def fixation_point(seed: int, building: int, point: int,
                   style: str = "base") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(location, world normal) of point `point` of building `building` (cached)."""
    return sample_point(
        building_scene(seed, building, style), _rng(seed, building, 1, point, style=style)
    )


@dataclasses.dataclass
class CameraRender:
    """One camera's render: raw on-disk arrays per domain, the hits and the camera pose."""

    arrays: dict[str, np.ndarray]  # domain -> raw array in Taskonomy's on-disk encoding
    hits: raycast.Hits
    euler: tuple[float, float, float]  # Blender Euler xyz (sxyz), radians, roll 0
    rotation: np.ndarray  # (3, 3) OpenCV camera (x right, y down, z forward) -> world


def render_camera(
    scene: Scene,
    camera: np.ndarray,
    target: np.ndarray,
    fov: float,
    size: int,
    rng: np.random.Generator,
    style: str = "base",
) -> CameraRender:
    """Renders every domain from `camera` (3,) looking at `target` (3,), roll 0, in memory.

    fov: horizontal = vertical field of view, radians (square pixels); `rng` draws the lights
    (`annotate.shade_rgb`) and nothing else, so a fresh generator of one seed gives the same
    lighting from any camera.
    """
    euler = look_at_euler(camera, target)
    rotation = opencv_rotation(euler)
    rays_cam = raycast.camera_rays(size, fov)
    f_px = (size / 2) / math.tan(fov / 2)
    coords = ((np.arange(size) - (size - 1) / 2) / f_px).astype(np.float32)
    r = rotation.tolist()  # world ray = R @ (x, y, 1), per component, in float32
    rays_world = tuple(
        r[i][0] * coords[None, :] + r[i][1] * coords[:, None] + r[i][2] for i in range(3)
    )
    hits = raycast.cast(scene, camera, rays_world, cull=(rotation, f_px))
    depth = np.where(hits.valid, hits.t, 0.0)
    points = tuple(float(camera[i]) + depth * rays_world[i] for i in range(3))
    rgb = annotate.shade_rgb(scene, hits, points, camera, rng, style)
    arrays = {"rgb": rgb, **annotate.annotate(scene, hits, rays_cam, rotation, rgb)}
    return CameraRender(arrays=arrays, hits=hits, euler=euler, rotation=rotation)


def render_view(
    seed: int, building: int, point: int, view: int, size: int, style: str = "base"
) -> RenderedView:
    """Renders view `view` of point `point` of building `building` (all domains, in memory)."""
    scene = building_scene(seed, building, style)
    location, point_normal = fixation_point(seed, building, point, style)
    rng = _rng(seed, building, 2, point, view, style=style)
    camera = sample_camera(scene, rng, location)
    fov = float(rng.uniform(math.radians(45), math.radians(75)))
    rendered = render_camera(scene, camera, location, fov, size, rng, style)
    euler = rendered.euler
    look = (location - camera) / np.linalg.norm(location - camera)
    name = scene.name
    info = {
        "building": name,
        "point_uuid": uuid.uuid5(_UUID_NAMESPACE, f"{name}/point/{point}").hex,
        "camera_uuid": uuid.uuid5(_UUID_NAMESPACE, f"{name}/point/{point}/view/{view}").hex,
        "view_id": view,
        "room": "room_0",
        "resolution": size,
        "field_of_view_rads": fov,
        "camera_location": camera.tolist(),
        "camera_rotation_final": list(euler),
        "point_location": location.tolist(),
        "point_normal": point_normal.tolist(),
        "camera_distance": float(np.linalg.norm(location - camera)),
        "point_pitch": float(math.asin(look[2])),
        "obliqueness_angle": float(math.acos(np.clip(-look @ point_normal, -1, 1))),
        "bounding_box_ranges": {
            "x": [0.0, scene.room[0]],
            "y": [0.0, scene.room[1]],
            "z": [0.0, scene.room[2]],
        },
        "world_frame": WORLD_FRAME,
        "camera_convention": "Blender: Euler xyz (sxyz) radians; camera looks down local -Z, +Y up",
    }
    return RenderedView(
        arrays=rendered.arrays,
        point_info=json.loads(json.dumps(info)),
        surface=rendered.hits.sid,
        scene=scene,
    )


def _views_of(views: int, views_per_point: int) -> list[tuple[int, list[int]]]:
    """(point, [view ids]) for `views` views per building, `views_per_point` per point."""
    points = math.ceil(views / views_per_point)
    return [
        (p, list(range(min(views_per_point, views - p * views_per_point)))) for p in range(points)
    ]


def _render_point(task: tuple) -> tuple[int, int, int]:
    """Renders and writes every view of one point; returns (building, views, files)."""
    out, layout, seed, building, point, views, size, style = task
    made_dirs: set[Path] = set()
    files = 0
    for view in views:
        rendered = render_view(seed, building, point, view, size, style)
        payload = {d: encode_png(a, compress_level=1) for d, a in rendered.arrays.items()}
        payload["point_info"] = json.dumps(rendered.point_info, indent=1).encode()
        for domain, data in payload.items():
            ext = "json" if domain == "point_info" else "png"
            path = Path(out) / layouts.relative_path(
                layout, building_name(building, style), domain, point, view, ext
            )
            if path.parent not in made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(path.parent)
            atomic.write_bytes(path, data)
            files += 1
    return building, len(views), files


def split_rows(buildings: int, style: str = "base") -> list[tuple[str, int, int, int]]:
    """Deterministic ~70/15/15 split by building: >= 1 val if N >= 2, >= 1 test if N >= 3."""
    n_test = max(1 if buildings >= 3 else 0, round(0.15 * buildings))
    n_val = max(1 if buildings >= 2 else 0, round(0.15 * buildings))
    rows = []
    for b in range(buildings):
        split = (
            "test"
            if b >= buildings - n_test
            else "val"
            if b >= buildings - n_test - n_val
            else "train"
        )
        flags = tuple(int(split == name) for name in ("train", "val", "test"))
        rows.append((building_name(b, style), *flags))
    return rows


def write_split_file(out: Path, buildings: int, style: str = "base") -> Path:
    """`id,train,val,test` with old-Mac `\\r` line endings, as Taskonomy's split CSVs."""
    rows = split_rows(buildings, style)
    lines = ["id,train,val,test"] + [",".join(map(str, row)) for row in rows]
    path = Path(out) / SPLIT_FILE
    atomic.write_bytes(path, ("\r".join(lines) + "\r").encode())
    return path


def _pool(workers: int):
    """A spawn pool whose workers run single-threaded BLAS (one core each, no oversubscription)."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        return multiprocessing.get_context("spawn").Pool(workers)
    finally:  # the children copied the environment at start
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


@dataclasses.dataclass(frozen=True)
class Summary:
    """What `generate` wrote: counts, wall-clock seconds and throughput."""

    out_dir: str
    layout: str
    buildings: int
    views: int
    files: int
    seconds: float
    views_per_second: float


def generate(
    out_dir: str | os.PathLike,
    buildings: int,
    views: int,
    size: int = 256,
    seed: int = 0,
    layout: str = "plain",
    workers: int = 1,
    progress: bool = True,
    views_per_point: int = 3,
    style: str = "base",
) -> Summary:
    """Renders `buildings` x `views` views (all domains) into `out_dir` in `layout`."""
    if layout not in layouts.LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(layouts.LAYOUTS)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if buildings < 1 or views < 1 or size < 8 or views_per_point < 1:
        raise ValueError("need buildings >= 1, views >= 1, size >= 8, views_per_point >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    per_point = _views_of(views, views_per_point)
    tasks = [
        (str(out), layout, seed, b, p, v, size, style)
        for b in range(buildings)
        for p, v in per_point
    ]
    done_views, done_files, remaining = 0, 0, {b: views for b in range(buildings)}
    pool = _pool(workers) if workers > 1 else None
    try:
        results = pool.imap_unordered(_render_point, tasks) if pool else map(_render_point, tasks)
        for building, n_views, n_files in results:
            done_views, done_files = done_views + n_views, done_files + n_files
            remaining[building] -= n_views
            if progress and remaining[building] == 0:
                rate = done_views / (time.perf_counter() - start)
                name = building_name(building, style)
                print(f"{name}: done ({done_views}/{buildings * views} views, "
                      f"{rate:.1f} views/s)", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if pool:
            pool.close()
            pool.join()
    write_split_file(out, buildings, style)
    seconds = time.perf_counter() - start
    return Summary(
        str(out), layout, buildings, done_views, done_files + 1, seconds, done_views / seconds
    )


def main(argv: list[str] | None = None) -> Summary:
    parser = argparse.ArgumentParser(
        prog="python -m xtc_jax.data.synthetic",
        description="Render procedural indoor buildings to every Taskonomy domain, in Taskonomy's "
        "file names, encodings and tree layouts (a stand-in dataset for tests and smoke runs).",
    )
    parser.add_argument("--out", required=True, help="output root folder")
    parser.add_argument("--buildings", type=int, default=2, help="number of buildings (default 2)")
    parser.add_argument("--views", type=int, default=12, help="views per building (default 12)")
    parser.add_argument(
        "--views_per_point",
        "--views-per-point",
        type=int,
        default=3,
        help="views per fixation point (default 3)",
    )
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> same bytes")
    parser.add_argument(
        "--layout", choices=layouts.LAYOUTS, default="plain", help="tree layout (default plain)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--style", choices=STYLES, default="base",
        help="base (default) or shifted: held-out textures, lighting and shapes",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    summary = generate(
        args.out,
        args.buildings,
        args.views,
        args.size,
        args.seed,
        args.layout,
        args.workers,
        not args.quiet,
        args.views_per_point,
        args.style,
    )
    print(json.dumps(dataclasses.asdict(summary)))
    return summary


if __name__ == "__main__":
    main()
