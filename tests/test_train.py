"""Training: frozen networks stay frozen, k-subsets save compute, devices agree, runs resume."""

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

from configs import example_normal
from xtc_jax.consistency import selection
from xtc_jax.consistency.plan import make_plan
from xtc_jax.consistency.step import make_term_means, make_train_step
from xtc_jax.losses import weighting
from xtc_jax.training import optim

REPO = Path(__file__).resolve().parents[1]
RES = 16
TINY = [
    "--config.data.synthetic.buildings=3",
    "--config.data.synthetic.views=8",
    "--config.data.synthetic.size=32",
    f"--config.data.resolution={RES}",
    "--config.batch_size=4",
    "--config.train.eval_batches=1",
]


def _small_config():
    config = example_normal.get_config("cpu")
    config.data.resolution = RES
    for spec in config.networks.values():
        if spec.arch != "sobel":
            spec.downsample = 2
    return config


def _random_params(graph, edges, seed):
    """Parameters of the right shapes without compiling Flax's init (slow on CPU)."""
    shapes = jax.eval_shape(lambda: graph.init(jax.random.PRNGKey(0), RES, edges))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.1).astype(s.dtype), shapes)


def _setup(config, chosen):
    plan = make_plan(config)
    params = _random_params(plan.graph, ["rgb->normal"], seed=0)
    frozen = _random_params(plan.graph, list(config.freeze), seed=1)
    optimizer = optim.make_optimizer(config.optimizer)
    state = {
        "step": jnp.int32(0),
        "params": params,
        "opt_state": optimizer.init(params),
        "rng": jax.random.PRNGKey(0),
        "winrate": selection.winrate_init(plan.perceptual),
    }
    state = jax.tree.map(lambda x: jnp.array(np.array(x)), state)
    step = make_train_step(plan, chosen, optimizer)
    rng = np.random.default_rng(0)
    batch = {
        "rgb": rng.random((4, RES, RES, 3), dtype=np.float32),
        "normal": rng.random((4, RES, RES, 3), dtype=np.float32),
        "principal_curvature": rng.random((4, RES, RES, 3), dtype=np.float32),
        "edge_texture": rng.random((4, RES, RES, 1), dtype=np.float32),
    }
    return step, state, frozen, batch


def test_frozen_networks_get_no_gradient_no_state_and_stay_bit_identical():
    config = _small_config()
    step, state, frozen, batch = _setup(config, ("principal_curvature",))
    before = jax.tree.map(np.array, frozen)
    start = jax.tree.map(np.array, state["params"])
    jitted = jax.jit(step, donate_argnums=0)
    for _ in range(2):
        state, metrics = jitted(state, frozen, batch)
    assert set(state["params"]) == {"rgb->normal"}  # only the trainable edge has params...
    opt_leaves = jax.tree.leaves(state["opt_state"])
    assert sum(x.size for x in opt_leaves) == 3 * sum(x.size for x in jax.tree.leaves(start)) + 1
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, frozen))
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), start,
                           state["params"])  # fmt: skip
    assert all(jax.tree.leaves(changed))  # ... and every one of its tensors moved
    assert int(state["winrate"]["count"]["principal_curvature"]) == 8  # 2 steps x batch 4
    assert int(state["winrate"]["count"]["edge_texture"]) == 0  # not chosen: not computed
    assert {"loss/mae", "loss/percep_principal_curvature", "loss/total"} <= set(metrics)


def test_total_loss_is_the_fixed_weighted_sum_of_the_optimised_terms():
    config = _small_config()
    config.losses.percep_principal_curvature.weight = 0.25
    chosen = ("principal_curvature",)
    step, state, frozen, batch = _setup(config, chosen)
    _, metrics = jax.jit(step)(state, frozen, batch)
    mae, percep = float(metrics["loss/mae"]), float(metrics["loss/percep_principal_curvature"])
    assert float(metrics["loss/total"]) == pytest.approx(mae + 0.25 * percep, rel=1e-6)
    # The perceptual term is masked L1 of F_K(n(x)) against F_K(y), by hand:
    plan = make_plan(config)
    params = {**frozen, **state["params"]}
    values = plan.graph.evaluate(params, batch, {"a": plan.paths["principal_curvature_of_n_x"],
                                                 "b": plan.paths["principal_curvature_of_y"]})
    expected = masked_l1_per_example(values["a"], values["b"], "principal_curvature").mean()
    assert percep == pytest.approx(float(expected), rel=1e-5)
    assert "loss/direct_principal_curvature" in metrics  # evaluated, not optimised


def masked_l1_per_example(pred, target, domain):
    from xtc_jax.losses import masked

    return masked.masked_l1(pred, target, domain, per_example=True)


def test_grad_ratio_branch_weights_terms_by_their_own_gradients():
    config = _small_config()
    config.selection.weights = "grad_ratio"
    chosen = ("edge_texture", "principal_curvature")
    step, state, frozen, batch = _setup(config, chosen)
    params = state["params"]
    _, metrics = jax.jit(step)(state, frozen, batch)
    # By hand: each term's own gradient on the target network gives g_i, then the weights.
    plan = make_plan(config)
    term_means = make_term_means(plan, chosen)
    names = ["mae", "percep_edge_texture", "percep_principal_curvature"]
    g = {}
    for i, name in enumerate(names):
        grads = jax.grad(lambda p, i=i: term_means(p, frozen, batch)[0][i])(params)
        g[name] = weighting.mean_abs_grad(grads["rgb->normal"])
    weights = weighting.grad_ratio_weights(g)
    expected = sum(float(weights[n]) * float(metrics[f"loss/{n}"]) for n in names)
    assert float(metrics["loss/total"]) == pytest.approx(expected, rel=1e-4)
    fixed_total = sum(float(metrics[f"loss/{n}"]) for n in names)
    assert abs(float(metrics["loss/total"]) - fixed_total) > 1e-3 * fixed_total


def test_a_smaller_k_compiles_less_compute():
    config = _small_config()
    convs = {}
    for chosen in ((), ("principal_curvature",), ("edge_texture", "principal_curvature")):
        step, state, frozen, batch = _setup(config, chosen)
        jaxpr = str(jax.make_jaxpr(step)(state, frozen, batch))
        convs[chosen] = jaxpr.count("conv_general_dilated")
    counts = list(convs.values())
    assert counts[0] < counts[1] < counts[2], convs


def _run_main(workdir: Path, *flags: str, env_extra=None) -> subprocess.Popen:
    env = dict(os.environ, XTC_DATA_DIR=str(workdir.parent / "data"), **(env_extra or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "xtc_jax.main", "--config=configs/transfer.py:rgb->normal,cpu",
         f"--workdir={workdir}", *TINY, *flags],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen, timeout: int = 300) -> str:
    """The output of a main-command run, asserting it exited 0."""
    output = process.stdout.read()
    assert process.wait(timeout=timeout) == 0, output
    return output


def _wait_until(process: subprocess.Popen, ready, what: str) -> None:
    """Polls `ready()` while `process` runs (at most 300 s)."""
    deadline = time.time() + 300
    while not ready():
        assert process.poll() is None and time.time() < deadline, what
        time.sleep(0.05)


def _train_losses(workdir: Path) -> dict[int, float]:
    losses = {}
    for line in (workdir / "logs" / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "train":
            losses[row["step"]] = row["loss/mae"]
    return losses


def test_two_fake_devices_match_one(tmp_path):
    flags = ("--config.train.steps=6", "--config.train.eval_every=6",
             "--config.train.checkpoint_every=6")  # fmt: skip
    one = _run_main(tmp_path / "one", *flags)
    assert one.wait(timeout=300) == 0, one.stdout.read()
    two = _run_main(tmp_path / "two", *flags, env_extra={"JAX_NUM_CPU_DEVICES": "2"})
    output = two.stdout.read()
    assert two.wait(timeout=300) == 0, output
    assert "2 device(s)" in output
    a, b = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 7))  # every step, the last one too
    # Same data, same first step; later steps drift by reduction order (AMSGrad amplifies it).
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    np.testing.assert_allclose([a[s] for s in a], [b[s] for s in a], rtol=2e-2)


def test_resume_after_kill_9_continues_steps_and_data_order(tmp_path):
    flags = ("--config.train.steps=24", "--config.train.eval_every=100",
             "--config.train.checkpoint_every=8")  # fmt: skip
    _finish(_run_main(tmp_path / "reference", *flags))

    victim = _run_main(tmp_path / "killed", *flags)
    _wait_until(victim, (tmp_path / "killed" / "checkpoints" / "16").is_dir,
                "no checkpoint before exit")  # fmt: skip
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    output = _finish(_run_main(tmp_path / "killed", *flags))
    assert "resumed from step 16" in output or "resumed from step 24" in output
    expected, got = _train_losses(tmp_path / "reference"), _train_losses(tmp_path / "killed")
    late = [s for s in expected if s > 16]
    np.testing.assert_allclose([got[s] for s in late], [expected[s] for s in late], rtol=1e-5)
    assert (tmp_path / "killed" / "export" / "model.json").is_file()


def test_sigterm_saves_a_checkpoint_exits_0_and_resumes_to_the_same_losses(tmp_path):
    flags = ("--config.train.steps=150", "--config.train.eval_every=150",
             "--config.train.checkpoint_every=150")  # fmt: skip
    _finish(_run_main(tmp_path / "reference", *flags))

    victim = _run_main(tmp_path / "stopped", *flags)
    metrics = tmp_path / "stopped" / "logs" / "metrics.jsonl"
    _wait_until(victim, lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3,
                "no training before exit")  # fmt: skip
    victim.send_signal(signal.SIGTERM)
    output = _finish(victim, timeout=120)
    saved = [line for line in output.splitlines() if line.startswith("SIGTERM: saved")]
    assert len(saved) == 1, output
    stopped_at = int(saved[0].split("checkpoint of step ")[1].split()[0])
    assert 3 <= stopped_at < 150
    assert (tmp_path / "stopped" / "checkpoints" / str(stopped_at)).is_dir()
    assert not (tmp_path / "stopped" / "export").exists()  # it stopped; it did not finish

    output = _finish(_run_main(tmp_path / "stopped", *flags))
    assert f"resumed from step {stopped_at}" in output
    expected, got = _train_losses(tmp_path / "reference"), _train_losses(tmp_path / "stopped")
    assert sorted(got) == list(range(1, 151))
    late = range(stopped_at + 1, 151)
    np.testing.assert_allclose([got[s] for s in late], [expected[s] for s in late], rtol=1e-5)


@pytest.mark.slow
def test_consistency_experiment_end_to_end(tmp_path):
    """Frozen networks trained first, then baseline and consistency, then the comparison."""
    env = dict(os.environ, XTC_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        [sys.executable, "-m", "xtc_jax.main",
         "--config=configs/example_cascade_two_networks.py:cpu",
         f"--workdir={tmp_path / 'run'}", *TINY, "--config.transfer_steps=10",
         "--config.train.baseline_steps=10", "--config.train.steps=10",
         "--config.train.eval_every=10", "--config.train.checkpoint_every=10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "training frozen network normal->principal_curvature" in result.stdout
    assert "held-out error (val buildings)" in result.stdout
    for stage in ("baseline", "consistency", "warmstart"):
        assert (tmp_path / "run" / stage).is_dir()


def test_bf16_compute_and_remat_train_with_fp32_params():
    config = _small_config()
    config.compute.dtype = "bfloat16"
    config.compute.remat = "blocks"
    step, state, frozen, batch = _setup(config, ("principal_curvature",))
    state, metrics = jax.jit(step)(state, frozen, batch)
    assert np.isfinite(float(metrics["loss/total"]))
    assert {x.dtype for x in jax.tree.leaves(state["params"])} == {jnp.dtype("float32")}
    jaxpr = str(jax.make_jaxpr(step)(state, frozen, batch))
    assert "bf16" in jaxpr and "remat" in jaxpr  # bf16 convolutions, rematerialised edges
