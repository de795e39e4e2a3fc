"""The multi-task losses, weighting strategies and dense metrics on hand-computed cases."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xtc_jax.errors import ConfigError
from xtc_jax.losses import task_weighting as tw
from xtc_jax.losses import xtask
from xtc_jax.training import dense_metrics


def test_segmentation_cross_entropy_averages_over_labelled_pixels():
    logits = jnp.array([[[[0.0, math.log(3.0)], [5.0, 5.0]]]])  # (1, 1, 2, 2)
    labels = jnp.array([[[1, -1]]])
    # pixel 0: p(1) = 3/4; pixel 1 is unlabelled and does not count.
    assert float(xtask.segmentation_ce(logits, labels)) == pytest.approx(-math.log(0.75), rel=1e-6)


def test_label_smoothing_cross_entropy_by_hand():
    logits = jnp.array([[[[0.0, math.log(2.0), 0.0]]]])  # softmax = (1/4, 1/2, 1/4)
    labels = jnp.array([[[1]]])
    eps = 0.1  # target (0.05, 0.9, 0.05)
    expected = -(0.05 * math.log(0.25) + 0.9 * math.log(0.5) + 0.05 * math.log(0.25))
    got = xtask.label_smoothing_ce(logits, labels, jnp.array([[[True]]]), eps)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    none = xtask.label_smoothing_ce(logits, labels, jnp.array([[[False]]]), eps)
    assert float(none) == 0.0


def test_depth_losses_are_image_averaged_and_masked():
    pred = jnp.array([[[[1.0], [3.0]]], [[[0.0], [0.5]]]])  # (2, 1, 2, 1)
    target = jnp.array([[[[0.0], [1.0]]], [[[2.0], [0.0]]]])
    mask = jnp.array([[[[1.0], [1.0]]], [[[1.0], [0.0]]]])
    # image 0: errors 1, 2 (mean 1.5); image 1: error 2 (its second pixel is masked).
    assert float(xtask.depth_loss("l1", pred, target, mask)) == pytest.approx((1.5 + 2) / 2)
    assert float(xtask.depth_loss("mse", pred, target, mask)) == pytest.approx((2.5 + 4) / 2)
    logl1 = ((math.log(2) + math.log(3)) / 2 + math.log(3)) / 2
    assert float(xtask.depth_loss("logl1", pred, target, mask)) == pytest.approx(logl1, rel=1e-6)
    assert float(xtask.depth_loss("smoothl1", pred, target, mask)) == pytest.approx(
        ((0.5 + 1.5) / 2 + 1.5) / 2)
    with pytest.raises(ConfigError, match="use one of l1, mse, logl1, smoothl1"):
        xtask.depth_loss("l2", pred, target, mask)


def test_ssim_loss_by_hand_on_constant_maps():
    a, b = 0.2, 0.6
    x = jnp.full((1, 4, 4, 1), a)
    y = jnp.full((1, 4, 4, 1), b)
    # constant windows: sigmas are 0, SSIM = (2ab + C1) / (a² + b² + C1)
    ssim = (2 * a * b + xtask.SSIM_C1) / (a * a + b * b + xtask.SSIM_C1)
    per_window = (1 - ssim) / 2
    mask = jnp.ones((1, 4, 4, 1))
    # float32 variances of a constant map carry ~1e-8 of cancellation next to C2 = 9e-4
    assert float(xtask.masked_ssim(x, y, mask)) == pytest.approx(per_window * 4 / 16, rel=1e-3)
    assert float(xtask.masked_ssim(x, x, mask)) == pytest.approx(0.0, abs=1e-7)


def test_soft_kl_is_zero_for_equal_logits_and_positive_otherwise():
    logits = jnp.array([[[[1.0, 2.0, 0.0]]]])
    valid = jnp.array([[[True]]])
    assert float(xtask.soft_kl(logits, logits, valid)) == pytest.approx(0.0, abs=1e-7)
    p, q = jax.nn.softmax(jnp.array([0.0, 0.0, 0.0])), jax.nn.softmax(logits[0, 0, 0])
    expected = float(jnp.sum(q * (jnp.log(q) - jnp.log(p))))
    got = xtask.soft_kl(jnp.zeros_like(logits), logits, valid)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def _config(**loss):
    return ml_collections.ConfigDict(dict(
        model=dict(tasks=("seg", "depth")),
        loss=dict(dict(depth="l1", transferred_depth="l1", transferred_seg="cross",
                       label_smoothing=0.0, seg_label_smoothing=0.0, lambda_1=0.25,
                       lambda_2=0.5, normal_weight=1.0), **loss)))  # fmt: skip


def test_direct_segmentation_loss_takes_optional_label_smoothing():
    from xtc_jax.mtl.step import direct_losses

    logits = jnp.array([[[[0.0, math.log(2.0), 0.0]]]])
    batch = {"seg": jnp.array([[[1]]])}
    plain = direct_losses(_config(), {"seg": logits}, batch)["seg"]
    smoothed = direct_losses(_config(seg_label_smoothing=0.1), {"seg": logits}, batch)["seg"]
    assert float(plain) == pytest.approx(math.log(2.0), rel=1e-6)
    expected = -(0.05 * math.log(0.25) + 0.9 * math.log(0.5) + 0.05 * math.log(0.25))
    assert float(smoothed) == pytest.approx(expected, rel=1e-6)


def test_transferred_losses_have_stop_gradient_targets():
    from xtc_jax.mtl.step import group_losses

    rng = np.random.default_rng(0)
    seg = jnp.asarray(rng.normal(size=(1, 4, 4, 3)), jnp.float32)
    depth = jnp.asarray(rng.normal(size=(1, 4, 4, 1)), jnp.float32)
    batch = {"seg": jnp.zeros((1, 4, 4), jnp.int32), "depth": jnp.ones((1, 4, 4, 1)),
             "depth_mask": jnp.ones((1, 4, 4, 1))}  # fmt: skip

    def named(s, d, which):
        out = {"seg": s, "depth": d, "tdepth": jnp.mean(s, -1, keepdims=True) * 2,
               "tseg": jnp.concatenate([d, -d, d * 0.5], -1)}  # fmt: skip
        return group_losses(_config(), out, batch)[1][which]

    for which in ("tdepth", "tseg"):
        g_seg, g_depth = jax.grad(named, argnums=(0, 1))(seg, depth, which)
        # each transferred loss trains the branch it reads, never the branch of its target
        source, target = (g_seg, g_depth) if which == "tdepth" else (g_depth, g_seg)
        assert float(jnp.abs(source).sum()) > 0 and float(jnp.abs(target).sum()) == 0

    losses, parts = group_losses(_config(), {"seg": seg, "depth": depth,
                                             "tdepth": depth, "tseg": seg}, batch)  # fmt: skip
    np.testing.assert_allclose(losses, [0.75 * parts["seg"] + 0.25 * parts["tdepth"],
                                        0.5 * parts["depth"] + 0.5 * parts["tseg"]], rtol=1e-6)


# --- Weighting strategies, on a two-task toy problem with shared and task-specific params.

PARAMS = {"encoder": {"a": jnp.array([1.0, 2.0])}, "head": {"b": jnp.array([3.0])}}


def _toy_losses(p):
    a, b = p["encoder"]["a"], p["head"]["b"]
    return jnp.stack([jnp.sum(a * b), jnp.sum(-a * a)]), {}


def _combine(name, state=None, step=0, **options):
    options = {"layer": "encoder/a", "epoch_steps": 2, "learning_rate": 1e-3, **options}
    strategy = tw.get(name)
    state = strategy.init(2, options) if state is None else state
    ctx = tw.Context(_toy_losses, PARAMS, state, jnp.int32(step), jax.random.key(0), options)
    return strategy.combine(ctx)


def test_fixed_weighting_sums_the_weighted_gradients():
    out = _combine("fixed", weights=(2.0, 1.0))
    # grad a: 2 * b + 1 * (-2a) = (6 - 2, 6 - 4); grad b: 2 * sum(a)
    np.testing.assert_allclose(out.grads["encoder"]["a"], [4.0, 2.0])
    np.testing.assert_allclose(out.grads["head"]["b"], [6.0])
    with pytest.raises(ConfigError, match="one per task"):
        _combine("fixed", weights=(1.0,))


def test_uncertainty_weighting_by_hand():
    losses = jnp.array([2.0, 4.0])
    s = jnp.array([0.0, math.log(2.0)])
    assert float(tw.uncertainty_total(losses, s, "xtask")) == pytest.approx(
        0.5 * 2 + 0.5 * 0.5 * 4 + math.log(2.0), rel=1e-6)
    assert float(tw.uncertainty_total(losses, s, "kendall")) == pytest.approx(
        2 / 2 + 4 / 4 + math.log(2.0) / 2, rel=1e-6)
    out = _combine("uncertainty")
    # s0 = 0: each task's weight is 0.5; d/ds = 1 - 0.5 L with L = (9, -5): s1 rises, s0 falls
    np.testing.assert_allclose(out.grads["encoder"]["a"], [0.5 * 3 - 0.5 * 2, 0.5 * 3 - 0.5 * 4])
    assert float(out.state["log_var"][0]) > 0 > float(out.state["log_var"][1])
    assert tw.get("uncertainty").init(2, {"form": "kendall"})["log_var"].tolist() == [-0.5, -0.5]


def test_gradnorm_loss_gradient_by_hand():
    w = jnp.array([1.0, 1.0])
    grad = jax.grad(tw.gradnorm_loss)(w, jnp.array([2.0, 1.0]), jnp.ones(2), jnp.ones(2), 0.16)
    # G = (1, 0.5), target 0.75; through ŵ = 2w / Σw: ∂L/∂w = (0.75, -0.75)
    np.testing.assert_allclose(grad, [0.75, -0.75], rtol=1e-6)


def test_gradnorm_takes_the_reference_losses_once_at_the_first_step():
    first = _combine("gradnorm")
    np.testing.assert_allclose(first.state["initial_losses"], [9.0, -5.0])
    later = _combine("gradnorm", state=dict(first.state, initial_losses=jnp.array([1.0, 1.0])),
                     step=5)  # fmt: skip
    np.testing.assert_allclose(later.state["initial_losses"], [1.0, 1.0])
    with pytest.raises(ConfigError, match="no 'conv9'"):
        _combine("gradnorm", layer="encoder/conv9")


def test_dwa_weights_by_hand_and_its_epoch_schedule():
    previous = jnp.array([[1.0, 1.0], [0.5, 1.0]])
    expected = 2 * np.exp([0.25, 0.5]) / np.exp([0.25, 0.5]).sum()
    np.testing.assert_allclose(tw.dwa_weights(previous, 2.0), expected, rtol=1e-6)
    state = tw.get("dwa").init(2, {})
    weights = []
    for step in range(7):  # epochs of 2 steps: the third epoch (step 4) is the first reweighted
        out = _combine("dwa", state=state, step=step)
        state = out.state
        weights.append(np.asarray(out.weights).tolist())
    assert weights[:4] == [[1.0, 1.0]] * 4
    np.testing.assert_allclose(weights[4], [1.0, 1.0], rtol=1e-6)  # constant losses: ratio 1


def test_pcgrad_projects_conflicting_gradients_by_hand():
    out = _combine("pcgrad")
    # g1 = b = (3, 3), g2 = -2a = (-2, -4), g1·g2 = -18 < 0:
    # g1' = g1 + 18/20 g2 = (1.2, -0.6); g2' = g2 + 18/18 g1 = (1, -1); sum (2.2, -1.6)
    np.testing.assert_allclose(out.grads["encoder"]["a"], [2.2, -1.6], rtol=1e-6)
    np.testing.assert_allclose(out.grads["head"]["b"], [3.0], rtol=1e-6)  # Σ of the tasks'


@pytest.mark.parametrize("tasks", [2, 3])
def test_cagrad_weights_reach_the_simplex_minimum(tasks):
    rng = np.random.default_rng(tasks)
    g = rng.normal(size=(tasks, 12))
    gram = g @ g.T
    c = 0.5 * math.sqrt(gram.mean() + 1e-8) + 1e-8
    w = np.asarray(tw.cagrad_weights(jnp.asarray(gram, jnp.float32), jnp.float32(c)))
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-5)
    grid = [np.array(p) / 50 for p in itertools.product(range(51), repeat=tasks) if sum(p) == 50]
    best = min(float(tw.cagrad_objective(jnp.asarray(p), jnp.asarray(gram), c)) for p in grid)
    assert float(tw.cagrad_objective(jnp.asarray(w), jnp.asarray(gram), c)) <= best + 1e-4


def test_unknown_weighting_names_the_choices():
    with pytest.raises(ConfigError, match="'fixed', 'uncertainty', 'gradnorm', 'dwa', 'pcgrad'"):
        tw.get("equal")


# --- Metrics.


def test_confusion_matrix_miou_by_hand():
    labels = jnp.array([[0, 0, 1, 1, -1, 2]])
    pred = jnp.array([[0, 1, 1, 1, 2, 0]])
    confusion = np.asarray(dense_metrics.confusion_matrix(pred, labels, 3))
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    miou, accuracy = dense_metrics.miou_and_accuracy(confusion)
    # IoU: class 0 1/3, class 1 2/3, class 2 0/1
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert accuracy == pytest.approx(3 / 5)


def test_legacy_per_image_miou_by_hand():
    labels = jnp.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    pred = jnp.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    sums = dense_metrics.legacy_sums(pred, labels, 3)
    # image 0: IoU0 = 1/2, IoU1 = 2/3; image 1: IoU2 = 1/2, IoU0 = 0
    assert float(sums["legacy_miou_sum"]) == pytest.approx((0.5 + 2 / 3) / 2 + 0.25)
    assert float(sums["legacy_acc_sum"]) == pytest.approx(0.75 + 0.5)
    finished = dense_metrics.finish({
        "confusion": np.asarray(dense_metrics.confusion_matrix(pred, labels, 3)),
        **{k: np.asarray(v) for k, v in sums.items()}})  # fmt: skip
    assert finished["miou_legacy"] == pytest.approx(100 * ((0.5 + 2 / 3) / 2 + 0.25) / 2)


def test_depth_errors_over_pixels_with_ground_truth():
    sums = dense_metrics.depth_error_sums(jnp.array([1.0, 3.0, 5.0]), jnp.array([2.0, 2.0, 0.0]))
    finished = dense_metrics.finish({k: np.asarray(v) for k, v in sums.items()})
    assert finished == {"depth_abs": pytest.approx(1.0), "depth_rel": pytest.approx(0.5)}
