"""The synthetic fly-through: a smooth, clear camera path and per-frame ground truth that is
consistent with itself, across frames and with the input pipeline's decoding."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from test_synthetic import _backprojected_normals

from xtc_jax import domains
from xtc_jax.data import transforms
from xtc_jax.data.synthetic import flythrough as fl
from xtc_jax.data.synthetic import generate, raycast
from xtc_jax.data.synthetic.annotate import decode_normals, reshading_from_normals
from xtc_jax.data.synthetic.scene import Box
from xtc_jax.errors import DataError
from xtc_jax.infra.png import encode_png

SEED, BUILDING, FRAMES, SIZE = 2, 1, 8, 48


@pytest.fixture(scope="module")
def fly() -> fl.FlyThrough:
    return fl.render_flythrough(seed=SEED, building=BUILDING, frames=FRAMES, size=SIZE)


def _raw(fly: fl.FlyThrough, domain: str, i: int) -> np.ndarray:
    """Frame i's raw on-disk array of `domain`, re-encoded from the decoded truth."""
    raw = domains.get(domain).encode(fly.truth[domain][i])
    return raw[..., 0] if domain == "reshading" else raw


def test_shapes_and_dtypes(fly: fl.FlyThrough) -> None:
    assert fly.rgb.shape == (FRAMES, SIZE, SIZE, 3) and fly.rgb.dtype == np.uint8
    assert fly.domains == fl.TRUTH_DOMAINS and fly.frames == FRAMES
    assert {"normal", "depth_zbuffer", "reshading", "mask_valid"} <= set(fly.domains)
    for name, value in fly.truth.items():
        assert value.shape == (FRAMES, SIZE, SIZE, domains.get(name).channels), name
        assert value.dtype == np.float32 and np.all(np.isfinite(value)), name
    assert fly.cameras.shape == fly.targets.shape == (FRAMES, 3)
    assert fly.rotations.shape == (FRAMES, 3, 3) and fly.fps == fl.FPS
    assert math.isclose(fly.fov, math.radians(60)) and fly.name == "synth_001"
    for name in ("normal", "reshading", "depth_zbuffer", "mask_valid"):
        assert fly.truth[name].min() >= 0.0 and fly.truth[name].max() <= 1.0


def test_deterministic(fly: fl.FlyThrough) -> None:
    again = fl.render_flythrough(seed=SEED, building=BUILDING, frames=FRAMES, size=SIZE)
    assert np.array_equal(again.rgb, fly.rgb)
    assert np.array_equal(again.cameras, fly.cameras)
    assert all(np.array_equal(again.truth[d], fly.truth[d]) for d in fly.domains)
    other = fl.render_flythrough(seed=SEED + 1, building=BUILDING, frames=2, size=16)
    assert not np.allclose(other.cameras, fly.cameras[:2])


def test_truth_is_what_the_pipeline_decodes_from_files(fly: fl.FlyThrough) -> None:
    i = 3
    arrays = fl.render_frame(SEED, BUILDING, fly.cameras[i], fly.targets[i], SIZE).arrays
    record = {name: encode_png(arrays[name]) for name in domains.STORED_DOMAINS}
    decoded = transforms.transform_example(record, list(fl.TRUTH_DOMAINS), SIZE)
    for name in fl.TRUTH_DOMAINS:
        assert np.array_equal(decoded[name], fly.truth[name][i]), name


def test_path_is_smooth_closed_and_clear() -> None:
    for style, building in (("base", 0), ("base", 1), ("base", 3), ("shifted", 2)):
        scene = generate.building_scene(SEED, building, style)
        seed = fl.path_seed(SEED, building, style)
        lap = fl.FRAMES_PER_LAP
        cameras, targets = fl.camera_path(scene, lap + 1, seed)
        assert np.allclose(cameras[-1], cameras[0]) and np.allclose(targets[-1], targets[0])
        size = float(np.max(scene.room[:2]))
        steps = np.linalg.norm(np.diff(cameras, axis=0), axis=1)
        assert steps.max() < 0.04 * size and steps.min() > 0.0, (building, steps.max())
        turns = np.linalg.norm(cameras[2:] - 2 * cameras[1:-1] + cameras[:-2], axis=1)
        assert turns.max() < 0.2 * steps.max()  # no kinks
        assert np.linalg.norm(np.diff(targets, axis=0), axis=1).max() < 0.04 * size
        look = (targets - cameras) / np.linalg.norm(targets - cameras, axis=1, keepdims=True)
        turn = np.degrees(np.arccos(np.clip(np.sum(look[1:] * look[:-1], axis=1), -1, 1)))
        assert turn.max() < 6.0, turn.max()  # the view direction turns slowly
        # Densely sampled (10 per frame), the whole lap is in the room and outside objects.
        dense, _ = fl.camera_path(scene, lap * 10, seed, frames_per_lap=lap * 10)
        assert not scene.inside_objects(dense, fl.CLEARANCE - 1e-6).any()
        assert np.all((dense > 0.25) & (dense < scene.room - 0.25))
        assert np.all((dense[:, 2] > 1.0) & (dense[:, 2] < 1.85))  # eye height
        assert np.array_equal(fl.camera_path(scene, 5, seed)[0], cameras[:5])


def test_a_room_without_a_clear_path_is_a_clear_error() -> None:
    scene = generate.building_scene(SEED, BUILDING)
    lx, ly, _ = scene.room.tolist()
    block = Box((lx / 2, ly / 2, 1.0), (lx / 2 - 0.1, ly / 2 - 0.1, 1.0), 0.0, 6)
    blocked = dataclasses.replace(scene, prims=[block])
    with pytest.raises(RuntimeError, match="no camera path clears the furniture"):
        fl.camera_path(blocked, 4, 0)


def test_normals_agree_with_depth(fly: fl.FlyThrough) -> None:
    errors = []
    for i in range(FRAMES):
        n_depth, interior = _backprojected_normals(_raw(fly, "depth_zbuffer", i), fly.fov)
        n_stored = decode_normals(_raw(fly, "normal", i))[1:-1, 1:-1]
        n_stored = n_stored / np.linalg.norm(n_stored, axis=-1, keepdims=True)
        cos = np.clip(np.sum(n_depth * n_stored, axis=-1), -1, 1)
        errors.append(np.degrees(np.arccos(cos[interior])))
    errors = np.concatenate(errors)
    assert len(errors) > FRAMES * SIZE * SIZE * 0.3
    assert np.median(errors) < 5.0 and np.mean(errors < 15.0) > 0.9


def test_reshading_is_the_formula_of_the_normals(fly: fl.FlyThrough) -> None:
    rays = raycast.camera_rays(SIZE, fly.fov)
    for i in range(FRAMES):
        expected = reshading_from_normals(decode_normals(_raw(fly, "normal", i)), rays)
        shading = _raw(fly, "reshading", i)
        valid = fly.truth["mask_valid"][i, ..., 0] == 1.0
        assert np.abs(shading.astype(int) - expected)[valid].max() <= 1
        assert np.all(shading[valid] != domains.RESHADING_INVALID)
    reshading = fly.truth["reshading"]
    assert np.array_equal(reshading[..., 0], reshading[..., 2])  # gray, repeated


def test_invalid_pixels_agree(fly: fl.FlyThrough) -> None:
    truth = fly.truth
    invalid = truth["mask_valid"][..., 0] == 0.0
    assert invalid.any() and not invalid.all()  # windows are seen somewhere
    assert np.array_equal(invalid, truth["depth_zbuffer"][..., 0] == 1.0)
    assert np.array_equal(invalid, np.all(_raw_all(fly, "normal") == 128, axis=-1))
    assert np.array_equal(invalid, np.all(truth["principal_curvature"] == 0.0, axis=-1))
    assert np.array_equal(invalid, _raw_all(fly, "reshading") == domains.RESHADING_INVALID)
    assert np.array_equal(invalid, truth["segment_semantic"][..., 0] == -1.0)
    assert np.all(truth["keypoints3d"][..., 0][invalid] == 0.0)
    depth_m = truth["depth_zbuffer"][..., 0] * domains.DEPTH_XTC_SCALE
    assert depth_m[~invalid].min() / domains.DEPTH_UNITS_PER_METRE > 0.2  # nothing too close
    mask = fly.valid_mask("depth_zbuffer")[..., 0]  # XTC's loss mask: holes, dilated
    assert mask.shape == invalid.shape and not np.any(mask & invalid) and mask.mean() > 0.5


def _raw_all(fly: fl.FlyThrough, domain: str) -> np.ndarray:
    return np.stack([_raw(fly, domain, i) for i in range(fly.frames)])


def _world(fly: fl.FlyThrough, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame i's world points and normals (S, S, 3), and its valid mask."""
    z = fly.truth["depth_zbuffer"][i, ..., 0] * (
        domains.DEPTH_XTC_SCALE / domains.DEPTH_UNITS_PER_METRE
    )
    rotation = fly.rotations[i]
    points = fly.cameras[i] + (raycast.camera_rays(fly.size, fly.fov) * z[..., None]) @ rotation.T
    normals = decode_normals(_raw(fly, "normal", i)) * [1, 1, domains.NORMAL_Z_SIGN]
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True) + 1e-12
    return points, normals @ rotation.T, fly.truth["mask_valid"][i, ..., 0] == 1.0


def test_frames_agree_with_each_other(fly: fl.FlyThrough) -> None:
    """Frame i's surface points, seen from frame i+1's camera, have its depth and normals."""
    depth_ok, normal_ok = [], []
    for i in range(FRAMES - 1):
        points, normals, valid = _world(fly, i)
        next_points, next_normals, next_valid = _world(fly, i + 1)
        local = (points[valid] - fly.cameras[i + 1]) @ fly.rotations[i + 1]
        u = np.rint(local[:, 0] / local[:, 2] * fly.focal_px + (SIZE - 1) / 2).astype(int)
        v = np.rint(local[:, 1] / local[:, 2] * fly.focal_px + (SIZE - 1) / 2).astype(int)
        seen = (local[:, 2] > 0) & (u >= 0) & (u < SIZE) & (v >= 0) & (v < SIZE)
        u, v, local = u[seen], v[seen], local[seen]
        seen_valid = next_valid[v, u]
        next_z = ((next_points[v, u] - fly.cameras[i + 1]) @ fly.rotations[i + 1])[:, 2]
        depth_ok.append((np.abs(next_z - local[:, 2]) < 0.03 * local[:, 2]) & seen_valid)
        cos = np.sum(next_normals[v, u] * normals[valid][seen], axis=1)
        normal_ok.append((cos > math.cos(math.radians(10))) & seen_valid)
    assert np.mean(np.concatenate(depth_ok)) > 0.8
    assert np.mean(np.concatenate(normal_ok)) > 0.8


def test_consecutive_frames_are_similar_and_lighting_is_fixed(fly: fl.FlyThrough) -> None:
    rgb = fly.rgb.astype(np.float32)
    consecutive = np.abs(np.diff(rgb, axis=0)).mean(axis=(1, 2, 3))
    stills = [generate.render_view(SEED, BUILDING, p, v, SIZE).arrays["rgb"].astype(np.float32)
              for p, v in ((0, 0), (1, 0), (2, 1), (3, 2))]  # fmt: skip
    random = np.mean([np.abs(a - b).mean() for k, a in enumerate(stills) for b in stills[:k]])
    assert consecutive.max() < 0.5 * random, (consecutive.max(), random)
    for i in (5, 2):  # any frame alone, in any order, is the sequence's frame: same lights
        alone = fl.render_frame(SEED, BUILDING, fly.cameras[i], fly.targets[i], SIZE)
        assert np.array_equal(alone.arrays["rgb"], fly.rgb[i])
    other_lights = generate.render_camera(
        generate.building_scene(SEED, BUILDING), fly.cameras[2], fly.targets[2], fly.fov, SIZE,
        generate._rng(SEED + 1, BUILDING, 3, 1),
    )  # fmt: skip
    assert not np.array_equal(other_lights.arrays["rgb"], fly.rgb[2])


def test_write_load_round_trip(fly: fl.FlyThrough, tmp_path: Path) -> None:
    paths = fl.write(fly, tmp_path / "fly")
    assert set(paths) == {"truth", "meta"} and all(Path(p).is_file() for p in paths.values())
    assert sorted(p.name for p in (tmp_path / "fly").iterdir()) == [fl.META_FILE, fl.TRUTH_FILE]
    meta = json.loads(Path(paths["meta"]).read_text())
    assert meta["frames"] == FRAMES and meta["domains"] == list(fl.TRUTH_DOMAINS)
    assert {"seed", "building", "size", "fps", "fov", "cameras", "targets"} <= set(meta)
    back = fl.load(tmp_path / "fly")
    assert np.array_equal(back.rgb, fly.rgb) and back.domains == fly.domains
    assert all(np.array_equal(back.truth[d], fly.truth[d]) for d in fly.domains)
    assert np.array_equal(back.cameras, fly.cameras) and np.array_equal(back.targets, fly.targets)
    for field in ("seed", "building", "style", "name", "room", "size", "fov", "fps",
                  "frames_per_lap"):  # fmt: skip
        assert getattr(back, field) == getattr(fly, field), field


def test_bad_files_are_data_errors_naming_the_file(fly: fl.FlyThrough, tmp_path: Path) -> None:
    small = dataclasses.replace(
        fly, rgb=fly.rgb[:2], cameras=fly.cameras[:2], targets=fly.targets[:2],
        truth={d: v[:2] for d, v in fly.truth.items()},
    )  # fmt: skip
    folder = tmp_path / "fly"
    fl.write(small, folder)
    truth, meta = folder / fl.TRUTH_FILE, folder / fl.META_FILE
    good = truth.read_bytes()
    cases = {
        "missing": lambda: truth.unlink(),
        "corrupt": lambda: truth.write_bytes(b"PK\x03\x04 not really a zip"),
        "truncated": lambda: truth.write_bytes(good[: len(good) // 2]),
        "array missing": lambda: np.savez(truth, rgb=small.rgb),
        "wrong shape": lambda: np.savez(truth, rgb=small.rgb[:1], **small.truth),
    }
    for case, damage in cases.items():
        damage()
        with pytest.raises(DataError, match=re.escape(str(truth))) as info:
            fl.load(folder)
        assert "render it again" in str(info.value), case
        truth.write_bytes(good)
    assert fl.load(folder).frames == 2
    text = meta.read_text()
    assert '"frames": 2,' in text
    for damaged in ("{not json", json.dumps({"frames": 2}), text.replace('"frames": 2,',
                                                                          '"frames": 3,')):
        meta.write_text(damaged)
        with pytest.raises(DataError, match=re.escape(str(meta))):
            fl.load(folder)
    meta.unlink()
    with pytest.raises(DataError, match=re.escape(str(meta))):
        fl.load(folder)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = fl.main(["--out", str(tmp_path / "cli"), "--frames", "9", "--size", "16",
                     "--seed", str(SEED), "--building", "2"])  # fmt: skip
    captured = capsys.readouterr()
    assert "frame 8/9" in captured.err and "frame 9/9" in captured.err
    assert "frames/s" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["frames"] == 9
    back = fl.load(tmp_path / "cli")
    assert back.rgb.shape == (9, 16, 16, 3) and back.building == 2
    assert Path(paths["truth"]).is_file()
    with pytest.raises(SystemExit) as exit_info:
        fl.main(["--help"])
    assert exit_info.value.code == 0 and "truth.npz" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        fl.main(["--out", str(tmp_path / "bad"), "--frames", "0"])
    assert exit_info.value.code == 2 and "frames >= 1" in capsys.readouterr().err
