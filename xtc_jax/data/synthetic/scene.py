"""Procedural indoor scenes and fixated cameras.

A building is one room (an axis-aligned box with floor, ceiling and four
walls, some wall rectangles cut out as windows) furnished with tables (thin
legs), chairs, beds, couches, cabinets, plants, lamps and balls, plus small
objects (bottles, vases, books, clocks, ...) on tables and cabinets. Every
surface gets its own procedural material (plain, stripes, checkers, noise,
wood), drawn independently of the geometry, a semantic class
(`domains.SEMANTIC_CLASSES`) and analytic principal curvatures.

World frame: metres, z up, floor z = 0, room [0, Lx] x [0, Ly] x [0, H].
Curvature sign convention: positive where the surface bends away from its
outward normal (convex, e.g. a sphere seen from outside: k1 = k2 = 1/r).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import numpy as np

from xtc_jax.domains import SEMANTIC_CLASSES

#: Surface ids 0..5 are the room faces, in this order.
ROOM_FACES = ("wall_x0", "wall_x1", "wall_y0", "wall_y1", "floor", "ceiling")
FLOOR, CEILING = 4, 5
#: Material pattern kinds. The first five make the training style ("base"); "dots" and
#: "zigzag" are held out for the "shifted" style, which also changes the lighting
#: (`annotate.shade_rgb`) and the furniture's shapes (round tables, stools, columns).
PATTERNS = ("plain", "stripes", "checkers", "noise", "wood", "dots", "zigzag")
BASE_PATTERNS = 5
STYLES = ("base", "shifted")


class Box(NamedTuple):
    """Box rotated by `yaw` about the vertical axis through `center`."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    sid: int


class Sphere(NamedTuple):
    center: tuple[float, float, float]
    radius: float
    sid: int


class Cylinder(NamedTuple):
    """Vertical cylinder: axis (cx, cy), z in [z0, z1]; side and caps are separate surfaces."""

    cx: float
    cy: float
    z0: float
    z1: float
    radius: float
    sid_side: int
    sid_cap: int


Primitive = Box | Sphere | Cylinder


def bounds(prim: Primitive) -> tuple[np.ndarray, np.ndarray]:
    """World axis-aligned bounding box (lo, hi) of a primitive."""
    if isinstance(prim, Box):
        c, s = abs(math.cos(prim.yaw)), abs(math.sin(prim.yaw))
        hx, hy, hz = prim.half
        ext = np.array([c * hx + s * hy, s * hx + c * hy, hz])
        return np.asarray(prim.center) - ext, np.asarray(prim.center) + ext
    if isinstance(prim, Sphere):
        return np.asarray(prim.center) - prim.radius, np.asarray(prim.center) + prim.radius
    r = prim.radius
    return np.array([prim.cx - r, prim.cy - r, prim.z0]), np.array(
        [prim.cx + r, prim.cy + r, prim.z1]
    )


@dataclasses.dataclass
class Scene:
    """One building: room size, windows, primitives and per-surface tables (index = surface id)."""

    name: str
    room: np.ndarray  # (3,) Lx, Ly, H
    windows: np.ndarray  # (n, 5): wall face id, u0, u1, z0, z1 (u = coordinate along the wall)
    prims: list[Primitive]
    pattern: np.ndarray  # (S,) int index into PATTERNS
    color1: np.ndarray  # (S, 3) linear albedo
    color2: np.ndarray  # (S, 3)
    scale: np.ndarray  # (S,) pattern period, metres
    yaw: np.ndarray  # (S,) pattern orientation
    phase: np.ndarray  # (S,) pattern offset
    semantic: np.ndarray  # (S,) uint8 raw segment_semantic id
    k1: np.ndarray  # (S,) principal curvatures, 1/m
    k2: np.ndarray
    window_color: np.ndarray  # (3,) what is seen through the windows in rgb
    noise_freqs: np.ndarray  # (3, 3) frequencies of the "noise" pattern

    @functools.cached_property
    def material_table(self) -> np.ndarray:
        """(10, S) float32 rows: cos yaw, sin yaw, 1/scale, phase, color1 (3), color2 - color1."""
        rows = [np.cos(self.yaw), np.sin(self.yaw), 1.0 / self.scale, self.phase]
        return np.vstack(rows + list(self.color1.T) + list((self.color2 - self.color1).T)).astype(
            np.float32
        )

    @functools.cached_property
    def box_array(self) -> np.ndarray:
        """(B, 8) the Box primitives as rows: center (3), half (3), yaw, surface id."""
        rows = [(*p.center, *p.half, p.yaw, p.sid) for p in self.prims if isinstance(p, Box)]
        return np.array(rows, dtype=np.float64).reshape(-1, 8)

    @functools.cached_property
    def boxes(self) -> np.ndarray:
        """(P, 2, 3) world bounding boxes (lo, hi) of the primitives."""
        return np.array([bounds(p) for p in self.prims]).reshape(-1, 2, 3)

    @functools.cached_property
    def corners(self) -> np.ndarray:
        """(P, 8, 3) corners of the primitives' bounding boxes."""
        pick = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, 8).T
        return self.boxes[:, pick, [0, 1, 2]]

    def inside_objects(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(N,) bool: which points (N, 3) lie within `margin` of an object's bounding box."""
        lo, hi = self.boxes[None, :, 0] - margin, self.boxes[None, :, 1] + margin
        return np.any(np.all((points[:, None] > lo) & (points[:, None] < hi), axis=2), axis=1)


class _Builder:
    """Accumulates surfaces and primitives while a scene is sampled."""

    def __init__(self, rng: np.random.Generator, style: str = "base") -> None:
        self.rng = rng
        self.style = style
        self.surfaces: list[tuple] = []
        self.prims: list[Primitive] = []

    def surface(self, cls: str, k1: float = 0.0, k2: float = 0.0, material=None) -> int:
        material = material if material is not None else self.material()
        raw = 1 if cls == "background" else SEMANTIC_CLASSES.index(cls) + 1
        self.surfaces.append((*material, raw, k1, k2))
        return len(self.surfaces) - 1

    def material(self) -> tuple:
        rng = self.rng
        hue = rng.uniform(0.15, 1.0, 3) * rng.uniform(0.3, 1.0)
        other = np.clip(hue * rng.uniform(0.3, 1.6) + rng.normal(0, 0.12, 3), 0.02, 1.0)
        if self.style == "shifted":  # only the held-out families, never plain
            pattern = BASE_PATTERNS + rng.integers(len(PATTERNS) - BASE_PATTERNS)
        else:
            pattern = rng.choice(BASE_PATTERNS, p=[0.3, 0.15, 0.15, 0.2, 0.2])
        return (
            pattern,
            hue,
            other,
            rng.uniform(0.05, 0.6),
            rng.uniform(0, np.pi),
            rng.uniform(0, 10),
        )

    def box(self, center, half, yaw: float, sid: int) -> None:
        self.prims.append(Box(tuple(map(float, center)), tuple(map(float, half)), float(yaw), sid))


def _rot(yaw: float, x: float, y: float) -> tuple[float, float]:
    c, s = math.cos(yaw), math.sin(yaw)
    return c * x - s * y, s * x + c * y


def _furniture(b: _Builder, kind: str, x: float, y: float, yaw: float, size: np.ndarray) -> list:
    """Adds one piece at (x, y), footprint half-size `size`; returns tops (x, y, z, hx, hy)."""
    rng, (hx, hy) = b.rng, size

    def part(dx, dy, z0, z1, phx, phy, sid):
        ox, oy = _rot(yaw, dx, dy)
        b.box((x + ox, y + oy, (z0 + z1) / 2), (phx, phy, (z1 - z0) / 2), yaw, sid)

    def legs(h, leg, sid):
        for sx in (-1, 1):
            for sy in (-1, 1):
                part(sx * (hx - leg - 0.02), sy * (hy - leg - 0.02), 0, h, leg, leg, sid)

    if kind in ("table", "chair"):
        sid = b.surface("dining table" if kind == "table" else "chair")
        h = rng.uniform(0.7, 0.78) if kind == "table" else rng.uniform(0.42, 0.48)
        top = rng.uniform(0.025, 0.06)
        part(0, 0, h - top, h, hx, hy, sid)
        legs(h - top, rng.uniform(0.015, 0.03), sid)  # thin legs
        if kind == "chair":
            part(0, hy - 0.02, h, h + rng.uniform(0.35, 0.5), hx, 0.02, sid)
            return []
        return [(x, y, h, hx * 0.8, hy * 0.8)]
    if kind == "bed":
        sid, h = b.surface("bed"), rng.uniform(0.45, 0.6)
        part(0, 0, 0, h - 0.2, hx, hy, sid)
        part(0, 0.03, h - 0.2, h, hx - 0.03, hy - 0.03, b.surface("bed"))  # mattress
        part(0, -hy + 0.03, 0, h + rng.uniform(0.4, 0.7), hx, 0.03, sid)  # headboard
        return []
    if kind == "couch":
        sid, h = b.surface("couch"), rng.uniform(0.4, 0.46)
        arm = rng.uniform(0.08, 0.15)
        part(0, 0, 0.05, h, hx - arm, hy, sid)
        part(0, hy - 0.1, 0.05, h + 0.4, hx - arm, 0.1, sid)
        for sx in (-1, 1):
            part(sx * (hx - arm / 2), 0, 0, h + 0.18, arm / 2, hy, sid)
        return []
    if kind == "cabinet":
        h = rng.uniform(0.8, 2.0)
        sid = b.surface("refrigerator" if h > 1.5 else "oven")
        part(0, 0, 0, h, hx, hy, sid)
        return [(x, y, h, hx * 0.8, hy * 0.8)] if h < 1.2 else []
    if kind == "plant":
        r, hp = min(hx, hy), rng.uniform(0.25, 0.5)
        side, cap = b.surface("potted plant", 1 / r), b.surface("potted plant")
        b.prims.append(Cylinder(x, y, 0.0, hp, r, side, cap))
        rf = r * rng.uniform(1.2, 1.8)
        b.prims.append(Sphere((x, y, hp + rf * 0.8), rf, b.surface("potted plant", 1 / rf, 1 / rf)))
        return []
    if kind == "lamp":
        pole, hl, rs = rng.uniform(0.012, 0.025), rng.uniform(1.2, 1.7), min(hx, hy)
        b.prims.append(
            Cylinder(
                x, y, 0.0, hl, pole, b.surface("background", 1 / pole), b.surface("background")
            )
        )
        b.prims.append(
            Cylinder(
                x, y, hl, hl + 0.25, rs, b.surface("background", 1 / rs), b.surface("background")
            )
        )
        return []
    if kind in ("round_table", "stool"):  # shifted style: a disc on a central pedestal
        table = kind == "round_table"
        r = min(hx, hy)
        sid = b.surface("dining table" if table else "chair", 1 / r)
        h = rng.uniform(0.68, 0.8) if table else rng.uniform(0.45, 0.7)
        top = rng.uniform(0.03, 0.06)
        b.prims.append(Cylinder(x, y, h - top, h, r, sid, b.surface("dining table" if table
                                                                    else "chair")))
        pedestal = rng.uniform(0.04, 0.09)
        b.prims.append(Cylinder(x, y, 0.0, h - top, pedestal, b.surface("background",
                                                                        1 / pedestal), sid))
        return [(x, y, h, r * 0.6, r * 0.6)] if table else []
    if kind == "column":  # shifted style: a thick cylinder floor to ceiling-ish
        r = min(hx, hy)
        b.prims.append(Cylinder(x, y, 0.0, rng.uniform(1.8, 2.3), r,
                                b.surface("background", 1 / r), b.surface("background")))
        return []
    r = min(hx, hy)  # ball
    b.prims.append(Sphere((x, y, r), r, b.surface("vase", 1 / r, 1 / r)))
    return []


_SIZES = {  # footprint half-sizes (x range, y range)
    "table": ((0.4, 0.9), (0.3, 0.5)), "chair": ((0.2, 0.25), (0.2, 0.25)),
    "bed": ((0.7, 0.95), (0.95, 1.05)), "couch": ((0.75, 1.1), (0.4, 0.48)),
    "cabinet": ((0.25, 0.6), (0.2, 0.33)), "plant": ((0.12, 0.25), (0.12, 0.25)),
    "lamp": ((0.15, 0.25), (0.15, 0.25)), "ball": ((0.12, 0.35), (0.12, 0.35)),
}  # fmt: skip
_KINDS = tuple(_SIZES)
_KIND_P = (0.22, 0.18, 0.1, 0.1, 0.16, 0.1, 0.07, 0.07)
#: The shifted style's furniture: round shapes the base style never has, and big balls.
_SHIFTED_SIZES = {
    "round_table": ((0.35, 0.6), (0.35, 0.6)), "stool": ((0.15, 0.25), (0.15, 0.25)),
    "column": ((0.12, 0.3), (0.12, 0.3)), "ball": ((0.2, 0.45), (0.2, 0.45)),
}  # fmt: skip
_SHIFTED_KINDS = tuple(_SHIFTED_SIZES)
_SHIFTED_KIND_P = (0.35, 0.3, 0.15, 0.2)


def _small_object(b: _Builder, top: tuple) -> None:
    """A small object standing on a support top (x, y, z, hx, hy)."""
    rng, (x, y, z, hx, hy) = b.rng, top
    x, y = x + rng.uniform(-hx, hx), y + rng.uniform(-hy, hy)
    kind = rng.choice(["bottle", "vase", "clock", "book", "microwave", "toaster", "tv", "pot"])
    if kind in ("bottle", "pot"):
        r = rng.uniform(0.025, 0.05) if kind == "bottle" else rng.uniform(0.06, 0.1)
        cls = "bottle" if kind == "bottle" else "potted plant"
        h = rng.uniform(0.15, 0.32)
        b.prims.append(Cylinder(x, y, z, z + h, r, b.surface(cls, 1 / r), b.surface(cls)))
    elif kind in ("vase", "clock"):
        r = rng.uniform(0.04, 0.12)
        b.prims.append(Sphere((x, y, z + r), r, b.surface(kind, 1 / r, 1 / r)))
    else:
        half = {"book": (0.1, 0.07, 0.02), "microwave": (0.23, 0.17, 0.14),
                "toaster": (0.12, 0.07, 0.1), "tv": (0.4, 0.03, 0.25)}[kind]  # fmt: skip
        half = np.asarray(half) * rng.uniform(0.8, 1.2, 3)
        b.box((x, y, z + half[2]), half, rng.uniform(0, np.pi), b.surface(kind))


def sample_scene(rng: np.random.Generator, name: str, style: str = "base") -> Scene:
    """Samples one building: room 3-8 m x 3-8 m x 2.4-3.5 m, 3-9 furniture pieces, windows.

    style "shifted": held-out materials and furniture shapes (see PATTERNS).
    """
    if style not in STYLES:
        raise ValueError(f"unknown synthetic style {style!r}; use one of {', '.join(STYLES)}")
    b = _Builder(rng, style)
    sizes, kinds, kind_p = (
        (_SHIFTED_SIZES, _SHIFTED_KINDS, _SHIFTED_KIND_P)
        if style == "shifted"
        else (_SIZES, _KINDS, _KIND_P)
    )
    room = np.array([rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(2.4, 3.5)])
    for _ in ROOM_FACES:
        b.surface("background")
    windows = []
    for wall in rng.permutation(4)[: rng.integers(1, 4)]:
        length = room[1] if wall < 2 else room[0]
        w = rng.uniform(0.6, min(2.0, length - 0.6))
        u0 = rng.uniform(0.3, length - w - 0.3)
        z0 = rng.uniform(0.0, 1.0) if rng.random() < 0.3 else rng.uniform(0.7, 1.1)
        windows.append((wall, u0, u0 + w, z0, min(z0 + rng.uniform(1.0, 1.6), room[2] - 0.2)))
    footprints: list[tuple[np.ndarray, np.ndarray]] = []
    tops: list[tuple] = []
    for _ in range(rng.integers(3, 10)):
        kind = kinds[rng.choice(len(kinds), p=kind_p)]
        size = np.array([rng.uniform(*sizes[kind][0]), rng.uniform(*sizes[kind][1])])
        yaw = rng.uniform(0, 2 * np.pi) if rng.random() < 0.6 else rng.integers(4) * np.pi / 2
        c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
        ext = np.array([c * size[0] + s * size[1], s * size[0] + c * size[1]])
        for _try in range(10):
            xy = rng.uniform(ext + 0.05, room[:2] - ext - 0.05)
            if np.all(ext < room[:2] / 2 - 0.05) and not any(
                np.all(np.abs(xy - fxy) < ext + fext + 0.1) for fxy, fext in footprints
            ):
                footprints.append((xy, ext))
                tops += _furniture(b, kind, xy[0], xy[1], yaw, size)
                break
    for top in tops:
        for _ in range(rng.integers(0, 4)):
            _small_object(b, top)
    pattern, c1, c2, scale, pyaw, phase, sem, k1, k2 = map(
        np.asarray, zip(*b.surfaces, strict=True)
    )
    return Scene(
        name=name, room=room, windows=np.asarray(windows, dtype=np.float64).reshape(-1, 5),
        prims=b.prims, pattern=pattern.astype(np.int64), color1=c1, color2=c2, scale=scale,
        yaw=pyaw, phase=phase, semantic=sem.astype(np.uint8), k1=k1, k2=k2,
        window_color=rng.uniform(0.6, 1.0, 3), noise_freqs=rng.normal(0, 1.0, (3, 3)) * 2.5,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Cameras.


def euler_xyz_to_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """Blender / transforms3d 'sxyz' Euler angles -> rotation Rz @ Ry @ Rx (camera -> world)."""
    cx, sx, cy, sy, cz, sz = (
        math.cos(rx),
        math.sin(rx),
        math.cos(ry),
        math.sin(ry),
        math.cos(rz),
        math.sin(rz),
    )
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def look_at_euler(camera: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """Blender Euler xyz (roll 0) of a camera at `camera` looking at `target`.

    A Blender camera looks down its local -Z with +Y up; rx = pi/2 + pitch, ry = 0, rz = yaw.
    """
    d = (target - camera) / np.linalg.norm(target - camera)
    pitch = math.asin(float(np.clip(d[2], -1, 1)))
    return math.pi / 2 + pitch, 0.0, math.atan2(-d[0], d[1])


def opencv_rotation(euler: tuple[float, float, float]) -> np.ndarray:
    """Camera (x right, y down, z forward) -> world rotation for Blender Euler angles."""
    return euler_xyz_to_matrix(*euler) @ np.diag([1.0, -1.0, -1.0])
