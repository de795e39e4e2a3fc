"""The multi-task method end to end: every weighting through the jitted step, the synthetic
comparison through the main command, resume after kill -9, and the NYUv2 and Cityscapes
configs on their stand-in trees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtc_jax.data.mtl import standins
from xtc_jax.losses import task_weighting
from xtc_jax.mtl import model as model_lib
from xtc_jax.mtl.config import mtl_config
from xtc_jax.mtl.step import make_optimizer, make_train_step, weighting_options

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = ["--config.model.encoder_width=0.125", "--config.model.mid_features=8",
              "--config.batch_size=4"]  # fmt: skip
TINY_SYNTHETIC = ["--config.data.synthetic.buildings=3", "--config.data.synthetic.views=8",
                  "--config.data.synthetic.size=32", "--config.data.size=(32, 32)"]  # fmt: skip


def _tiny_config(weighting: str):
    config = mtl_config("synthetic", "cpu")
    config.model.encoder_width = 0.125
    config.model.mid_features = 8
    config.data.size = (32, 32)
    config.weighting = weighting
    return config


def _batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 3.0, (2, 32, 32, 1)).astype(np.float32)
    return {"rgb": rng.random((2, 32, 32, 3), np.float32),
            "seg": rng.integers(-1, 9, (2, 32, 32)).astype(np.int32),
            "depth": depth, "depth_mask": np.ones_like(depth)}  # fmt: skip


def _step_and_state(config):
    """The jitted training step of `config` and a fresh state for it (2 steps per epoch)."""
    model = model_lib.build(config)
    variables = model_lib.init_variables(model, jax.random.key(0), tuple(config.data.size))
    optimizer = make_optimizer(config, epoch_steps=2)
    options = weighting_options(config, epoch_steps=2)
    tasks = len(config.model.tasks)
    state = {"step": jnp.int32(0), "rng": jax.random.key(1), **variables,
             "opt_state": optimizer.init(variables["params"]),
             "weighting": task_weighting.get(config.weighting).init(tasks, options)}  # fmt: skip
    return jax.jit(make_train_step(config, model, optimizer, options)), state, model


@pytest.mark.parametrize("weighting", sorted(task_weighting.STRATEGIES))
def test_every_weighting_trains_the_network_in_one_jitted_step(weighting):
    step, state, _ = _step_and_state(_tiny_config(weighting))
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    new_state, metrics = step(state, {}, _batch())
    assert int(new_state["step"]) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert {"loss_seg", "loss_depth", "loss_tdepth", "loss_tseg", "weight_seg"} <= set(metrics)
    for part in ("encoder", "seg_decoder", "depth_decoder", "s2d", "d2s"):
        before, after = variables["params"][part], new_state["params"][part]
        pairs = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
        assert any(not np.allclose(a, b) for a, b in pairs)
    assert not np.allclose(variables["batch_stats"]["encoder"]["bn1"]["mean"],
                           new_state["batch_stats"]["encoder"]["bn1"]["mean"])  # fmt: skip


def _run_main(workdir: Path, config: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "xtc_jax.main", f"--config={config}", f"--workdir={workdir}",
         *TINY_MODEL, *flags],
        cwd=REPO, env=dict(os.environ, XTC_DATA_DIR=str(workdir.parent / "data")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen, timeout: int = 600) -> str:
    output = process.stdout.read()
    assert process.wait(timeout=timeout) == 0, output
    return output


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


SYNTHETIC = ("configs/mtl_synthetic.py:cpu", *TINY_SYNTHETIC)


def test_synthetic_comparison_prints_the_models_side_by_side(tmp_path):
    output = _finish(_run_main(tmp_path / "run", *SYNTHETIC, "--config.train.steps=6",
                               "--config.train.eval_every=3", "--config.train.checkpoint_every=3",
                               '--config.compare=("stl_depth", "xtask")'))  # fmt: skip
    table = output[output.index("test split (best checkpoint"):]
    assert "stl_depth" in table and "xtask" in table and "miou" in table and "energy" in table
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results) == {"stl_depth", "xtask"}
    depth_only = results["stl_depth"]["test"]
    assert "miou" not in depth_only and "depth_abs" in depth_only
    assert results["xtask"]["best_step"] in (3, 6)
    assert 0 <= results["xtask"]["test"]["miou"] <= 100
    model_json = json.loads((tmp_path / "run" / "xtask" / "export" / "model.json").read_text())
    assert model_json["arch"] == "xtask" and len(model_json["classes"]) == 9

    # xtask_mt's energy of the trained model: energy against error, and a corruption detected
    from xtc_jax.mtl import energy

    config = _tiny_config("uncertainty")
    config.compare = ("stl_depth", "xtask")
    config.data.synthetic.update(buildings=3, views=8, size=32)
    config.data.cache_dir = str(tmp_path / "data")
    summary = energy.run(config, str(tmp_path / "run"), corruptions="noise:5", log=lambda _: None)
    assert summary["images"] == 8 and summary["sets"] == ["clean", "noise:5"]
    assert 0 <= summary["auc"]["noise:5"] <= 1
    assert -1 <= summary["error_seg_pct_clean"]["pearson_r"] <= 1
    for name in ("data.csv", "energy_vs_seg.png", "energy_vs_depth.png", "roc.png"):
        assert (tmp_path / "run" / "xtask" / "energy" / name).is_file()
    lines = (tmp_path / "run" / "xtask" / "energy" / "data.csv").read_text().splitlines()
    assert lines[0].split(",")[:2] == ["set", "image"] and len(lines) == 1 + 2 * 8
    assert set(lines[0].split(",")[2:]) == {"energy", "error_seg_pct", "error_depth_abs"}

    # --mode=eval reproduces the test metrics of the best checkpoints; --mode=prepare reports
    from xtc_jax.mtl import commands

    evaluated = commands.evaluate(config, str(tmp_path / "run"), "test", log=lambda _: None)
    for name in ("stl_depth", "xtask"):
        for key, value in results[name]["test"].items():
            assert evaluated[name][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert (tmp_path / "run" / "eval" / "xtask_test.json").is_file()
    lines = []
    assert commands.prepare(config, str(tmp_path / "run"), 1, log=lines.append) == {
        "train": 8, "val": 8, "test": 8}
    assert any(line.startswith("labels in the first batches") for line in lines)

    # the demo of the multi-task model: segmentation with a legend, depth, energy per image
    from PIL import Image

    from xtc_jax.apps import demo_mtl

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((40, 70, 3), 120, np.uint8)).save(images / "wide.png")
    (images / "broken.png").write_bytes(b"not an image")
    result = demo_mtl.run(str(images), str(tmp_path / "demo"), str(tmp_path / "run"),
                          log=lambda _: None)  # fmt: skip
    assert sorted(os.path.basename(p) for p in result["written"]) == [
        "wide_depth.png", "wide_energy.png", "wide_seg.png"]
    assert [os.path.basename(p) for p, _ in result["skipped"]] == ["broken.png"]
    assert Image.open(tmp_path / "demo" / "wide_seg.png").size[0] > 100


def test_a_multi_task_run_resumes_after_kill_9_to_the_same_losses(tmp_path):
    flags = (*SYNTHETIC, "--config.train.steps=12", "--config.train.eval_every=4",
             "--config.train.checkpoint_every=4", '--config.compare=("xtask",)')  # fmt: skip
    _finish(_run_main(tmp_path / "reference", *flags))
    victim = _run_main(tmp_path / "killed", *flags)
    deadline = time.time() + 600
    while not (tmp_path / "killed" / "xtask" / "checkpoints" / "8").is_dir():
        assert victim.poll() is None and time.time() < deadline, "no checkpoint before exit"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    output = _finish(_run_main(tmp_path / "killed", *flags))
    assert "resumed from step 8" in output or "resumed from step 12" in output
    expected = _losses(tmp_path / "reference" / "xtask")
    got = _losses(tmp_path / "killed" / "xtask")
    late = [s for s in expected if s > 8]
    np.testing.assert_allclose([got[s] for s in late], [expected[s] for s in late], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("layout,config", [("nyuv2", "configs/mtl_nyu.py:cpu"),
                                           ("cityscapes", "configs/mtl_cityscapes.py:cpu")])
def test_the_real_dataset_configs_run_on_their_stand_ins(tmp_path, layout, config):
    root = tmp_path / layout
    standins.write(layout, str(root), views=8, size=32)
    output = _finish(_run_main(tmp_path / "run", config, f"--config.data.path={root}",
                               "--config.data.size=(32, 64)", "--config.train.steps=4",
                               "--config.train.eval_every=2", "--config.train.checkpoint_every=2"))
    assert "multi-task data: train 7, val 1, test 8" in output
    assert "xtask" in output[output.index("test split (best checkpoint"):]


_SHARDED_STEP = """
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import tests.test_mtl_train as t
from xtc_jax.infra import sharding

assert len(jax.devices()) == 2
step, state, _ = t._step_and_state(t._tiny_config("uncertainty"))
batch = t._batch()
one, metrics_one = step(state, {}, batch)
mesh = sharding.make_mesh()
sharded = {k: jax.device_put(v, NamedSharding(mesh, P("data"))) for k, v in batch.items()}
two, metrics_two = step(state, {}, sharded)
assert len(sharded["rgb"].sharding.device_set) == 2
for a, b in zip(jax.tree.leaves(one["batch_stats"]), jax.tree.leaves(two["batch_stats"])):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # reduction order only
# per-device statistics (each device's half of the batch) would differ far more:
half, _ = step(state, {}, {k: v[:1] for k, v in batch.items()})
gaps = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(one["batch_stats"]),
                                            jax.tree.leaves(half["batch_stats"]))]
assert max(gaps) > 1e-2, max(gaps)
np.testing.assert_allclose(metrics_one["loss"], metrics_two["loss"], rtol=1e-5)
print("SHARDED OK")
"""


def test_batch_statistics_are_those_of_the_global_batch_on_two_devices():
    result = subprocess.run([sys.executable, "-c", _SHARDED_STEP], cwd=REPO, text=True,
                            capture_output=True, timeout=600,
                            env=dict(os.environ, JAX_NUM_CPU_DEVICES="2"))  # fmt: skip
    assert result.returncode == 0 and "SHARDED OK" in result.stdout, result.stderr[-3000:]


def test_the_three_task_nyu_setting_trains_and_reports_normal_angles(tmp_path):
    from xtc_jax.data.mtl import sources
    from xtc_jax.mtl.evaluate import MultiTaskEvaluator

    standins.write("nyuv2", str(tmp_path / "nyu"), views=8, size=32)
    config = mtl_config("nyuv2", "cpu")
    config.data.path, config.data.normals, config.data.size = str(tmp_path / "nyu"), True, (32, 32)
    config.model.tasks = ("seg", "depth", "normal")
    config.model.encoder_width, config.model.mid_features = 0.125, 8
    model_lib.check(config)
    splits = sources.open_splits(config.data, str(tmp_path), normals=True)
    config.weighting = "uncertainty"
    step, state, model = _step_and_state(config)
    from xtc_jax.data.mtl.example import MultiTaskTransform

    transform = MultiTaskTransform(32, 32)
    batch = {k: np.stack([transform(splits["train"][i], None)[k] for i in range(2)])
             for k in ("rgb", "seg", "depth", "depth_mask", "normal", "normal_mask")}  # fmt: skip
    new_state, metrics = step(state, {}, batch)
    assert {"loss_normal", "weight_normal"} <= set(metrics) and np.isfinite(metrics["loss_normal"])
    result = MultiTaskEvaluator(config, model, splits["test"], 13).metrics(
        {"params": new_state["params"], "batch_stats": new_state["batch_stats"]})
    assert 0 <= result["normal_mean_deg"] <= 180 and 0 <= result["normal_pct_under_30.0"] <= 100
    assert {"miou", "depth_abs", "energy"} <= set(result)
