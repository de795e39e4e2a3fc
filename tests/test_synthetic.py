"""The synthetic Taskonomy renderer: files, encodings, determinism and cross-domain consistency."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xtc_jax import domains
from xtc_jax.data.sources import layouts
from xtc_jax.data.synthetic import generate, raycast
from xtc_jax.data.synthetic.annotate import decode_normals, reshading_from_normals
from xtc_jax.data.synthetic.scene import (
    CEILING,
    FLOOR,
    euler_xyz_to_matrix,
    look_at_euler,
    opencv_rotation,
)
from xtc_jax.infra.png import decode_png, encode_png, png_header

SIZE = 64
# (bit depth, channels) of every written domain.
FORMATS = {
    "rgb": (8, 3), "depth_zbuffer": (16, 1), "depth_euclidean": (16, 1), "normal": (8, 3),
    "reshading": (8, 1), "principal_curvature": (8, 3), "edge_texture": (16, 1),
    "edge_occlusion": (16, 1), "keypoints2d": (16, 1), "keypoints3d": (16, 1),
    "segment_semantic": (8, 1),
}  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _read(root: Path, building: str, domain: str, point: int, view: int, layout: str = "plain"):
    ext = "json" if domain == "point_info" else "png"
    data = (root / layouts.relative_path(layout, building, domain, point, view, ext)).read_bytes()
    return json.loads(data) if ext == "json" else decode_png(data)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """3 buildings x 6 views (2 points x 3 views) at 64 px, plain layout."""
    root = tmp_path_factory.mktemp("synth")
    summary = generate.generate(root, buildings=3, views=6, size=SIZE, seed=7, progress=False)
    assert summary.views == 18 and summary.files == 18 * 12 + 1
    return root


def _views(root: Path):
    for b in range(3):
        for p in range(2):
            for v in range(3):
                yield generate.building_name(b), p, v


def test_determinism_and_workers(tmp_path: Path) -> None:
    args = dict(buildings=2, views=2, size=32, seed=3, progress=False)
    generate.generate(tmp_path / "a", **args)
    generate.generate(tmp_path / "b", **args, workers=2)
    generate.generate(tmp_path / "c", **{**args, "seed": 4})
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a.keys() == b.keys() == c.keys() and len(a) == 2 * 2 * 12 + 1
    assert a == b  # bit-identical, with or without worker processes
    rgb = [k for k in a if k.endswith("domain_rgb.png")]
    assert all(a[k] != c[k] for k in rgb)  # another seed, other images


@pytest.mark.parametrize("layout", layouts.LAYOUTS)
def test_every_file_in_every_layout(tmp_path: Path, layout: str) -> None:
    generate.generate(
        tmp_path, buildings=1, views=4, size=32, seed=1, layout=layout, progress=False
    )
    building = generate.building_name(0)
    for point, view in ((0, 0), (0, 1), (0, 2), (1, 0)):
        for domain, (depth, channels) in FORMATS.items():
            path = tmp_path / layouts.relative_path(layout, building, domain, point, view)
            header = png_header(path.read_bytes(), str(path))
            assert (header.width, header.height, header.bit_depth, header.channels) == (
                32,
                32,
                depth,
                channels,
            )
        info = _read(tmp_path, building, "point_info", point, view, layout)
        assert (
            info["resolution"] == 32
            and info["view_id"] == view
            and len(info["camera_rotation_final"]) == 3
        )
    assert "segmentsemantic" in str(
        layouts.relative_path(layout, building, "segment_semantic", 0, 0)
    )
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temporaries


def test_every_rendered_file_name_parses_back_to_its_domain(tree: Path) -> None:
    """Names as Taskonomy's (taskonomy.md §1.3): `..._domain_edge_texture.png`, not `None`."""
    from xtc_jax.data.sources.index import FILE_RE, folder_domain, token_domain

    names = [p for p in tree.rglob("point_*") if p.is_file()]
    assert len(names) == 18 * 12
    for path in names:
        match = FILE_RE.fullmatch(path.name)
        assert match, path.name
        assert token_domain(match.group(3)) == folder_domain(path.parent.name), path
    assert (tree / "synth_000" / "edge_texture" /
            "point_0_view_0_domain_edge_texture.png").is_file()  # fmt: skip


def test_split_file(tmp_path: Path) -> None:
    path = generate.write_split_file(tmp_path, 7)
    raw = path.read_bytes()
    assert b"\n" not in raw and raw.count(b"\r") == 8
    lines = raw.decode().split("\r")[:-1]
    assert lines[0] == "id,train,val,test"
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == [generate.building_name(b) for b in range(7)]
    flags = np.array([[int(x) for x in r[1:]] for r in rows])
    assert np.all(flags.sum(axis=1) == 1) and flags.sum(axis=0).tolist() == [5, 1, 1]
    assert [sum(r[1:]) for r in generate.split_rows(2)] == [1, 1]
    assert generate.split_rows(2)[1][2] == 1  # N = 2: one val building


def test_tree_split_lists_buildings(tree: Path) -> None:
    lines = (tree / generate.SPLIT_FILE).read_bytes().decode().split("\r")
    assert sorted(line.split(",")[0] for line in lines[1:-1]) == [
        generate.building_name(b) for b in range(3)
    ]


def _backprojected_normals(depth_raw: np.ndarray, fov: float) -> tuple[np.ndarray, np.ndarray]:
    """Normals (camera frame, facing the camera) from finite differences of back-projected depth."""
    z = depth_raw.astype(np.float64) / domains.DEPTH_UNITS_PER_METRE
    points = raycast.camera_rays(z.shape[0], fov) * z[..., None]
    du = (points[1:-1, 2:] - points[1:-1, :-2]) / 2
    dv = (points[2:, 1:-1] - points[:-2, 1:-1]) / 2
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
    n *= -np.sign(np.sum(n * points[1:-1, 1:-1], axis=-1, keepdims=True))  # face the camera
    # Interior: 3x3 all valid, locally planar depth (no occlusion edge or crease).
    valid = depth_raw != domains.DEPTH_INVALID
    ok = np.ones_like(valid[1:-1, 1:-1])
    for dy in range(3):
        for dx in range(3):
            ok &= valid[dy : dy + z.shape[0] - 2, dx : dx + z.shape[1] - 2]
    second = np.abs(z[1:-1, 2:] + z[1:-1, :-2] - 2 * z[1:-1, 1:-1]) + np.abs(
        z[2:, 1:-1] + z[:-2, 1:-1] - 2 * z[1:-1, 1:-1]
    )
    return n, ok & (second < 0.01 * z[1:-1, 1:-1])


def test_normals_agree_with_depth(tree: Path) -> None:
    errors = []
    for building, point, view in _views(tree):
        info = _read(tree, building, "point_info", point, view)
        n_depth, interior = _backprojected_normals(
            _read(tree, building, "depth_zbuffer", point, view), info["field_of_view_rads"]
        )
        n_stored = decode_normals(_read(tree, building, "normal", point, view))[1:-1, 1:-1]
        n_stored = n_stored / np.linalg.norm(n_stored, axis=-1, keepdims=True)
        cos = np.clip(np.sum(n_depth * n_stored, axis=-1), -1, 1)
        errors.append(np.degrees(np.arccos(cos[interior])))
    errors = np.concatenate(errors)
    assert len(errors) > 18 * SIZE * SIZE * 0.3
    assert np.median(errors) < 5.0, np.median(errors)
    assert np.mean(errors < 15.0) > 0.9


def test_normal_frame_convention() -> None:
    floor_g, ceiling_g, facing, frontal_b = [], [], [], []
    for b in range(4):
        for p in range(2):
            view = generate.render_view(11, b, p, 0, 48)
            raw = view.arrays["normal"]
            n = decode_normals(raw)
            rays = raycast.camera_rays(48, view.point_info["field_of_view_rads"])
            valid = view.arrays["depth_zbuffer"] != domains.DEPTH_INVALID
            floor_g += raw[..., 1][view.surface == FLOOR].tolist()
            ceiling_g += raw[..., 1][view.surface == CEILING].tolist()
            facing.append(np.sum(n * rays, axis=-1)[valid])
            frontal_b += raw[..., 2][valid & (np.abs(n[..., 2]) > 0.95)].tolist()
    assert np.median(floor_g) < 100 and np.median(ceiling_g) > 155  # up is -y (image up)
    assert np.mean(np.concatenate(facing) < 0.02) > 0.999  # visible surfaces face the camera
    assert frontal_b and max(frontal_b) < 10  # a frontal surface is stored with B ~ 0 (z away)


def test_fixation_and_pose(tree: Path) -> None:
    """The fixated point projects to the image centre; the centre depth is the camera distance."""
    misses = []
    for building, point, view in _views(tree):
        info = _read(tree, building, "point_info", point, view)
        camera, target = np.array(info["camera_location"]), np.array(info["point_location"])
        blender = euler_xyz_to_matrix(*info["camera_rotation_final"])
        local = blender.T @ (target - camera)  # Blender camera frame: looks down -Z, +Y up
        assert np.allclose(local[:2], 0, atol=1e-9) and local[2] < 0
        assert math.isclose(-local[2], info["camera_distance"], rel_tol=1e-9)
        assert abs(info["camera_rotation_final"][1]) < 1e-12  # roll 0
        forward = opencv_rotation(tuple(info["camera_rotation_final"])) @ [0.0, 0.0, 1.0]
        assert np.allclose(forward, (target - camera) / np.linalg.norm(target - camera))
        depth = _read(tree, building, "depth_euclidean", point, view)
        centre = depth[SIZE // 2 - 1 : SIZE // 2 + 1, SIZE // 2 - 1 : SIZE // 2 + 1]
        misses.append(
            np.min(np.abs(centre / domains.DEPTH_UNITS_PER_METRE - info["camera_distance"]))
        )
    # The 2x2 centre pixels are half a pixel off the point: a nearby edge may cover them.
    assert np.median(misses) < 0.03 and np.mean(np.array(misses) < 0.1) > 0.7


def test_reshading_is_the_formula_of_the_normals(tree: Path) -> None:
    for building, point, view in _views(tree):
        info = _read(tree, building, "point_info", point, view)
        normals = decode_normals(_read(tree, building, "normal", point, view))
        expected = reshading_from_normals(
            normals, raycast.camera_rays(SIZE, info["field_of_view_rads"])
        )
        shading = _read(tree, building, "reshading", point, view)
        valid = _read(tree, building, "depth_zbuffer", point, view) != domains.DEPTH_INVALID
        assert np.abs(shading.astype(int) - expected)[valid].max() <= 1
        assert np.all(shading[valid] != domains.RESHADING_INVALID)


def test_invalid_pixels_agree(tree: Path) -> None:
    holes = 0
    for building, point, view in _views(tree):

        def read(domain: str, key=(building, point, view)) -> np.ndarray:
            return _read(tree, key[0], domain, key[1], key[2])

        invalid = read("depth_zbuffer") == domains.DEPTH_INVALID
        holes += invalid.sum()
        assert np.array_equal(invalid, read("depth_euclidean") == domains.DEPTH_INVALID)
        assert np.array_equal(invalid, np.all(read("normal") == 128, axis=-1))
        assert np.array_equal(invalid, np.all(read("principal_curvature") == 0, axis=-1))
        assert np.array_equal(invalid, read("reshading") == domains.RESHADING_INVALID)
        assert np.array_equal(invalid, read("segment_semantic") == 0)
        assert np.all(read("edge_occlusion")[invalid] == 0) and np.all(
            read("keypoints3d")[invalid] == 0
        )
    assert holes > 0  # windows are seen somewhere


def test_labels_follow_the_surfaces() -> None:
    """Curvature and semantics are the hit surface's analytic values; culling changes nothing."""
    seen_curved = 0
    for b in range(3):
        view = generate.render_view(2, b, 0, 1, 48)
        scene, sid = view.scene, view.surface
        valid = sid >= 0
        k1 = np.rint((np.clip(scene.k1 * domains.CURVATURE_RADIUS, -1, 1) + 1) / 2 * 254)
        assert np.array_equal(view.arrays["principal_curvature"][..., 0][valid], k1[sid[valid]])
        assert np.all(view.arrays["principal_curvature"][..., 2] == 0)
        assert np.array_equal(view.arrays["segment_semantic"][valid], scene.semantic[sid[valid]])
        assert np.all(
            view.arrays["segment_semantic"][(sid >= 0) & (sid < 6)] == 1
        )  # room = background
        seen_curved += np.sum(view.arrays["principal_curvature"][..., 0][valid] > 127)
    assert seen_curved > 0
    assert set(np.unique(generate.building_scene(2, 0).semantic)) <= set(range(1, 18))


def test_culling_is_exact() -> None:
    for b in range(3):
        scene = generate.building_scene(5, b)
        location, _ = generate.fixation_point(5, b, 0)
        camera = generate.sample_camera(scene, generate._rng(5, b, 2, 0, 0), location)
        rotation = opencv_rotation(look_at_euler(camera, location))
        rays = (raycast.camera_rays(40, 1.0) @ rotation.T).astype(np.float32)
        culled = raycast.cast(scene, camera, rays, cull=(rotation, 20 / math.tan(0.5)))
        brute = raycast.cast(scene, camera, rays)
        assert np.array_equal(culled.sid, brute.sid)
        assert np.allclose(culled.t, brute.t, rtol=1e-5)


@pytest.mark.parametrize("array", [
    np.arange(35 * 17, dtype=np.uint8).reshape(35, 17),
    np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8),
    np.random.default_rng(1).integers(0, 65536, (25, 14), dtype=np.uint16),
])  # fmt: skip
def test_png_encoder_roundtrip(array: np.ndarray) -> None:
    decoded = decode_png(encode_png(array))
    assert decoded.dtype == array.dtype and np.array_equal(decoded, array)


def test_ranges_are_taskonomy_like(tree: Path) -> None:
    maxima = {d: 0 for d in ("edge_texture", "edge_occlusion", "keypoints2d", "keypoints3d")}
    for building, point, view in _views(tree):
        for domain in maxima:
            maxima[domain] = max(
                maxima[domain], int(_read(tree, building, domain, point, view).max())
            )
        depth = _read(tree, building, "depth_zbuffer", point, view)
        assert depth.min() > 0.1 * domains.DEPTH_UNITS_PER_METRE  # no camera inside a surface
    assert all(m > 0 for m in maxima.values()) and maxima["keypoints3d"] <= 58000
