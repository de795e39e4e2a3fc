"""A camera fly-through of one synthetic room, with per-frame ground truth.

    python -m xtc_jax.data.synthetic.flythrough --out DIR --frames 48 --size 128 --seed 0

What: a smooth video of the built-in synthetic data (`generate.py`): one
building's room, a camera gliding along a closed smooth curve through it
(`camera_path`), every frame rendered by the still renderer
(`generate.render_camera`) to every domain, under the *same* lights in every
frame. Why: the video tool (`apps/video.py`) needs a clip whose ground truth is
known frame by frame, to plot the models' temporal flicker next to their error,
and to tell flicker of a model from change of the scene: here the scene, the
lights and the materials are fixed, only the camera moves.

The path: an ellipse around the room centre, inset from the walls, at eye
height (1.45 m preferred) with a gentle bob; the camera looks into the room,
turned 30 degrees from the centre toward the direction of travel, 12 degrees
down, its view turning at one rate (360 degrees a lap). One lap takes
`FRAMES_PER_LAP` frames whatever the clip's length (so the camera moves at one
speed: 48 frames are half a lap, 96 a seamless loop). Insets, centre shifts
and heights are tried in a fixed order (`candidate_ellipses`) until the whole
curve keeps `CLEARANCE` metres from the walls and every object's bounding box.

Ground truth: `truth[domain]` is float32 (F, S, S, C) in the models' decoded
space, computed from the raw on-disk arrays exactly as the input pipeline
decodes files (`data/transforms.py`, no resize since the size matches):
`Domain.decode`, `derive_raw` (mask_valid from depth) and `derive_decoded`
(edge_texture = Sobel of the rgb). Determinism: the path comes from stream
(building, 3, 0) of the seed and the lights from stream (building, 3, 1)
(`generate._rng`; streams 0-2 are the scene, points and still views), so the
output is bit-identical for the same arguments.

Files (`write` / `load`): DIR/truth.npz (rgb uint8 and one float32 array per
domain, compressed) and DIR/flythrough.json (what was rendered, the cameras and
targets). No video is written here: the video tool encodes `rgb` itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xtc_jax import domains
from xtc_jax.data.synthetic import generate
from xtc_jax.data.synthetic.scene import STYLES, Scene, look_at_euler, opencv_rotation
from xtc_jax.errors import DataError
from xtc_jax.infra import atomic

#: Every decodable domain of the registry except rgb (given as uint8 `FlyThrough.rgb`).
TRUTH_DOMAINS = tuple(name for name in domains.DOMAINS if name != "rgb")
FOV = math.radians(60.0)
FPS = 12
#: Frames per lap of the closed path: 8 s at 12 fps, 3.75 degrees of the ellipse per frame.
FRAMES_PER_LAP = 96
#: Metres every point of the path keeps from every object's bounding box.
CLEARANCE = 0.3
#: The path's candidate shapes, metres: insets of the ellipse from the walls (per axis), shifts
#: of its centre and eye heights. All combinations are ranked by their distance from the
#: preferred one (the first of each) and the first that clears everything is used.
INSETS = (0.8, 0.6, 1.0, 0.45, 1.25, 1.5, 1.8)
SHIFTS = (0.0, 0.3, -0.3, 0.6, -0.6, 0.9, -0.9)
HEIGHTS = (1.45, 1.3, 1.6, 1.15, 1.75)
MIN_SEMI_AXIS = 0.3  # metres; a smaller ellipse is not a fly-through
#: The curve is checked at PATH_SAMPLES angles (under 2 x SAMPLE_SLACK metres apart along the
#: largest room's ellipse, 22 m round) with CLEARANCE + SAMPLE_SLACK, so every point between
#: samples keeps CLEARANCE.
PATH_SAMPLES = 256
SAMPLE_SLACK = 0.05
BOB = 0.04  # metres of vertical bob, two cycles per lap
#: The view's yaw is the ellipse angle + pi (inward) turned LOOK_ANGLE toward the direction
#: of travel: it turns at one rate (360 degrees a lap) and always looks into the room.
LOOK_ANGLE = math.radians(30.0)
LOOK_DISTANCE = 1.5  # metres from the camera to its look-at point
PITCH = math.radians(-12.0)
TRUTH_FILE, META_FILE = "truth.npz", "flythrough.json"
FORMAT = "xtc_jax.flythrough/1"
_PATH_STREAM, _LIGHT_STREAM = (3, 0), (3, 1)
_REQUIRED = ("seed", "building", "style", "frames", "size", "fps", "fov", "domains",
             "cameras", "targets")


@dataclasses.dataclass
class FlyThrough:
    """A rendered fly-through: F frames of S x S pixels.

    rgb: (F, S, S, 3) uint8, as the rgb files. truth: {domain: (F, S, S, C) float32} in the
    models' decoded space (`domains.get(domain).decode`; depth_zbuffer is metres / 15.625,
    1.0 = no geometry; mask_valid is 1.0 where geometry was hit; segment_semantic holds class
    ids, -1 = none). cameras, targets: (F, 3) float64 world metres (z up, floor z = 0, room
    [0, Lx] x [0, Ly] x [0, H]); each frame looks from cameras[i] at targets[i], roll 0.
    fov: radians, horizontal = vertical. fps: the intended playback rate.
    """

    seed: int
    building: int
    style: str
    name: str  # the building's name, e.g. synth_000
    room: tuple[float, float, float]  # Lx, Ly, H in metres
    size: int
    fov: float
    fps: float
    frames_per_lap: int
    cameras: np.ndarray
    targets: np.ndarray
    rgb: np.ndarray
    truth: dict[str, np.ndarray]

    @property
    def frames(self) -> int:
        return len(self.rgb)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.truth)

    @property
    def rotations(self) -> np.ndarray:
        """(F, 3, 3) camera (OpenCV: x right, y down, z forward) -> world rotations."""
        return np.stack([camera_rotation(c, t) for c, t in zip(self.cameras, self.targets,
                                                                    strict=True)])  # fmt: skip

    @property
    def focal_px(self) -> float:
        """Focal length in pixels; the principal point is the image centre (S - 1) / 2."""
        return (self.size / 2) / math.tan(self.fov / 2)

    def valid_mask(self, domain: str) -> np.ndarray:
        """(F, S, S, 1) bool: XTC's loss mask of `domain`'s ground truth (`Domain.valid_mask`)."""
        return np.asarray(domains.get(domain).valid_mask(self.truth[domain]))


def camera_rotation(camera: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) camera -> world rotation (OpenCV frame) of a camera looking at `target`, roll 0."""
    return opencv_rotation(look_at_euler(np.asarray(camera), np.asarray(target)))


# ---------------------------------------------------------------------------
# The path.


@dataclasses.dataclass(frozen=True)
class Ellipse:
    """The path's shape: an ellipse of semi-axes `semi` around `centre` (x, y) at `height`."""

    centre: tuple[float, float]
    semi: tuple[float, float]
    height: float

    def points(self, angles: np.ndarray, direction: float,
               bob_angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Cameras and look-at points (N, 3) at ellipse angles `angles` (radians), moving in
        `direction` (+1 counter-clockwise, -1 clockwise seen from above)."""
        centre, semi = np.asarray(self.centre), np.asarray(self.semi)
        cameras = np.column_stack([centre + semi * np.column_stack([np.cos(angles),
                                                                    np.sin(angles)]),
                                   self.height + BOB * np.sin(bob_angles)])  # fmt: skip
        yaw = angles + np.pi - direction * LOOK_ANGLE
        look = np.column_stack([np.cos(yaw) * math.cos(PITCH), np.sin(yaw) * math.cos(PITCH),
                                np.full(len(yaw), math.sin(PITCH))])  # fmt: skip
        return cameras, cameras + LOOK_DISTANCE * look


def candidate_ellipses(scene: Scene) -> list[Ellipse]:
    """Every shape of INSETS^2 x SHIFTS^2 x HEIGHTS that fits the room, best first.

    Rank: the sum of each choice's position in its tuple (so the preferred shape, then its
    nearest variations); ties keep the loop order.
    """
    lx, ly, h = scene.room.tolist()
    ranked = []
    for ix, inset_x in enumerate(INSETS):
        for iy, inset_y in enumerate(INSETS):
            for sx, shift_x in enumerate(SHIFTS):
                for sy, shift_y in enumerate(SHIFTS):
                    for ih, height in enumerate(HEIGHTS):
                        semi = (lx / 2 - inset_x - abs(shift_x), ly / 2 - inset_y - abs(shift_y))
                        if min(semi) < MIN_SEMI_AXIS or height + BOB > h - CLEARANCE:
                            continue
                        shape = Ellipse((lx / 2 + shift_x, ly / 2 + shift_y), semi, height)
                        ranked.append((ix + iy + sx + sy + ih, shape))
    ranked.sort(key=lambda item: item[0])
    return [shape for _, shape in ranked]


def _clear(scene: Scene, points: np.ndarray, margin: float) -> bool:
    """Whether every point keeps `margin` from the walls, floor, ceiling and objects' boxes."""
    inside = np.all((points > margin) & (points < scene.room - margin), axis=1)
    return bool(np.all(inside) and not np.any(scene.inside_objects(points, margin)))


def path_shape(scene: Scene) -> Ellipse:
    """The first of `candidate_ellipses` whose whole curve (and bob) clears everything.

    Checked at PATH_SAMPLES angles with CLEARANCE + SAMPLE_SLACK, at both extremes of the
    bob (objects' cleared boxes are far taller than the bob, so any bob phase is clear).
    """
    lap = np.linspace(0, 2 * np.pi, PATH_SAMPLES, endpoint=False)
    for shape in candidate_ellipses(scene):
        cameras, _ = shape.points(lap, 1.0, np.zeros(len(lap)))
        bob = np.array([0.0, 0.0, BOB])
        cameras = np.concatenate([cameras + bob, cameras - bob])
        margin = CLEARANCE + SAMPLE_SLACK
        if _clear(scene, cameras[::8], margin) and _clear(scene, cameras, margin):  # fast no
            return shape
    raise RuntimeError(
        f"{scene.name}: no camera path clears the furniture (room {np.round(scene.room, 2)} m; "
        f"tried insets {INSETS} m, centre shifts {SHIFTS} m and heights {HEIGHTS} m with "
        f"clearance {CLEARANCE} m). Choose another --building or --seed."
    )


def camera_path(
    scene: Scene, frames: int, seed: int, frames_per_lap: int = FRAMES_PER_LAP
) -> tuple[np.ndarray, np.ndarray]:
    """(cameras (F, 3), targets (F, 3)) world metres: a smooth path through `scene`'s room.

    The camera runs along the ellipse `path_shape(scene)`, one lap per `frames_per_lap`
    frames, from a start angle, in a direction and with a bob phase drawn from `seed`.
    Raises RuntimeError if no candidate shape clears the room's furniture.
    """
    if frames < 1 or frames_per_lap < 2:
        raise ValueError(f"need frames >= 1 and frames_per_lap >= 2, got {frames}, "
                         f"{frames_per_lap}")  # fmt: skip
    shape = path_shape(scene)
    rng = np.random.default_rng(seed)
    start, direction = rng.uniform(0, 2 * np.pi), float(rng.choice([-1.0, 1.0]))
    bob_phase = rng.uniform(0, 2 * np.pi)
    progress = 2 * np.pi * np.arange(frames) / frames_per_lap
    return shape.points(start + direction * progress, direction, 2 * progress + bob_phase)


# ---------------------------------------------------------------------------
# Rendering.


def decode_truth(arrays: dict[str, np.ndarray],
                 names: tuple[str, ...] = TRUTH_DOMAINS) -> dict[str, np.ndarray]:  # fmt: skip
    """Raw on-disk arrays of one view -> {domain: float32 (S, S, C)}, as the input pipeline.

    Mirrors `transforms.transform_example` at native size: `derive_raw` domains decode
    their derived raw array, `derive_decoded` ones derive from the source's decoded floats.
    """
    out = {}
    for name in names:
        domain = domains.get(name)
        source = arrays[domain.stored_name]
        if domain.derive_raw is not None:
            value = domain.decode(np.asarray(domain.derive_raw(source)))
        elif domain.derive_decoded is not None:
            value = domain.derive_decoded(domains.DOMAINS[domain.stored_name].decode(source))
        else:
            value = domain.decode(source)
        out[domain.name] = np.asarray(value, dtype=np.float32)
    return out


def light_rng(seed: int, building: int, style: str = "base") -> np.random.Generator:
    """A fresh generator of the fly-through's lights: the same lights for every frame."""
    return generate._rng(seed, building, *_LIGHT_STREAM, style=style)


def path_seed(seed: int, building: int, style: str = "base") -> int:
    """The `camera_path` seed of (seed, building, style)."""
    return int(generate._rng(seed, building, *_PATH_STREAM, style=style).integers(2**32))


def render_frame(seed: int, building: int, camera: np.ndarray, target: np.ndarray,
                 size: int, style: str = "base",
                 fov: float = FOV) -> generate.CameraRender:  # fmt: skip
    """One frame of building `building`'s fly-through: raw arrays of every domain."""
    scene = generate.building_scene(seed, building, style)
    return generate.render_camera(
        scene, np.asarray(camera, np.float64), np.asarray(target, np.float64), fov, size,
        light_rng(seed, building, style), style,
    )  # fmt: skip


def _check_args(frames: int, size: int, building: int, style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if frames < 1 or size < 8 or building < 0:
        raise ValueError(f"need frames >= 1, size >= 8 and building >= 0; got frames={frames}, "
                         f"size={size}, building={building}")  # fmt: skip


def render_flythrough(
    seed: int = 0,
    building: int = 0,
    frames: int = 48,
    size: int = 128,
    style: str = "base",
    *,
    fov: float = FOV,
    fps: float = FPS,
    frames_per_lap: int = FRAMES_PER_LAP,
    progress: Callable[[int, int, float], None] | None = None,
) -> FlyThrough:
    """Renders `frames` frames of building `building`'s fly-through at `size` px.

    progress(done, total, seconds) is called after every frame.
    """
    _check_args(frames, size, building, style)
    scene = generate.building_scene(seed, building, style)
    cameras, targets = camera_path(scene, frames, path_seed(seed, building, style),
                                   frames_per_lap)  # fmt: skip
    rgb = np.empty((frames, size, size, 3), np.uint8)
    truth: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    for i in range(frames):
        arrays = render_frame(seed, building, cameras[i], targets[i], size, style, fov).arrays
        rgb[i] = arrays["rgb"]
        for name, value in decode_truth(arrays).items():
            truth.setdefault(name, np.empty((frames, *value.shape), np.float32))[i] = value
        if progress is not None:
            progress(i + 1, frames, time.perf_counter() - start)
    return FlyThrough(
        seed=seed, building=building, style=style, name=scene.name,
        room=tuple(float(v) for v in scene.room), size=size, fov=float(fov), fps=float(fps),
        frames_per_lap=frames_per_lap, cameras=cameras, targets=targets, rgb=rgb, truth=truth,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Files.


def _meta(fly: FlyThrough) -> dict:
    return {
        "format": FORMAT,
        "seed": fly.seed,
        "building": fly.building,
        "style": fly.style,
        "name": fly.name,
        "room": list(fly.room),
        "frames": fly.frames,
        "size": fly.size,
        "fps": fly.fps,
        "fov": fly.fov,
        "fov_units": "radians (horizontal = vertical; principal point at the image centre)",
        "frames_per_lap": fly.frames_per_lap,
        "domains": list(fly.domains),
        "truth_file": TRUTH_FILE,
        "truth_encoding": "rgb: uint8 (F, S, S, 3); each domain: float32 (F, S, S, C), "
        "domains.get(name).decode of the raw on-disk arrays (the input pipeline's values)",
        "world_frame": generate.WORLD_FRAME,
        "camera_convention": "each frame looks from cameras[i] at targets[i], roll 0; "
        "camera frame x right, y down, z forward (OpenCV)",
        "cameras": fly.cameras.tolist(),
        "targets": fly.targets.tolist(),
    }


def write(fly: FlyThrough, out_dir: str | os.PathLike) -> dict[str, str]:
    """Writes DIR/truth.npz and DIR/flythrough.json atomically; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, rgb=fly.rgb, **fly.truth)
    truth = atomic.write_bytes(out / TRUTH_FILE, buffer.getvalue())
    meta = atomic.write_json(out / META_FILE, _meta(fly))
    return {"truth": truth, "meta": meta}


def _read_meta(path: Path) -> dict:
    fix = "render it again: python -m xtc_jax.data.synthetic.flythrough --out DIR"
    if not path.is_file():
        raise DataError(f"{path}: no such file; a fly-through folder holds {META_FILE} and "
                        f"{TRUTH_FILE} ({fix}).")  # fmt: skip
    try:
        meta = json.loads(path.read_text())
        missing = [key for key in _REQUIRED if key not in meta]
        if missing:
            raise KeyError(f"missing fields {missing}")
        frames, size = int(meta["frames"]), int(meta["size"])
        cameras, targets = (np.asarray(meta[k], np.float64) for k in ("cameras", "targets"))
        names = [str(d) for d in meta["domains"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a fly-through description ({error!r}); {fix}.") from None
    if cameras.shape != (frames, 3) or targets.shape != (frames, 3) or not all(
        name in domains.DOMAINS for name in names
    ):
        raise DataError(f"{path}: inconsistent fly-through description (cameras "
                        f"{cameras.shape}, targets {targets.shape}, {frames} frames, domains "
                        f"{names}); {fix}.")  # fmt: skip
    return {**meta, "frames": frames, "size": size, "cameras": cameras, "targets": targets,
            "domains": names}  # fmt: skip


def _read_truth(path: Path, meta: dict) -> dict[str, np.ndarray]:
    fix = "render it again: python -m xtc_jax.data.synthetic.flythrough --out DIR"
    if not path.is_file():
        raise DataError(f"{path}: no such file; {fix}.")
    frames, size = meta["frames"], meta["size"]
    expected = {"rgb": ((frames, size, size, 3), np.uint8)}
    for name in meta["domains"]:
        expected[name] = ((frames, size, size, domains.get(name).channels), np.float32)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in expected}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{path}: unreadable or incomplete fly-through arrays ({error!r}); "
                        f"{fix}.") from None  # fmt: skip
    for name, (shape, dtype) in expected.items():
        if arrays[name].shape != shape or arrays[name].dtype != dtype:
            raise DataError(f"{path}: array {name!r} is {arrays[name].dtype} "
                            f"{arrays[name].shape}, expected {np.dtype(dtype)} {shape} (as "
                            f"{META_FILE} says); {fix}.")  # fmt: skip
    return arrays


def load(out_dir: str | os.PathLike) -> FlyThrough:
    """Reads a fly-through written by `write`; DataError naming the file if one is bad."""
    folder = Path(out_dir)
    meta = _read_meta(folder / META_FILE)
    arrays = _read_truth(folder / TRUTH_FILE, meta)
    rgb = arrays.pop("rgb")
    return FlyThrough(
        seed=int(meta["seed"]), building=int(meta["building"]), style=str(meta["style"]),
        name=str(meta.get("name", "")), room=tuple(float(v) for v in meta.get("room", ())),
        size=meta["size"], fov=float(meta["fov"]), fps=float(meta["fps"]),
        frames_per_lap=int(meta.get("frames_per_lap", FRAMES_PER_LAP)),
        cameras=meta["cameras"], targets=meta["targets"], rgb=rgb, truth=arrays,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Command line.


def _printer(every: int) -> Callable[[int, int, float], None]:
    def report(done: int, total: int, seconds: float) -> None:
        if done % every == 0 or done == total:
            print(f"frame {done}/{total} ({done / max(seconds, 1e-9):.1f} frames/s)",
                  file=sys.stderr, flush=True)  # fmt: skip

    return report


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(
        prog="python -m xtc_jax.data.synthetic.flythrough",
        description="Render a smooth camera fly-through of one room of the built-in synthetic "
        f"data, with every frame's ground truth: writes OUT/{TRUTH_FILE} (rgb uint8 and each "
        f"domain's decoded float32 truth) and OUT/{META_FILE} (cameras, targets, settings). "
        "For the video tool's flicker and error figures (python -m xtc_jax.apps.video "
        "--input flythrough:OUT).",
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--frames", type=int, default=48,
                        help=f"number of frames (default 48; {FRAMES_PER_LAP} make one "
                        "seamless lap)")  # fmt: skip
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="data seed, as the still renderer's")
    parser.add_argument("--building", type=int, default=0, help="building index (default 0)")
    parser.add_argument("--style", choices=STYLES, default="base",
                        help="base (default) or shifted: held-out textures, lights, shapes")
    parser.add_argument("--fps", type=float, default=FPS, help=f"playback rate (default {FPS})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    try:
        _check_args(args.frames, args.size, args.building, args.style)
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    try:
        fly = render_flythrough(args.seed, args.building, args.frames, args.size, args.style,
                                fps=args.fps, progress=None if args.quiet else _printer(8))
    except RuntimeError as error:
        parser.exit(1, f"error: {error}\n")
    paths = write(fly, args.out)
    seconds = time.perf_counter() - start
    print(json.dumps({**paths, "frames": fly.frames, "size": fly.size, "seconds": seconds}))
    return paths


if __name__ == "__main__":
    main()
