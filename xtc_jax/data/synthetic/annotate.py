"""Ray hits -> every Taskonomy domain's on-disk array (encodings: taskonomy.md §2).

Geometry domains come from the hits (depth = z-buffer, normals = the
surfaces' normals in the camera frame, curvature and semantics per surface);
reshading is `reshading_from_normals` of the *stored* (quantised) normals;
occlusion edges come from the depth, texture edges and 2D keypoints from the
rgb, 3D keypoints from normals + depth. Invalid pixels (nothing hit, e.g.
through a window): depth 65535, normal (128,128,128), reshading 13,
curvature (0,0,0), edge_occlusion 0, keypoints3d 0, segment 0.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from xtc_jax.data.synthetic.raycast import Hits
from xtc_jax.data.synthetic.scene import PATTERNS, Scene
from xtc_jax.domains import (
    CURVATURE_RADIUS,
    DEPTH_INVALID,
    DEPTH_UNITS_PER_METRE,
    NORMAL_Z_SIGN,
    RESHADING_INVALID,
)

#: Valid reshading pixels are clipped to at least this value, so they never equal RESHADING_INVALID.
RESHADING_FLOOR = RESHADING_INVALID + 1
# Gains mapping unitless responses to raw 16-bit values in the real data's ranges
# (taskonomy.md §2), calibrated so that the 90th percentile of a view's maximum at
# 256 px is about the real maximum: edge_texture ~9000, edge_occlusion ~4700,
# keypoints2d ~1100, keypoints3d ~58000 (clipped there).
EDGE_TEXTURE_GAIN = 10000.0
EDGE_OCCLUSION_GAIN = 1700.0
KEYPOINTS2D_GAIN = 5.0e6
KEYPOINTS3D_GAIN = 6.5e5
KEYPOINTS3D_MAX = 58000


def reshading_from_normals(normals_cam: np.ndarray, ray_dirs: np.ndarray) -> np.ndarray:
    """The reshading domain (uint8, (H, W)) of camera-frame normals under the standard light.

    Standard light: a point light at the camera centre, Lambertian, no falloff:
    value = 255 * max(0, -n . d) with n, d normalised (d = ray direction, see
    `raycast.camera_rays`; normals in the physical camera frame x right, y
    down, z forward, i.e. stored z times NORMAL_Z_SIGN). Rounded, then clipped
    to [RESHADING_FLOOR, 255] so that no valid pixel equals RESHADING_INVALID.
    Holes are not handled here (the caller writes RESHADING_INVALID). Computed
    in float32 (any input dtype), so results are identical for identical inputs.
    """
    f32 = np.float32
    n0, n1, n2 = (normals_cam[..., i].astype(f32) for i in range(3))
    d0, d1, d2 = (ray_dirs[..., i].astype(f32) for i in range(3))
    dot = n0 * d0 + n1 * d1 + n2 * d2
    norm = np.sqrt((n0 * n0 + n1 * n1 + n2 * n2) * (d0 * d0 + d1 * d1 + d2 * d2))
    cos = -dot / np.maximum(norm, f32(1e-12))
    return np.clip(np.rint(255.0 * cos), RESHADING_FLOOR, 255).astype(np.uint8)


def decode_normals(raw: np.ndarray) -> np.ndarray:
    """Stored normal PNG (H, W, 3) uint8 -> float32 camera-frame normals.

    Frame: x right, y down, z forward (stored z times NORMAL_Z_SIGN).
    """
    n = raw.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)
    n[..., 2] *= NORMAL_Z_SIGN
    return n


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)  # much faster than x % 1.0


def _albedo(scene: Scene, sid: np.ndarray, px, py, pz) -> list[np.ndarray]:
    """Albedo channels (H, W) of hit points on surfaces `sid`: solid procedural textures.

    Each surface's pattern (plain, stripes, checkers, noise, wood) is a function
    of the 3D hit point in the surface's pattern frame (yaw, period, offset).
    """
    f32 = np.float32
    table = scene.material_table
    present = np.zeros(len(PATTERNS), dtype=bool)
    present[scene.pattern[np.bincount(sid.ravel(), minlength=len(scene.pattern)) > 0]] = True
    c, si, inv, phase = (table[i].take(sid) for i in range(4))
    qx = (c * px + si * py) * inv + phase
    qy = (c * py - si * px) * inv
    qz = pz * inv
    m = np.zeros(sid.shape, dtype=f32)
    kind = scene.pattern.astype(np.int8).take(sid) if present.sum() > 1 else None
    for k in np.flatnonzero(present[1:]) + 1:
        if k == 1:  # stripes
            mk = np.clip(np.sin(f32(2 * np.pi) * qx) * 3.0, -1.0, 1.0) * 0.5 + 0.5
        elif k == 2:  # checkers
            mk = 2.0 * _frac((np.floor(qx) + np.floor(qy) + np.floor(qz)) * 0.5)
        elif k == 3:  # noise: a sum of three random plane waves
            w = scene.noise_freqs.astype(f32)
            mk = sum(np.sin(w[0, j] * qx + w[1, j] * qy + w[2, j] * qz) for j in range(3)) / 6 + 0.5
        elif k == 4:  # wood rings
            mk = np.square(_frac(np.sqrt(qx * qx + qz * qz) * 3.0 + 0.4 * np.sin(qy * 2.0)))
        elif k == 5:  # dots (held out): discs on a 3D lattice
            dx, dy, dz = (_frac(q) - 0.5 for q in (qx, qy, qz))
            mk = (dx * dx + dy * dy + dz * dz < 0.09).astype(f32)
        else:  # zigzag (held out): stripes bent into chevrons
            mk = (_frac(qx * 2.0 + np.abs(_frac(qy * 1.5) - 0.5) * 2.0) < 0.5).astype(f32)
        m = mk if kind is None else np.where(kind == k, mk, m)
    return [table[4 + i].take(sid) + table[7 + i].take(sid) * m for i in range(3)]


def shade_rgb(scene: Scene, hits: Hits, points: tuple, origin: np.ndarray, rng,
              style: str = "base") -> np.ndarray:  # fmt: skip
    """(H, W, 3) uint8 rgb: textures lit by random ambient + point + directional lights.

    Lights (positions, colours, intensities) are drawn per view from `rng`,
    independently of the geometry and the materials; holes show the window colour.
    Lambertian with inverse-square-ish falloff, a Blinn-Phong highlight, no shadows.
    style "shifted": lighting never seen in training, one or two strongly tinted point
    lights low in the room over a dim ambient, no sun.
    """
    if style == "shifted":
        return _shade_shifted(scene, hits, points, rng)
    valid = hits.valid
    px, py, pz = points
    nx, ny, nz = hits.normal
    albedo = _albedo(scene, np.maximum(hits.sid, 0), px, py, pz)
    exposure = float(rng.uniform(0.8, 1.3))
    ambient = rng.uniform(0.05, 0.3, 3) * rng.uniform(0.5, 1.2) * exposure
    light = [np.full(valid.shape, ambient[i], dtype=np.float32) for i in range(3)]
    highlight = None
    for k in range(rng.integers(1, 3)):
        pos = rng.uniform([0.2, 0.2, 0.8], scene.room - 0.1).tolist()
        color = (rng.uniform(0.5, 1.0, 3) * rng.uniform(1.5, 4.0) * exposure).tolist()
        lx, ly, lz = pos[0] - px, pos[1] - py, pos[2] - pz
        dist2 = lx * lx + ly * ly + lz * lz
        inv = 1.0 / np.sqrt(dist2)
        lx, ly, lz = lx * inv, ly * inv, lz * inv
        lam = np.maximum(nx * lx + ny * ly + nz * lz, 0.0) / (1.0 + 0.3 * dist2)
        for i in range(3):
            light[i] += color[i] * lam
        if k == 0:  # Blinn-Phong highlight of the first light (white, on top of the albedo)
            vx, vy, vz = float(origin[0]) - px, float(origin[1]) - py, float(origin[2]) - pz
            inv = 1.0 / np.sqrt(vx * vx + vy * vy + vz * vz + 1e-12)
            hx, hy, hz = lx + vx * inv, ly + vy * inv, lz + vz * inv
            cos_h = (nx * hx + ny * hy + nz * hz) / np.sqrt(hx * hx + hy * hy + hz * hz + 1e-12)
            highlight = np.maximum(cos_h, 0.0) ** float(rng.uniform(8, 64))
            highlight_color = [0.15 * c for c in color]
    if rng.random() < 0.6:  # directional "sun"
        sun = rng.normal(0, 1, 3) - [0, 0, 2.0]
        sun = (-sun / np.linalg.norm(sun)).tolist()
        lam = np.maximum(nx * sun[0] + ny * sun[1] + nz * sun[2], 0.0)
        for i, col in enumerate((rng.uniform(0.3, 1.0, 3) * exposure).tolist()):
            light[i] += col * lam
    rgb = np.empty((*valid.shape, 3), dtype=np.uint8)
    for i in range(3):
        value = albedo[i] * light[i] + highlight_color[i] * highlight
        value = np.where(valid, np.clip(value, 0.0, 1.0) ** (1 / 2.2), float(scene.window_color[i]))
        rgb[..., i] = np.rint(value * 255.0)
    return rgb


def _shade_shifted(scene: Scene, hits: Hits, points: tuple, rng) -> np.ndarray:
    """The shifted style's lighting: saturated coloured point lights near the floor."""
    valid = hits.valid
    px, py, pz = points
    nx, ny, nz = hits.normal
    albedo = _albedo(scene, np.maximum(hits.sid, 0), px, py, pz)
    light = [np.full(valid.shape, a, dtype=np.float32) for a in rng.uniform(0.01, 0.06, 3)]
    for _ in range(rng.integers(1, 3)):
        pos = rng.uniform([0.2, 0.2, 0.1], [*(scene.room[:2] - 0.2), 0.6]).tolist()
        color = np.full(3, 0.15)
        color[rng.integers(3)] = 1.0  # one dominant primary
        color = (color * rng.uniform(3.0, 6.0)).tolist()
        lx, ly, lz = pos[0] - px, pos[1] - py, pos[2] - pz
        dist2 = lx * lx + ly * ly + lz * lz
        inv = 1.0 / np.sqrt(dist2)
        lam = np.maximum((nx * lx + ny * ly + nz * lz) * inv, 0.0) / (1.0 + 0.3 * dist2)
        for i in range(3):
            light[i] += color[i] * lam
    rgb = np.empty((*valid.shape, 3), dtype=np.uint8)
    for i in range(3):
        value = np.clip(albedo[i] * light[i], 0.0, 1.0) ** (1 / 2.2)
        rgb[..., i] = np.rint(np.where(valid, value, float(scene.window_color[i])) * 255.0)
    return rgb


@functools.lru_cache(maxsize=16)
def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    """G with G @ A = gaussian_filter1d(A, sigma, axis=0) (mode 'reflect'): blurs as matmuls."""
    return ndimage.gaussian_filter1d(np.eye(size), sigma, axis=0).astype(np.float32)


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the last two axes of (..., H, W) float32 (square images)."""
    g = _blur_matrix(images.shape[-1], sigma)
    return g @ images @ g.T


@functools.lru_cache(maxsize=16)
def _upsample_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """U (size, size/2): blur by sigma/2 on the half grid, then linear interpolation to size."""
    half = size // 2
    centres = np.clip((np.arange(size) + 0.5) / 2 - 0.5, 0, half - 1)
    lo = np.minimum(np.floor(centres).astype(int), half - 2)
    frac = centres - lo
    interp = np.zeros((size, half))
    interp[np.arange(size), lo] = 1 - frac
    interp[np.arange(size), lo + 1] += frac
    if sigma > 0:
        interp = interp @ ndimage.gaussian_filter1d(np.eye(half), sigma / 2, axis=0)
    return interp.astype(np.float32)


def smooth_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """A cheaper Gaussian-like blur for smooth response maps: 2x2 average pooling, blur at half
    resolution, bilinear upsampling (~3x fewer flops than `blur`). Odd sizes use `blur`."""
    size = images.shape[-1]
    if size % 2 or size < 8:
        return blur(images, sigma)
    x = images
    pooled = (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2]) * 0.25
    up = _upsample_blur_matrix(size, sigma)
    return up @ pooled @ up.T


def _binomial(image: np.ndarray, passes: int) -> np.ndarray:
    """`passes` rounds of [1, 2, 1] / 4 along both axes of a 2D image (symmetric borders):
    a Gaussian of sigma^2 = passes / 2, by slicing (cheap)."""
    for _ in range(passes):
        out = np.empty_like(image)
        out[:, 1:-1] = (image[:, :-2] + image[:, 2:]) * 0.25 + image[:, 1:-1] * 0.5
        out[:, 0] = image[:, 0] * 0.75 + image[:, 1] * 0.25
        out[:, -1] = image[:, -1] * 0.75 + image[:, -2] * 0.25
        image = np.empty_like(out)
        image[1:-1] = (out[:-2] + out[2:]) * 0.25 + out[1:-1] * 0.5
        image[0] = out[0] * 0.75 + out[1] * 0.25
        image[-1] = out[-1] * 0.75 + out[-2] * 0.25
    return image


def _sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy): Sobel derivatives (as scipy.ndimage.sobel, mode 'reflect'), by slicing."""
    p = np.pad(image, 1, mode="symmetric")
    dx, dy = p[:, 2:] - p[:, :-2], p[2:, :] - p[:-2, :]
    return dx[:-2] + 2 * dx[1:-1] + dx[2:], dy[:, :-2] + 2 * dy[:, 1:-1] + dy[:, 2:]


def _u16(values: np.ndarray, gain: float, top: int = 65535) -> np.ndarray:
    return np.clip(np.rint(values * gain), 0, top).astype(np.uint16)


def _diff(image: np.ndarray, axis: int) -> np.ndarray:
    """Central difference / 2 along axis 1 (x) or 0 (y); 0 on the border."""
    out = np.zeros_like(image)
    if axis == 1:
        np.subtract(image[:, 2:], image[:, :-2], out=out[:, 1:-1])
    else:
        np.subtract(image[2:], image[:-2], out=out[1:-1])
    return out * 0.5


def _corners3d(fields: list[np.ndarray]) -> np.ndarray:
    """Foerstner corner strength det(J) / trace(J) of the structure tensor J of `fields`."""
    size = fields[0].shape[-1]
    half = size % 2 == 0 and size >= 8
    if half:  # 2x2 pooling; one half-resolution pixel spans two: derivatives per full pixel
        fields = [
            (f[::2, ::2] + f[1::2, ::2] + f[::2, 1::2] + f[1::2, 1::2]) * 0.25 for f in fields
        ]
    gx = [_diff(f, 1) for f in fields]
    gy = [_diff(f, 0) for f in fields]
    tensor = np.empty((3, *fields[0].shape), dtype=np.float32)
    tensor[0] = sum(a * a for a in gx)
    tensor[1] = sum(b * b for b in gy)
    tensor[2] = sum(a * b for a, b in zip(gx, gy, strict=True))
    if half:
        tensor *= 0.25
        g = _blur_matrix(size // 2, 1.0)
        jxx, jyy, jxy = g @ tensor @ g.T
    else:
        jxx, jyy, jxy = blur(tensor, 2.0)
    corner = (jxx * jyy - jxy * jxy) / (jxx + jyy + 1e-3)
    if half:
        up = _upsample_blur_matrix(size, 0.0)
        corner = up @ corner @ up.T
    return corner


def annotate(scene: Scene, hits: Hits, rays_cam: np.ndarray, rotation: np.ndarray, rgb) -> dict:
    """All label domains (raw on-disk arrays) of one view, given its hits and rgb.

    rays_cam: (S, S, 3) `raycast.camera_rays`; rotation: camera -> world.
    """
    valid = hits.valid
    t = np.where(valid, hits.t, 0.0)
    out: dict[str, np.ndarray] = {}
    x, y = rays_cam[0, :, 0].astype(np.float32), rays_cam[:, 0, 1].astype(np.float32)
    ray_len = np.sqrt(
        np.square(x)[None, :] + np.square(y)[:, None] + 1.0
    )  # pinhole rays are separable
    for name, metres in (("depth_zbuffer", t), ("depth_euclidean", t * ray_len)):
        raw = np.clip(np.rint(metres * DEPTH_UNITS_PER_METRE), 0, DEPTH_INVALID - 1)
        out[name] = np.where(valid, raw, DEPTH_INVALID).astype(np.uint16)

    # Camera-frame normal j = sum_i world_i * R[i, j] (R camera -> world).
    r = rotation.tolist()
    nw = hits.normal
    normal = np.full((*valid.shape, 3), 128, dtype=np.uint8)
    for j, sign in enumerate((1.0, 1.0, float(NORMAL_Z_SIGN))):
        n_j = nw[0] * (sign * r[0][j]) + nw[1] * (sign * r[1][j]) + nw[2] * (sign * r[2][j])
        normal[..., j] = np.where(valid, np.clip(np.rint((n_j + 1.0) * 127.5), 0, 255), 128)
    out["normal"] = normal
    reshading = reshading_from_normals(decode_normals(normal), rays_cam)
    out["reshading"] = np.where(valid, reshading, RESHADING_INVALID).astype(np.uint8)

    sid = np.where(valid, hits.sid, 0)
    curv = np.zeros((*valid.shape, 3), dtype=np.uint8)
    for ch, k in ((0, scene.k1), (1, scene.k2)):
        raw_k = np.rint((np.clip(k * CURVATURE_RADIUS, -1, 1) + 1) / 2 * 254).astype(np.uint8)
        curv[..., ch] = np.where(valid, raw_k.take(sid), 0)
    out["principal_curvature"] = curv
    out["segment_semantic"] = np.where(valid, scene.semantic.take(sid), 0).astype(np.uint8)

    # 2D domains from the rgb as stored: Sobel of the blurred gray (texture edges) and
    # the determinant of its Hessian (SURF-like keypoints), blurred.
    gray = sum(rgb[..., i].astype(np.float32) for i in range(3)) * np.float32(1 / 765)
    gray = blur(gray, 2.0)
    gx, gy = _sobel(gray)
    out["edge_texture"] = _u16(np.sqrt(gx * gx + gy * gy), EDGE_TEXTURE_GAIN)
    p = np.pad(gray, 1, mode="symmetric")
    hxx = p[1:-1, 2:] + p[1:-1, :-2] - 2 * gray
    hyy = p[2:, 1:-1] + p[:-2, 1:-1] - 2 * gray
    hxy = (p[2:, 2:] - p[2:, :-2] - p[:-2, 2:] + p[:-2, :-2]) * 0.25
    det = np.maximum(hxx * hyy - np.square(0.9 * hxy), 0.0)
    out["keypoints2d"] = _u16(smooth_blur(det, 2.0), KEYPOINTS2D_GAIN)

    # Occlusion edges: Sobel of sqrt(depth), smoothed with a mask-normalised Gaussian.
    mask = valid.astype(np.float32)
    num, den = _binomial(np.sqrt(t) * mask, 2), _binomial(mask, 2)
    smooth = num / np.maximum(den, 1e-6)
    gx, gy = _sobel(smooth)
    out["edge_occlusion"] = np.where(
        valid, _u16(np.sqrt(gx * gx + gy * gy), EDGE_OCCLUSION_GAIN), 0
    )

    # 3D keypoints: corner strength (Foerstner) of the structure tensor of the normal field
    # and sqrt-depth, i.e. points where the 3D surface changes in two directions; computed at
    # half resolution (it is a smooth response map) and interpolated back. The tensor is
    # invariant to rotating the normals, so world normals serve.
    corner = _corners3d([nw[i] * mask for i in range(3)] + [smooth * 2.0])
    out["keypoints3d"] = np.where(valid, _u16(corner, KEYPOINTS3D_GAIN, KEYPOINTS3D_MAX), 0)
    return out
