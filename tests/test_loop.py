"""The training loop runs any Method: a toy linear regression, checkpoints, resume, NaN guard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xtc_jax.infra import atomic
from xtc_jax.training import loop
from xtc_jax.training.nonfinite import NonFiniteError

EXAMPLES, BATCH, FEATURES = 64, 8, 3


class LinearRegression:
    """y = x @ w by SGD: a method with no consistency concept in it."""

    def __init__(self, nan_example: int | None = None):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
        self.y = (self.x @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)
        if nan_example is not None:
            self.x[nan_example, 0] = np.nan
        self.variants: list[int] = []

    def describe(self) -> str:
        return "toy linear regression"

    def train_data(self):
        x, y = self.x, self.y
        ds = grain.MapDataset.range(EXAMPLES).map(lambda i: {"x": x[i], "y": y[i]})
        return ds.batch(BATCH).repeat(None).to_iter_dataset()

    def init_state(self, rng):
        return {"w": np.zeros(FEATURES, np.float32), "step": np.int32(0)}

    def constants(self):
        return {"lr": np.float32(0.1)}

    def step_variant(self, step, state):
        self.variants.append(step)
        return "sgd", state

    def make_step(self, key):
        def step(state, constants, batch):
            def loss_fn(w):
                return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

            loss, grad = jax.value_and_grad(loss_fn)(state["w"])
            new = {"w": state["w"] - constants["lr"] * grad, "step": state["step"] + 1}
            return new, {"loss/mse": loss}

        return step

    def evaluate(self, state, constants, step, writer):
        mse = float(np.mean((self.x[:16] @ np.asarray(state["w"]) - self.y[:16]) ** 2))
        writer.write_scalars(step, {"mse": mse}, split="val")
        return {"mse": mse}

    def checkpoint_meta(self):
        return {"variants_seen": len(self.variants)}

    def restore_meta(self, meta):
        self.restored = meta

    def export(self, state, directory):
        os.makedirs(directory, exist_ok=True)
        atomic.write_json(os.path.join(directory, "w.json"), np.asarray(state["w"]).tolist())


def _train_config(steps: int, checkpoint_every: int = 2, on_nonfinite: str = "raise"):
    return ml_collections.ConfigDict(dict(
        steps=steps, eval_every=steps, checkpoint_every=checkpoint_every, keep_checkpoints=10,
        best_metric="", log_every_seconds=100.0, on_nonfinite=on_nonfinite,
    ))  # fmt: skip


def _rows(workdir) -> list[dict]:
    text = (Path(workdir) / "logs" / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _losses(workdir) -> dict[int, float]:
    return {r["step"]: r["loss/mse"] for r in _rows(workdir) if r["split"] == "train"}


def _exported_w(workdir) -> list[float]:
    return json.loads((Path(workdir) / "export" / "w.json").read_text())


def _run(method, workdir, steps, **kwargs):
    lines: list[str] = []
    result = loop.train_and_evaluate(method, _train_config(steps, **kwargs), 0, str(workdir),
                                     log=lines.append)  # fmt: skip
    return result, lines


def test_a_toy_method_trains_checkpoints_and_exports(tmp_path):
    method = LinearRegression()
    result, lines = _run(method, tmp_path, steps=12)
    losses = _losses(tmp_path)
    assert sorted(losses) == list(range(1, 13))
    assert losses[12] < 0.2 * losses[1]  # SGD on a noiseless linear model converges
    assert result["mse"] < 0.2 * losses[1] and result["variants_seen"] == 12
    assert sorted(map(int, os.listdir(tmp_path / "checkpoints"))) == list(range(2, 13, 2))
    assert len(_exported_w(tmp_path)) == FEATURES
    assert lines[0] == "training toy linear regression for 12 steps from step 0, 1 device(s)"


def test_a_toy_method_resumes_to_the_same_losses(tmp_path):
    _run(LinearRegression(), tmp_path / "reference", steps=12)
    _run(LinearRegression(), tmp_path / "resumed", steps=6)
    resumed = LinearRegression()
    _, lines = _run(resumed, tmp_path / "resumed", steps=12)
    assert f"resumed from step 6 in {tmp_path / 'resumed'}" in lines
    assert resumed.restored == {"variants_seen": 6} and resumed.variants == list(range(6, 12))
    expected, got = _losses(tmp_path / "reference"), _losses(tmp_path / "resumed")
    np.testing.assert_allclose([got[s] for s in range(7, 13)],
                               [expected[s] for s in range(7, 13)], rtol=1e-6)  # fmt: skip


def test_a_nan_stops_the_run_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # Example 20 sits in the third batch: step 3 sees a NaN loss and would write NaN weights.
    with pytest.raises(NonFiniteError) as caught:
        _run(LinearRegression(nan_example=20), tmp_path, steps=8)
    message = str(caught.value)
    assert message.startswith("step 3: non-finite loss/mse.")
    assert f"the last good checkpoint is step 2 in {tmp_path / 'checkpoints'}" in message
    assert "train.on_nonfinite=skip" in message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
    saved = np.load(tmp_path / "nonfinite" / "step_3.npz")
    assert saved["x"].shape == (BATCH, FEATURES) and np.isnan(saved["x"][4, 0])
    # A rerun resumes from the last good checkpoint (and meets the same batch again).
    with pytest.raises(NonFiniteError, match=r"^step 3: "):
        _run(LinearRegression(nan_example=20), tmp_path, steps=8)


def test_skip_mode_drops_non_finite_updates_and_counts_them(tmp_path):
    result, lines = _run(LinearRegression(nan_example=20), tmp_path, steps=12,
                         on_nonfinite="skip")  # fmt: skip
    # Example 20 is in the 3rd batch of every 8: steps 3 and 11.
    assert [line for line in lines if "skipped" in line] == [
        "step 3: non-finite update skipped (loss/mse); 1 so far",
        "step 11: non-finite update skipped (loss/mse); 2 so far",
    ]
    assert np.isfinite(result["mse"]) and result["mse"] < 0.5
    assert [r["skipped_updates"] for r in _rows(tmp_path) if r["split"] == "train"][-1] == 2
    assert np.all(np.isfinite(_exported_w(tmp_path)))


def test_bad_loop_settings_fail_before_any_work(tmp_path):
    with pytest.raises(Exception, match=r"train.on_nonfinite='ignore': use one of raise, skip"):
        _run(LinearRegression(), tmp_path, steps=4, on_nonfinite="ignore")
    assert not (tmp_path / "checkpoints").exists()
