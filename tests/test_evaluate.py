"""Held-out metrics equal hand-computed values."""

from __future__ import annotations

import numpy as np

from xtc_jax.training import metrics as metrics_lib

angular_error_degrees = metrics_lib.angular_error_degrees


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
    np.testing.assert_allclose(angular_error_degrees(pred, target, valid), [135 / 4], 1e-4)
    valid[0, 0, 0] = False  # the 90-degree pixel no longer counts
    np.testing.assert_allclose(angular_error_degrees(pred, target, valid), [45 / 3], 1e-4)


def test_target_metrics_and_average_over_batches():
    target = np.broadcast_to(_encode([0.0, 0.0, -1.0]), (2, 8, 8, 3)).copy()
    pred = target + 0.1
    metrics = metrics_lib.target_metrics(pred, target, "normal")
    np.testing.assert_allclose(metrics["l1"], [0.1, 0.1], rtol=1e-5)
    assert metrics["angular_error_deg"].shape == (2,)
    merged = metrics_lib.average([{"l1": np.array([1.0, 2.0])}, {"l1": np.array([6.0])}])
    assert merged == {"l1": 3.0}
    depth = metrics_lib.target_metrics(pred[..., :1], target[..., :1], "depth")
    assert set(depth) == {"l1"}


def _split_metrics(batches, domain):
    total = None
    for pred, target in batches:
        total = metrics_lib.add_sums(total, metrics_lib.split_sums(pred, target, domain))
    return metrics_lib.finish_split_metrics(total)


def test_normal_split_metrics_pool_pixels_over_batches():
    rng = np.random.default_rng(0)
    batches, angles = [], []
    for _ in range(2):  # two batches, 3 x 4 x 4 pixels each, angles 0..60 degrees about z
        theta = np.radians(rng.uniform(0, 60, size=(3, 4, 4)))
        pred_vec = np.stack([np.sin(theta), np.zeros_like(theta), -np.cos(theta)], -1)
        target = np.broadcast_to(_encode([0.0, 0.0, -1.0]), (3, 4, 4, 3)).copy()
        batches.append((_encode(pred_vec), target))
        angles.append(np.degrees(theta).ravel())
    angles = np.concatenate(angles)
    metrics = _split_metrics(batches, "normal")
    assert abs(metrics["angle_mean_deg"] - angles.mean()) < 0.01
    assert abs(metrics["angle_median_deg"] - np.median(angles)) < 0.02  # 0.01-degree bins
    assert abs(metrics["angle_rmse_deg"] - np.sqrt(np.mean(angles**2))) < 0.01
    for threshold in (11.25, 22.5, 30.0):
        expected = 100 * np.mean(angles < threshold)
        assert abs(metrics[f"pct_under_{threshold}"] - expected) < 1e-3


def test_depth_split_metrics_equal_hand_computed_values_in_metres():
    target = np.full((1, 2, 2, 1), 0.2, np.float32)  # 3.125 m everywhere
    pred = np.array([0.2, 0.3, 0.1, 0.22], np.float32).reshape(1, 2, 2, 1)
    metrics = _split_metrics([(pred, target)], "depth")
    p, t = pred.ravel() * 15.625, target.ravel() * 15.625
    np.testing.assert_allclose(metrics["abs_rel"], np.mean(np.abs(p - t) / t), rtol=1e-5)
    np.testing.assert_allclose(metrics["rmse_m"], np.sqrt(np.mean((p - t) ** 2)), rtol=1e-5)
    ratio = np.maximum(p / t, t / p)  # 1, 1.5, 2, 1.1 -> 2 of 4 under 1.25
    assert metrics["delta_1.25_pct"] == 100 * np.mean(ratio < 1.25) == 50.0
    np.testing.assert_allclose(metrics["l1"], np.mean(np.abs(pred - target)), rtol=1e-5)


def test_depth_split_metrics_skip_invalid_pixels():
    target = np.full((1, 8, 8, 1), 0.2, np.float32)
    target[0, :, :4] = 1.0  # Taskonomy's "no depth" value: masked (and dilated) away
    pred = np.full_like(target, 0.2)
    pred[0, :, :4] = 0.9  # wrong only where the target is invalid
    metrics = _split_metrics([(pred, target)], "depth")
    assert metrics["abs_rel"] == 0.0 and metrics["delta_1.25_pct"] == 100.0
