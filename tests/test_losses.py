"""Losses (masked L1/L2, cross-entropy, perceptual, gradient-ratio weights) and loss selection."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xtc_jax import domains
from xtc_jax.consistency import selection
from xtc_jax.errors import ConfigError
from xtc_jax.losses import masked, weighting

NORMAL = domains.get("normal")


def _normal_batch():
    """Two 9x9 normal targets; example 0 has a 0.502 hole at (4, 4) -> 5x5 = 25 masked pixels.

    pred - target: example 0: 0.1 on valid pixels and 5.0 inside the masked
    block (must not count); example 1: 0.2 everywhere (no hole).
    """
    target = np.full((2, 9, 9, 3), 0.3, np.float32)
    target[0, 4, 4] = 0.502
    offset = np.empty_like(target)
    offset[0], offset[1] = 0.1, 0.2
    offset[0, 2:7, 2:7] = 5.0
    return jnp.asarray(target + offset), jnp.asarray(target)


def test_normal_hole_masks_exactly_25_pixels():
    _, target = _normal_batch()
    valid = NORMAL.valid_mask(target)
    assert valid.shape == (2, 9, 9, 1)
    assert int((~valid[0]).sum()) == 25 and not bool(valid[0, 2:7, 2:7].any())
    assert bool(valid[1].all())


def test_masked_l1_hand_values_both_denominators():
    pred, target = _normal_batch()
    valid_sum = 56 * 3 * 0.1 + 81 * 3 * 0.2
    scalar_valid = masked.masked_l1(pred, target, NORMAL)
    assert float(scalar_valid) == pytest.approx(valid_sum / ((56 + 81) * 3), rel=1e-5)
    scalar_all = masked.masked_l1(pred, target, NORMAL, denominator="all")
    assert float(scalar_all) == pytest.approx(valid_sum / (2 * 81 * 3), rel=1e-5)

    per_valid = masked.masked_l1(pred, target, "normal", per_example=True)
    per_all = masked.masked_l1(pred, target, "normal", denominator="all", per_example=True)
    assert per_valid.shape == per_all.shape == (2,)
    np.testing.assert_allclose(per_valid, [0.1, 0.2], rtol=1e-5)
    np.testing.assert_allclose(per_all, [0.1 * 56 / 81, 0.2], rtol=1e-5)


def test_masked_l1_without_mask_and_l2():
    pred, target = _normal_batch()
    unmasked = (25 * 3 * 5.0 + 56 * 3 * 0.1 + 81 * 3 * 0.2) / (2 * 81 * 3)
    assert float(masked.masked_l1(pred, target, None)) == pytest.approx(unmasked, rel=1e-5)
    per_l2 = masked.masked_l2(pred, target, NORMAL, per_example=True)
    np.testing.assert_allclose(per_l2, [0.01, 0.04], rtol=1e-4)


def test_masked_l1_all_masked_is_zero_not_nan():
    target = jnp.full((1, 4, 4, 3), 0.502)
    value = masked.masked_l1(target + 1.0, target, NORMAL)
    assert float(value) == 0.0
    assert masked.masked_l1(target + 1.0, target, NORMAL, per_example=True).tolist() == [0.0]


def test_masked_l1_bad_arguments():
    pred, target = _normal_batch()
    with pytest.raises(ValueError, match="denominator"):
        masked.masked_l1(pred, target, NORMAL, denominator="mean")
    with pytest.raises(ValueError, match="differ in shape"):
        masked.masked_l1(pred[:1], target, NORMAL)


def test_masked_l1_jits_and_gradient_is_zero_on_masked_pixels():
    pred, target = _normal_batch()
    fn = jax.jit(functools.partial(masked.masked_l1, domain=NORMAL))
    assert float(fn(pred, target)) == pytest.approx(float(masked.masked_l1(pred, target, NORMAL)))
    grad = np.asarray(jax.grad(fn)(pred, target))
    assert np.all(grad[0, 2:7, 2:7] == 0.0)
    expected = 1.0 / ((56 + 81) * 3)  # sign(+) / valid count
    valid = np.asarray(NORMAL.valid_mask(target))[..., 0]
    np.testing.assert_allclose(grad[valid], expected, rtol=1e-5)
    assert int((grad == 0).all(axis=-1).sum()) == 25


def test_cross_entropy_ignores_minus_one_and_matches_hand_value():
    logits = jnp.asarray([[[[2.0, 0.0, -1.0], [0.0, 1.0, 3.0], [5.0, 5.0, 5.0]]]])  # 1x1x3x3
    ids = jnp.asarray([[[[0.0], [1.0], [-1.0]]]])
    # -log softmax: pixel 0 label 0, pixel 1 label 1; pixel 2 is ignored.
    nll = [math.log(1 + math.exp(-2) + math.exp(-3)), math.log(math.exp(-1) + 1 + math.exp(2))]
    assert float(masked.cross_entropy(logits, ids)) == pytest.approx(np.mean(nll), rel=1e-5)
    all_pixels = masked.cross_entropy(logits, ids, denominator="all")
    assert float(all_pixels) == pytest.approx(sum(nll) / 3, rel=1e-5)
    per = masked.cross_entropy(logits, ids[..., 0].astype(jnp.int32), per_example=True)
    assert per.shape == (1,) and float(per[0]) == pytest.approx(np.mean(nll), rel=1e-5)
    grad = jax.grad(lambda lg: masked.cross_entropy(lg, ids))(logits)
    assert float(jnp.abs(grad[0, 0, 2]).sum()) == 0.0
    assert float(jnp.abs(grad[0, 0, :2]).sum()) > 0.0
    # Through the uniform lookup the domain's mask value (-1) is the ignore label.
    via_domain = masked.loss_fn("cross_entropy")(logits, ids, "segment_semantic")
    assert float(via_domain) == pytest.approx(np.mean(nll), rel=1e-5)


def test_loss_lookup():
    assert masked.loss_fn("l1") is masked.masked_l1
    assert masked.loss_fn("l2") is masked.masked_l2
    with pytest.raises(ConfigError, match=r"unknown loss 'huber'.*l1, l2, cross_entropy"):
        masked.loss_fn("huber")
    with pytest.raises(ConfigError, match=r"selection.weights='uniform'.*'fixed', 'grad_ratio'"):
        weighting.check_strategy("uniform")


# --- win-rate statistics -------------------------------------------------------------


def test_winrate_running_mean_over_two_batches_and_reset():
    stats = selection.winrate_init(["curv", "edge"])
    update = jax.jit(selection.winrate_update, static_argnums=1)
    stats = update(stats, "curv", jnp.asarray([0.5, 0.1, 0.3]), jnp.asarray([0.2, 0.2, 0.2]))
    assert int(stats["wins"]["curv"]) == 2 and int(stats["count"]["curv"]) == 3
    values = selection.winrate_values(stats)
    assert values["curv"] == pytest.approx(2 / 3) and math.isnan(values["edge"])
    # Second batch: 0 of 1 real examples wins (the second one is padding).
    stats = update(
        stats, "curv", jnp.asarray([0.0, 9.0]), jnp.asarray([1.0, 0.0]), jnp.asarray([True, False])
    )
    assert selection.winrate_values(stats)["curv"] == pytest.approx(2 / 4)  # not 0 (overwrite)
    stats = selection.winrate_update(stats, "edge", jnp.ones(2), jnp.zeros(2))
    assert selection.winrate_values(stats)["edge"] == 1.0  # kept, unlike the original
    reset = selection.winrate_reset(stats)
    assert all(math.isnan(v) for v in selection.winrate_values(reset).values())
    assert jax.tree_util.tree_structure(reset) == jax.tree_util.tree_structure(stats)
    with pytest.raises(KeyError, match="depth"):
        selection.winrate_update(stats, "depth", jnp.ones(2), jnp.ones(2))


def test_latest_winrates_keeps_last_known_value():
    merged = selection.latest_winrates({"a": 0.2, "b": 0.7}, {"a": math.nan, "b": 0.1, "c": 0.4})
    assert merged == {"a": 0.2, "b": 0.1, "c": 0.4}


# --- k-of-n selection ----------------------------------------------------------------

NAMES = ("curv", "edge", "depth", "reshading")


def test_choose_losses_winrate_picks_highest_in_canonical_order():
    stats = {"curv": 0.1, "edge": 0.9, "depth": 0.5, "reshading": 0.7}
    rng = np.random.default_rng(0)
    assert selection.choose_losses(NAMES, 2, "winrate", stats, rng) == ("edge", "reshading")
    assert selection.choose_losses(NAMES, 3, "winrate", stats, rng) == (
        "edge",
        "depth",
        "reshading",
    )
    tie = {"curv": 0.5, "edge": 0.5, "depth": 0.5, "reshading": 0.1}
    assert selection.choose_losses(NAMES, 1, "winrate", tie, rng) == ("curv",)


def test_choose_losses_random_until_every_loss_has_a_statistic():
    partial = {"curv": 0.1, "edge": 0.9, "depth": math.nan}  # depth NaN, reshading missing
    picks = [
        selection.choose_losses(NAMES, 2, "winrate", partial, np.random.default_rng(seed))
        for seed in range(20)
    ]
    again = [
        selection.choose_losses(NAMES, 2, "winrate", partial, np.random.default_rng(seed))
        for seed in range(20)
    ]
    assert picks == again  # seeded: reproducible
    assert len(set(picks)) > 1  # random, not the top two
    for pick in picks:
        assert len(pick) == 2 and list(pick) == sorted(pick, key=NAMES.index)


def test_choose_losses_random_mode_and_edges():
    full = {"curv": 0.1, "edge": 0.9, "depth": 0.5, "reshading": 0.7}
    picks = {
        selection.choose_losses(NAMES, 2, "random", full, np.random.default_rng(s))
        for s in range(30)
    }
    assert len(picks) > 2 and all(list(p) == sorted(p, key=NAMES.index) for p in picks)
    rng = np.random.default_rng(0)
    assert selection.choose_losses(NAMES, 4, "random", {}, rng) == NAMES
    assert selection.choose_losses(NAMES, 0, "winrate", full, rng) == ()
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 4\].*5"):
        selection.choose_losses(NAMES, 5, "winrate", full, rng)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 4\].*-1"):
        selection.choose_losses(NAMES, -1, "random", full, rng)
    with pytest.raises(ValueError, match="unknown selection mode 'best'"):
        selection.choose_losses(NAMES, 2, "best", full, rng)


# --- gradient-ratio weights ----------------------------------------------------------


def test_grad_ratio_weights_hand_numbers_and_sum():
    weights = weighting.grad_ratio_weights({"mae": 1.0, "a": 2.0, "b": 3.0})
    assert float(weights["a"]) == pytest.approx(1 / 3)
    assert float(weights["b"]) == pytest.approx(1 / 4)
    assert float(weights["mae"]) == pytest.approx(5 / 6)
    assert float(weights["a"] + weights["b"] + weights["mae"] / 2) == pytest.approx(1.0)
    assert float(weighting.grad_ratio_weights({"mae": 0.3})["mae"]) == 1.0
    zero = jax.jit(weighting.grad_ratio_weights)({"mae": 0.0, "a": 0.0, "b": 0.0})
    assert [float(zero[k]) for k in ("mae", "a", "b")] == pytest.approx([2 / 3, 1 / 3, 1 / 3])


def test_grad_ratio_weights_are_constants():
    def weighted(g):
        w = weighting.grad_ratio_weights({"mae": g[0], "a": g[1]})
        return w["mae"] + w["a"]

    assert np.all(np.asarray(jax.grad(weighted)(jnp.asarray([1.0, 2.0]))) == 0.0)


def test_mean_abs_grad():
    grads = {"w": jnp.asarray([[1.0, -2.0], [3.0, -4.0]]), "b": jnp.asarray([-5.0])}
    assert float(weighting.mean_abs_grad(grads)) == pytest.approx(15 / 5)
