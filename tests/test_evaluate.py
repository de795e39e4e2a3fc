"""Held-out metrics equal hand-computed values."""

from __future__ import annotations

import numpy as np

from xtc_jax import evaluate


def _encode(n):
    """Unit normals -> the [0, 1] encoding the networks output."""
    n = np.asarray(n, np.float32)
    return (n / np.linalg.norm(n, axis=-1, keepdims=True) + 1.0) / 2.0


def test_angular_error_in_degrees_over_valid_pixels():
    target = np.broadcast_to(_encode([0.0, 0.0, -1.0]), (1, 2, 2, 3)).copy()
    pred = target.copy()
    pred[0, 0, 0] = _encode([1.0, 0.0, 0.0])  # 90 degrees off
    pred[0, 0, 1] = _encode([0.0, 1.0, -1.0])  # 45 degrees off
    valid = np.ones((1, 2, 2, 1), bool)
    np.testing.assert_allclose(evaluate.angular_error_degrees(pred, target, valid), [135 / 4], 1e-4)
    valid[0, 0, 0] = False  # the 90-degree pixel no longer counts
    np.testing.assert_allclose(evaluate.angular_error_degrees(pred, target, valid), [45 / 3], 1e-4)


def test_target_metrics_and_average_over_batches():
    target = np.broadcast_to(_encode([0.0, 0.0, -1.0]), (2, 8, 8, 3)).copy()
    pred = target + 0.1
    metrics = evaluate.target_metrics(pred, target, "normal")
    np.testing.assert_allclose(metrics["l1"], [0.1, 0.1], rtol=1e-5)
    assert metrics["angular_error_deg"].shape == (2,)
    merged = evaluate.average([{"l1": np.array([1.0, 2.0])}, {"l1": np.array([6.0])}])
    assert merged == {"l1": 3.0}
    depth = evaluate.target_metrics(pred[..., :1], target[..., :1], "depth")
    assert set(depth) == {"l1"}
