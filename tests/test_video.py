"""The video tool on generated clips: the output's frames, rate and size read back, the CSV's
rows, and clear errors for a corrupt or empty file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xtc_jax.apps import video
from xtc_jax.apps.predictor import Predictor
from xtc_jax.errors import DataError

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
# ffmpeg starts by fork + exec, which JAX warns about although nothing runs between the two.
pytestmark = pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = 16  # tests/viewer_fixtures.py


def write_clip(path: str, frames: int = 12, fps: float = 10.0, size=(40, 30)) -> str:
    """A moving bar over two colour fields, H.264."""
    width, height = size
    writer = imageio_ffmpeg.write_frames(path, size, fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=2)  # fmt: skip
    writer.send(None)
    for t in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : width // 2] = (200, 120, 40)
        frame[height // 2 :, width // 2 :] = (30, 90, 220)
        frame[: height // 3, 2 * t % width : 2 * t % width + 6] = 255
        writer.send(frame)
    writer.close()
    return path


def read_back(path: str) -> tuple[dict, int]:
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    return meta, sum(1 for _ in reader)


@pytest.fixture(scope="module")
def predictor(viewer_workdir):
    return Predictor.load("normal", workdir=viewer_workdir, log=lambda _: None)


def test_side_by_side_video_csv_and_summary(predictor, tmp_path):
    clip = video.read_clip(write_clip(str(tmp_path / "in.mp4")), predictor.resolution)
    assert clip.count == 12 and clip.fps == 10.0
    output = str(tmp_path / "out" / "side.mp4")
    summary = video.run(predictor, clip, output, size=32, batch=5, log=lambda _: None)
    meta, frames = read_back(output)
    assert frames == 12 and meta["fps"] == 10.0 and meta["codec"] == "h264"
    assert tuple(meta["size"]) == (4 * 32, 32 + video.LABEL_HEIGHT)
    assert "yuv420p" in meta["pix_fmt"]  # what browsers play
    with open(tmp_path / "out" / "side.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert {"energy_baseline", "energy_consistency", "flicker_baseline", "flicker_consistency",
            "change_input"} <= set(rows[0])  # fmt: skip
    assert rows[0]["flicker_baseline"] == "nan" and float(rows[1]["change_input"]) > 0
    flicker = np.mean([float(r["flicker_consistency"]) for r in rows[1:]])
    assert summary["means"]["flicker_consistency"] == pytest.approx(flicker, rel=1e-4)
    assert summary["frames"] == 12
    with open(tmp_path / "out" / "side.json") as f:
        assert json.load(f)["flicker_ratio_consistency_to_baseline"] == pytest.approx(
            summary["flicker_ratio_consistency_to_baseline"])
    assert os.path.getsize(tmp_path / "out" / "side.png") > 1000
    assert [n for n in os.listdir(tmp_path / "out") if n.startswith(".partial")] == []


def test_stride_and_max_frames(predictor, tmp_path):
    path = write_clip(str(tmp_path / "in.mp4"), frames=12, fps=12.0)
    clip = video.read_clip(path, predictor.resolution, max_frames=4, stride=2)
    assert clip.fps == 6.0
    video.run(predictor, clip, str(tmp_path / "o.mp4"), size=16, batch=8, log=lambda _: None)
    meta, frames = read_back(str(tmp_path / "o.mp4"))
    assert frames == 4 and meta["fps"] == 6.0


def test_a_corrupt_or_empty_file_is_named_in_one_error(predictor, tmp_path):
    (tmp_path / "junk.mp4").write_bytes(os.urandom(4096))
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("junk.mp4", "empty.mp4"):
        with pytest.raises(DataError, match=rf"{name}: not a video ffmpeg can read"):
            clip = video.read_clip(str(tmp_path / name), predictor.resolution)
            video.run(predictor, clip, str(tmp_path / "o.mp4"), log=lambda _: None)
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(DataError, match="does not exist"):
        video.read_clip(str(tmp_path / "missing.mp4"), predictor.resolution)


def test_the_command_line(viewer_workdir, tmp_path):
    (tmp_path / "junk.mp4").write_bytes(os.urandom(2048))
    base = [sys.executable, "-m", "xtc_jax.apps.video", "--task=normal",
            f"--workdir={viewer_workdir}"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=REPO)
    bad = subprocess.run([*base, f"--input={tmp_path / 'junk.mp4'}",
                          f"--output={tmp_path / 'o.mp4'}"], capture_output=True, text=True,
                         env=env, cwd=REPO)  # fmt: skip
    assert bad.returncode == 2 and "junk.mp4: not a video ffmpeg can read" in bad.stderr
    assert "Traceback" not in bad.stderr
    wrong = subprocess.run([*base, "--input=x", f"--output={tmp_path / 'o.avi'}"],
                           capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert wrong.returncode != 0 and "name an .mp4 file" in wrong.stderr
    clip = write_clip(str(tmp_path / "in.mp4"), frames=6)
    good = subprocess.run([*base, f"--input={clip}", f"--output={tmp_path / 'o.mp4'}",
                           "--size=16"], capture_output=True, text=True, env=env,
                          cwd=REPO)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "wrote" in good.stdout and read_back(str(tmp_path / "o.mp4"))[1] == 6


def test_the_flythrough_adds_each_frames_error_against_its_ground_truth(predictor, tmp_path):
    clip = video.flythrough_clip("flythrough", predictor.resolution, "normal", max_frames=6)
    assert clip.count == 6 and clip.fps == 12.0 and clip.truth.shape == (6, RES, RES, 3)
    summary = video.run(predictor, clip, str(tmp_path / "fly.mp4"), size=16,
                        log=lambda _: None)  # fmt: skip
    with open(tmp_path / "fly.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    errors = [float(r["angular_error_deg_consistency"]) for r in rows]
    assert all(0 < e < 180 for e in errors)
    assert summary["means"]["angular_error_deg_baseline"] == pytest.approx(
        np.mean([float(r["angular_error_deg_baseline"]) for r in rows]), rel=1e-4)
    # A saved fly-through reads back the same frames (flythrough:FOLDER).
    from xtc_jax.data.synthetic import flythrough

    fly = flythrough.render_flythrough(building=3, frames=4, size=RES)
    flythrough.write(fly, str(tmp_path / "saved"))
    again = video.flythrough_clip(f"flythrough:{tmp_path / 'saved'}", RES, "normal")
    np.testing.assert_allclose(np.stack(list(again.frames)) * 255, fly.rgb, atol=1e-3)
    with pytest.raises(DataError, match="rendered at 16 px, but the models take 32 px"):
        video.flythrough_clip(f"flythrough:{tmp_path / 'saved'}", 32, "normal")
