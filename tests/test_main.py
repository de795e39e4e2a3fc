"""The main command's prepare mode, end to end on a tiny synthetic Taskonomy, and its errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import normal
from xtc_jax.data import prepare
from xtc_jax.errors import ConfigError, DataError
from xtc_jax.infra.png import decode_png

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--config.data.synthetic.buildings=3",
    "--config.data.synthetic.views=8",
    "--config.data.synthetic.size=32",
    "--config.data.resolution=32",
    "--config.batch_size=4",
    "--batches=1",
    "--mode=prepare",
]


def _main(workdir: Path, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XTC_DATA_DIR=str(workdir / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "xtc_jax.main", "--config=configs/normal.py:cpu", *flags,
         f"--workdir={workdir}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_prepare_renders_builds_streams_and_previews(tmp_path):
    first = _main(tmp_path, *TINY)
    assert first.returncode == 0, first.stderr
    assert "rendering the synthetic Taskonomy (3 buildings x 8 views at 32px)" in first.stdout
    assert "examples per split: train 8, val 8" in first.stdout
    assert "normal               (4, 32, 32, 3)" in first.stdout
    assert "edge_texture         (4, 32, 32, 1)" in first.stdout
    grid = decode_png((tmp_path / "data_preview.png").read_bytes())
    domains = len(normal.get_config("cpu").data.domains)
    assert grid.shape == (4 * 32, domains * 32, 3) and grid.std() > 0

    again = _main(tmp_path, *TINY)  # the second run reuses the tree and the shards
    assert again.returncode == 0, again.stderr
    assert "rendering" not in again.stdout and "building array_record" not in again.stdout
    assert "examples per split: train 8, val 8" in again.stdout


def test_missing_data_path_is_one_clear_error(tmp_path):
    result = _main(tmp_path, *TINY, f"--config.data.path={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    assert "error: data.path=" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown config preset 'gpu'.*paper, cpu"):
        normal.get_config("gpu")


def test_raw_format_reads_the_tree_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("XTC_DATA_DIR", str(tmp_path / "cache"))
    config = normal.get_config("cpu")
    config.data.format = "raw"
    config.data.synthetic.update(buildings=2, views=3, size=16)
    location = prepare.data_location(config.data, str(tmp_path))
    assert location.endswith("synthetic_b2_v3_s16_seed0")
    assert not any(name.startswith("shards_") for name in os.listdir(tmp_path / "cache"))
    source = prepare.open_split(config.data, location, "train")
    record = source[0]
    assert len(source) == 3 and decode_png(record["rgb"]).shape == (16, 16, 3)
    assert np.isin(["normal", "depth_zbuffer"], list(record)).all()

    config.data.format = "tarball"
    with pytest.raises(ConfigError, match=r'data.format=\'tarball\': use "shards" or "raw"'):
        prepare.data_location(config.data, str(tmp_path))
    config.data.update(format="shards", path=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="does not exist"):
        prepare.data_location(config.data, str(tmp_path))
