"""Command-line mistakes end at once: one `error:` line, a non-zero exit, no stage started."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from xtc_jax.data import prepare
from xtc_jax.errors import ConfigError
from xtc_jax.infra import workdir as workdir_lib

REPO = Path(__file__).resolve().parents[1]
CPU = "--config=configs/normal.py:cpu"

CASES = {  # name: (arguments, what the one message must say)
    "unknown preset": (["--config=configs/normal.py:gpu"], r"unknown config preset 'gpu'"),
    "missing config file": (["--config=configs/nope.py"],
                            r"--config=configs/nope\.py: no such config file"),
    "misspelt field": ([CPU, "--config.trian.steps=5"],
                       r"no config field 'trian'\. Did you mean \"train\""),
    "workdir cannot be made": ([CPU], r"--workdir=/proc/xtc-cannot: cannot create or write it"),
    "k larger than n": ([CPU, "--config.selection.k=9"],
                        r"selection\.k=9, but the config has 7 perceptual losses"),
    "missing data path": ([CPU, "--config.data.path=/nonexistent/taskonomy"],
                          r"data\.path='/nonexistent/taskonomy' does not exist"),
    "wrong type": ([CPU, "--config.train.steps=abc"], r"--config\.train\.steps=abc"),
    "resolution": ([CPU, "--config.data.resolution=50"], r"data\.resolution=50 is not divisible"),
    "unknown mode": ([CPU, "--mode=fit"], r"--mode=fit: value should be one of"),
    "misspelt transfer domain": (["--config=configs/transfer.py:normal->curvatur,cpu"],
                                 r"unknown domain 'curvatur'"),
    "missing ImageNet weights": ([CPU, "--config.imagenet_weights=/nonexistent/resnet50"],
                                 r"imagenet_weights='/nonexistent/resnet50' is not an export"),
    "missing init_from": ([CPU, "--config.train.init_from=/nonexistent/export"],
                          r"train\.init_from=./nonexistent/export. is not an exported model"),
    "unknown preset of the transfer config": (["--config=configs/transfer.py:normal->reshading,"
                                               "tpu"], r"unknown config preset 'tpu'"),
}  # fmt: skip


def _run(module: str, args: list[str], workdir: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args, f"--workdir={workdir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_mistake_on_the_main_command_is_one_line_before_any_stage(tmp_path, case):
    args, message = CASES[case]
    workdir = "/proc/xtc-cannot" if case == "workdir cannot be made" else tmp_path / "work"
    result = _run("xtc_jax.main", args, workdir)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert re.search(message, errors[0]), errors[0]
    if case != "workdir cannot be made":  # nothing rendered, trained or compiled
        assert not (tmp_path / "work" / "data").exists()
        assert not any(p.name in ("baseline", "networks") for p in (tmp_path / "work").glob("*"))


def test_a_workdir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = _run("xtc_jax.main", [CPU], tmp_path / "file")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--workdir=" in result.stderr and "cannot create or write it" in result.stderr


def test_the_energy_command_reports_config_mistakes_the_same_way(tmp_path):
    for args, message in (CASES["missing config file"], CASES["misspelt field"]):
        result = _run("xtc_jax.energy", args, tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert re.search(message, result.stderr), result.stderr


def test_missing_and_stray_arguments_are_one_line_each(tmp_path):
    for module, args, message in (
        ("xtc_jax.main", [CPU], r"--config and --workdir are required"),
        ("xtc_jax.main", [CPU, f"--workdir={tmp_path}", "stray"], r"unexpected arguments: stray"),
        ("xtc_jax.demo", ["--task=normal"], r"--img_path and --output_path are required"),
        ("xtc_jax.demo", ["--task=nromal"], r"--task=nromal: value should be one of"),
    ):  # fmt: skip
        result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("error: ") == 1, result.stderr
        assert re.search(message, result.stderr), result.stderr


def test_a_full_disk_is_named_with_the_figures_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"GB free, but the data needs about 1000000000\.00 GB"):
        workdir_lib.check_workdir(str(tmp_path / "w"), 10**18, str(tmp_path / "w" / "data"),
                                  "the data")  # fmt: skip
    from configs import normal

    folder, need = prepare.planned_bytes(normal.get_config().data, str(tmp_path))
    assert folder == str(tmp_path / "data") and 2e9 < need < 4e9  # the paper preset's 4,800 views
    assert prepare.planned_bytes(normal.get_config("cpu").data, str(tmp_path))[1] < 1e8
