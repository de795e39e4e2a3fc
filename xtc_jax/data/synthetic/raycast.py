"""Vectorised NumPy ray casting of a whole image (no per-pixel Python loops).

Works in the dtype of the ray directions (float32 for images: twice as fast,
and ample for metre-scale rooms; float64 for the few rays of camera sampling).

Rays are three (H, W) float64 arrays (dx, dy, dz) in the world frame, not
normalised: for camera rays, the camera-frame direction is ((u - cx) / f,
(v - cy) / f, 1), so the ray parameter t at a hit *is* the z-depth and the
ray length is t * |d|. Each primitive is intersected only over the image
rectangle its bounding box projects to (slices are views, so this is cheap),
which keeps the cost close to "room + covered pixels".
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from xtc_jax.data.synthetic.scene import Box, Cylinder, Scene, Sphere

T_MIN = 1e-6


def camera_rays(size: int, fov: float) -> np.ndarray:
    """(S, S, 3) camera-frame ray directions with z = 1 (x right, y down, z forward).

    Square pixels, f_px = (S / 2) / tan(fov / 2), principal point at the image
    centre ((S - 1) / 2, (S - 1) / 2) in pixel-centre coordinates.
    """
    f = (size / 2) / math.tan(fov / 2)
    coords = (np.arange(size, dtype=np.float64) - (size - 1) / 2) / f
    rays = np.empty((size, size, 3))
    rays[..., 0] = coords[None, :]
    rays[..., 1] = coords[:, None]
    rays[..., 2] = 1.0
    return rays


@dataclasses.dataclass
class Hits:
    """Nearest hit per ray: t (inf: nothing hit), world normal (facing the ray), surface id (-1)."""

    t: np.ndarray
    normal: tuple[np.ndarray, np.ndarray, np.ndarray]
    sid: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.t)


def _room(scene: Scene, o: np.ndarray, d: tuple) -> tuple:
    """Exit of the (convex) room box from the inside, with windows cut out."""
    ts, faces = [], []
    real = d[0].dtype.type
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            pos = d[axis] > 0
            ts.append((np.where(pos, real(scene.room[axis]), real(0)) - o[axis]) / d[axis])
            faces.append(np.where(pos, np.int32(2 * axis + 1), np.int32(2 * axis)))
    tx, ty, tz = ts
    use_x = (tx <= ty) & (tx <= tz)
    use_y = ~use_x & (ty <= tz)
    t = np.where(use_x, tx, np.where(use_y, ty, tz))
    face = np.where(use_x, faces[0], np.where(use_y, faces[1], faces[2]))
    # Face ids 0..3 walls (x0, x1, y0, y1), 4 floor, 5 ceiling (scene.ROOM_FACES order).
    if len(scene.windows):
        z = o[2] + t * d[2]
        along_x, along_y = o[0] + t * d[0], o[1] + t * d[1]
        hole = np.zeros(t.shape, dtype=bool)
        for wall, u0, u1, z0, z1 in scene.windows.tolist():
            u = along_y if wall < 2 else along_x
            hole |= (face == wall) & (u > u0) & (u < u1) & (z > z0) & (z < z1)
        t = np.where(hole, np.inf, t)
        face = np.where(hole, np.int32(-1), face)
    sign = lambda axis: np.where(use_x if axis == 0 else use_y if axis == 1 else ~(use_x | use_y),  # noqa: E731
                                 -np.sign(d[axis]), 0.0)  # fmt: skip
    return t, (sign(0), sign(1), sign(2)), face


def _slab(center, half, c, s, o, d) -> tuple:
    """Slab test of yaw-rotated boxes (c, s = cos, sin of yaw); normal of the entry face.

    Parameters may be scalars (one box) or (B, 1) columns against (1, K) rays (B boxes at once).
    """
    rel = (o[0] - center[0], o[1] - center[1], o[2] - center[2])
    ol = (c * rel[0] + s * rel[1], c * rel[1] - s * rel[0], rel[2])
    dl = (c * d[0] + s * d[1], c * d[1] - s * d[0], d[2])
    near, far = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            inv = 1.0 / dl[axis]
            t1 = (-half[axis] - ol[axis]) * inv
            t2 = (half[axis] - ol[axis]) * inv
            near.append(np.minimum(t1, t2))
            far.append(np.maximum(t1, t2))
    t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
    t = np.where((t_near <= t_far) & (t_near > T_MIN), t_near, np.inf)
    ax0 = near[0] >= t_near
    ax1 = ~ax0 & (near[1] >= t_near)
    nlx = np.where(ax0, -np.sign(dl[0]), 0.0)
    nly = np.where(ax1, -np.sign(dl[1]), 0.0)
    nlz = np.where(ax0 | ax1, 0.0, -np.sign(dl[2]))
    return t, (c * nlx - s * nly, s * nlx + c * nly, nlz)


def _box(b: Box, o, d) -> tuple:
    return (*_slab(b.center, b.half, math.cos(b.yaw), math.sin(b.yaw), o, d), b.sid)


def _all_boxes(scene: Scene, o, d) -> tuple:
    """Nearest of all boxes at once, for a small batch of rays: o, d components of shape (1, K)."""
    arr = scene.box_array
    col = [arr[:, j : j + 1] for j in range(8)]
    t, n = _slab(col[0:3], col[3:6], np.cos(col[6]), np.sin(col[6]), o, d)
    best, k = np.argmin(t, axis=0), np.arange(t.shape[1])
    return t[best, k], tuple(c[best, k] for c in n), arr[best, 7].astype(np.int32)


def _sphere(sp: Sphere, o, d) -> tuple:
    oc = [o[i] - sp.center[i] for i in range(3)]
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    half_b = d[0] * oc[0] + d[1] * oc[1] + d[2] * oc[2]
    cc = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - sp.radius**2
    disc = half_b * half_b - a * cc
    with np.errstate(invalid="ignore"):
        t = (-half_b - np.sqrt(disc)) / a
    t = np.where((disc >= 0) & (t > T_MIN), t, np.inf)
    inv_r = 1.0 / sp.radius
    normal = tuple((oc[i] + np.where(np.isfinite(t), t, 0.0) * d[i]) * inv_r for i in range(3))
    return t, normal, sp.sid


def _cylinder(cy: Cylinder, o, d) -> tuple:
    """Side (quadratic in x, y) and the cap facing the ray origin."""
    ox, oy = o[0] - cy.cx, o[1] - cy.cy
    a = d[0] * d[0] + d[1] * d[1]
    half_b = d[0] * ox + d[1] * oy
    disc = half_b * half_b - a * (ox * ox + oy * oy - cy.radius**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-half_b - np.sqrt(disc)) / a
        z_side = o[2] + t_side * d[2]
        t_side = np.where(
            (disc >= 0) & (t_side > T_MIN) & (z_side >= cy.z0) & (z_side <= cy.z1), t_side, np.inf
        )
        if np.ndim(o[2]) == 0:  # keep Python floats: a 0-d array would promote float32 to float64
            cap_z = cy.z1 if o[2] > cy.z1 else cy.z0
        else:
            cap_z = np.where(o[2] > cy.z1, cy.z1, cy.z0)
        t_cap = (cap_z - o[2]) / d[2]
    px, py = ox + t_cap * d[0], oy + t_cap * d[1]
    on_cap = (t_cap > T_MIN) & (px * px + py * py <= cy.radius**2)
    t_cap = np.where(on_cap, t_cap, np.inf)
    side = t_side <= t_cap
    t = np.minimum(t_side, t_cap)
    ts = np.where(np.isfinite(t_side), t_side, 0.0) / cy.radius
    nx = np.where(side, ox / cy.radius + ts * d[0], 0.0)
    ny = np.where(side, oy / cy.radius + ts * d[1], 0.0)
    nz = np.where(side, 0.0, np.where(cap_z > o[2], -1.0, 1.0)).astype(t.dtype, copy=False)
    return t, (nx, ny, nz), np.where(side, cy.sid_side, cy.sid_cap)


_INTERSECT = {Box: _box, Sphere: _sphere, Cylinder: _cylinder}


#: The 12 edges of a bounding box, as pairs of `Scene.corners` indices (corner = 4x + 2y + z bits).
_EDGES = np.array([(i, i | bit) for bit in (1, 2, 4) for i in range(8) if not i & bit])
_NEAR = 1e-3


def _screen_rects(
    scene: Scene, origin: np.ndarray, rotation: np.ndarray, f: float, size: int
) -> list:
    """Per primitive: pixel rectangle (rows, cols) covering its bounding box's projection, or None.

    The box is clipped at the near plane z = _NEAR: the rectangle bounds the corners in
    front plus the points where the box edges cross the plane.
    """
    cam = (scene.corners - origin) @ rotation  # (P, 8, 3) in the camera frame
    a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]  # (P, 12, 3)
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - _NEAR) * (zb - _NEAR) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(crosses, (_NEAR - za) / (zb - za), 0.0)
    points = np.concatenate([cam, a + w[..., None] * (b - a)], axis=1)  # (P, 20, 3)
    use = np.concatenate([cam[..., 2] >= _NEAR, crosses], axis=1)
    z = np.where(use, np.maximum(points[..., 2], _NEAR), 1.0)
    uv = points[..., :2] / z[..., None] * f + (size - 1) / 2
    lo = np.where(use[..., None], uv, np.inf).min(axis=1)
    hi = np.where(use[..., None], uv, -np.inf).max(axis=1)
    visible = use.any(axis=1)
    lo = np.clip(np.floor(np.where(visible[:, None], lo, 0)) - 1, 0, size).astype(int).tolist()
    hi = np.clip(np.ceil(np.where(visible[:, None], hi, 0)) + 2, 0, size).astype(int).tolist()
    rects: list = []
    for (u0, v0), (u1, v1), seen in zip(lo, hi, visible.tolist(), strict=True):
        rects.append((slice(v0, v1), slice(u0, u1)) if seen and u0 < u1 and v0 < v1 else None)
    return rects


def cast(scene: Scene, origin: np.ndarray, dirs, cull: tuple | None = None) -> Hits:
    """Nearest surface along each ray.

    origin: (3,), or (..., 3) broadcastable to the rays. dirs: world directions,
    (..., 3) or a tuple of three (...) arrays (their dtype sets the precision).
    cull = (rotation camera->world, f_px) for a square camera image: each
    primitive is then only tested over its projected rectangle.
    """
    if isinstance(dirs, tuple):
        d = dirs
    else:
        d = tuple(np.ascontiguousarray(dirs[..., i]) for i in range(3))
    origin = np.asarray(origin, dtype=np.float64)
    o = (
        tuple(float(c) for c in origin)
        if origin.ndim == 1
        else tuple(origin[..., i] for i in range(3))
    )
    t, normal, sid = _room(scene, o, d)
    n = [np.array(c, dtype=t.dtype) for c in normal]
    sid = np.asarray(sid, dtype=np.int32)
    if cull is not None:
        rects = _screen_rects(scene, origin, cull[0], cull[1], d[0].shape[0])
    else:  # a few rays (camera sampling): all boxes in one batch, then the other primitives
        rects = [None if isinstance(p, Box) else (Ellipsis,) for p in scene.prims]
        if len(scene.box_array):
            row = lambda c: c if np.ndim(c) == 0 else np.broadcast_to(c, t.shape).reshape(1, -1)  # noqa: E731
            tb, nb, sb = _all_boxes(scene, tuple(map(row, o)), tuple(map(row, d)))
            closer = tb.reshape(t.shape) < t
            np.copyto(t, tb.reshape(t.shape), where=closer)
            np.copyto(sid, sb.reshape(t.shape), where=closer)
            for i in range(3):
                np.copyto(n[i], nb[i].reshape(t.shape), where=closer)
    for prim, rect in zip(scene.prims, rects, strict=True):
        if rect is None:
            continue
        o_r = tuple(c if np.ndim(c) == 0 else c[rect] for c in o)
        tp, np_, sp = _INTERSECT[type(prim)](prim, o_r, tuple(c[rect] for c in d))
        closer = tp < t[rect]
        if not closer.any():
            continue
        np.copyto(t[rect], tp, where=closer)
        np.copyto(sid[rect], sp, where=closer)
        for i in range(3):
            np.copyto(n[i][rect], np_[i], where=closer)
    return Hits(t=t, normal=tuple(n), sid=sid)
