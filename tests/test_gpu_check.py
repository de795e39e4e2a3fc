"""launch/gpu_check.sh: the prepared GPU run, rehearsed at toy size on the CPU (--dry-run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "launch", "gpu_check.sh")
STEPS = ["train_step_k3", "train_step_k7", "memory", "mtl_step", "render", "main_train"]


def test_the_script_parses_and_names_every_step():
    subprocess.run(["bash", "-n", SCRIPT], check=True)
    with open(SCRIPT) as f:
        text = f.read()
    for step in STEPS:
        assert f"run_step {step} " in text, step


def test_the_benchmarks_take_the_scripts_new_flags():
    from xtc_jax.bench import step_cases

    assert step_cases.chosen_for(3) == step_cases.CHOSEN
    assert len(step_cases.chosen_for(7)) == 7 and set(step_cases.chosen_for(7)) == set(
        step_cases.PERCEPTUAL)
    with pytest.raises(ValueError, match="k=8"):
        step_cases.chosen_for(8)


@pytest.mark.slow
def test_the_dry_run_runs_every_step(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", SCRIPT, "--dry-run", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    log = (out / "gpu_check.log").read_text()
    steps = json.loads((out / "steps.json").read_text())
    assert [s["step"] for s in steps] == STEPS
    assert all(s["rc"] == 0 for s in steps), (steps, log[-4000:])
    assert done.returncode == 0
    for name in ("train_step_k3", "train_step_k7", "memory", "mtl_step"):
        assert json.loads((out / f"{name}.json").read_text()), name
    k7 = json.loads((out / "train_step_k7.json").read_text())
    assert len(k7["cases"][0]["chosen"]) == 7
    memory = json.loads((out / "memory.json").read_text())
    assert set(memory["modes"]) == {"none", "blocks"} and memory["largest"]["blocks"] >= 1
    assert "measured_peak_bytes" in memory
    assert "consistency" in log and "gpu_check: done" in log
