"""The multi-task losses of xtask_mt (`module.XTaskLoss`, xtask_mt.md §1.5, §1.7), fixed.

Shapes: logits (B, H, W, C); labels (B, H, W) int, `ignore` (−1) where unlabelled;
depth (B, H, W, 1) with a validity mask of the same shape; normals (B, H, W, 3).

- `segmentation_ce`: cross-entropy averaged over labelled pixels.
- `depth_loss`: L1, MSE, logL1 (log(1 + |e|)) or smoothL1 (Huber, β = 1), reduced
  per image as sum(loss · mask) / sum(mask), then averaged over the batch
  (the original's image-averaged reduction).
- `label_smoothing_ce`: the transferred-seg loss against a hard pseudo-label:
  target 1 − ε on the label and ε / (C − 1) elsewhere. Averaged over valid
  pixels (the original also counted masked pixels in the denominator).
- `soft_kl`: KL(softmax(target logits) ‖ softmax(logits)) per valid pixel, the
  `--tseg_loss kl` option done right (the original's reshape scrambled pixels
  and channels, §1.12 item 5).
- `masked_ssim`: monodepth-style SSIM loss: 3×3 mean pooling, no padding,
  C1 = 0.01², C2 = 0.03², loss map clip((1 − SSIM) / 2, 0, 1), per image
  sum(loss map · valid) / sum(valid). Pixels are masked out of the SSIM
  windows by zeroing both maps, as the original.
- `normal_cosine`: 1 − cos(pred, target) over valid pixels (MTAN's normal loss).

All accumulate in float32 and are guarded against empty masks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xtc_jax.errors import ConfigError

Array = jax.Array
IGNORE = -1
DEPTH_LOSSES = ("l1", "mse", "logl1", "smoothl1")
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _f32(x: Array) -> Array:
    return jnp.asarray(x, jnp.float32)


def _safe_mean(total: Array, count: Array) -> Array:
    return total / jnp.maximum(count, 1.0)


def segmentation_ce(logits: Array, labels: Array, ignore: int = IGNORE) -> Array:
    """Mean cross-entropy over pixels whose label is not `ignore`."""
    logp = jax.nn.log_softmax(_f32(logits), axis=-1)
    valid = labels != ignore
    safe = jnp.where(valid, labels, 0).astype(jnp.int32)
    nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    return _safe_mean(jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid))


def elementwise_depth_loss(kind: str, pred: Array, target: Array) -> Array:
    """The per-pixel loss `kind` (one of DEPTH_LOSSES) of pred against target."""
    error = _f32(pred) - _f32(target)
    if kind == "l1":
        return jnp.abs(error)
    if kind == "mse":
        return jnp.square(error)
    if kind == "logl1":
        return jnp.log1p(jnp.abs(error))
    if kind == "smoothl1":
        a = jnp.abs(error)
        return jnp.where(a < 1.0, 0.5 * jnp.square(a), a - 0.5)
    raise ConfigError(f"depth loss {kind!r}: use one of {', '.join(DEPTH_LOSSES)}.")


def image_average(values: Array, mask: Array) -> Array:
    """Per image sum(values · mask) / sum(mask) over H, W, C; then the batch mean."""
    mask = _f32(mask)
    axes = tuple(range(1, values.ndim))
    per_image = jnp.sum(values * mask, axis=axes) / jnp.maximum(jnp.sum(mask, axis=axes), 1.0)
    return jnp.mean(per_image)


def depth_loss(kind: str, pred: Array, target: Array, mask: Array) -> Array:
    """The masked, image-averaged depth loss `kind`."""
    return image_average(elementwise_depth_loss(kind, pred, target), mask)


def smoothed_targets(labels: Array, num_classes: int, epsilon: float) -> Array:
    """One-hot of `labels` with 1 − ε on the label and ε / (C − 1) on every other class."""
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if not epsilon:
        return one_hot
    return one_hot * (1.0 - epsilon) + (1.0 - one_hot) * (epsilon / (num_classes - 1))


def label_smoothing_ce(logits: Array, labels: Array, valid: Array, epsilon: float = 0.0) -> Array:
    """Cross-entropy against smoothed one-hot `labels`, averaged over `valid` pixels."""
    logp = jax.nn.log_softmax(_f32(logits), axis=-1)
    q = smoothed_targets(jnp.where(valid, labels, 0), logits.shape[-1], epsilon)
    per_pixel = -jnp.sum(q * logp, axis=-1)
    return _safe_mean(jnp.sum(jnp.where(valid, per_pixel, 0.0)), jnp.sum(valid))


def soft_kl(logits: Array, target_logits: Array, valid: Array) -> Array:
    """KL(softmax(target_logits) ‖ softmax(logits)) averaged over `valid` pixels."""
    logp = jax.nn.log_softmax(_f32(logits), axis=-1)
    logq = jax.nn.log_softmax(_f32(target_logits), axis=-1)
    per_pixel = jnp.sum(jnp.exp(logq) * (logq - logp), axis=-1)
    return _safe_mean(jnp.sum(jnp.where(valid, per_pixel, 0.0)), jnp.sum(valid))


def _mean_pool3(x: Array) -> Array:
    """3×3 mean pooling, stride 1, no padding, over H and W of NHWC `x`."""
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), "VALID") / 9.0


def ssim_loss_map(x: Array, y: Array) -> Array:
    """clip((1 − SSIM) / 2, 0, 1) per 3×3 window: (B, H − 2, W − 2, C)."""
    x, y = _f32(x), _f32(y)
    mu_x, mu_y = _mean_pool3(x), _mean_pool3(y)
    sigma_x = _mean_pool3(x * x) - mu_x**2
    sigma_y = _mean_pool3(y * y) - mu_y**2
    sigma_xy = _mean_pool3(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return jnp.clip((1 - numerator / denominator) / 2, 0.0, 1.0)


def masked_ssim(pred: Array, target: Array, mask: Array) -> Array:
    """Per image sum(SSIM loss map) / sum(mask over the full image), then the batch mean."""
    mask = _f32(mask)
    loss_map = ssim_loss_map(pred * mask, target * mask)
    per_image = jnp.sum(loss_map, axis=(1, 2, 3)) / jnp.maximum(jnp.sum(mask, axis=(1, 2, 3)),
                                                                  1.0)  # fmt: skip
    return jnp.mean(per_image)


def normal_cosine(pred: Array, target: Array, valid: Array) -> Array:
    """1 − cos(pred, target) averaged over `valid` (B, H, W) pixels."""
    pred, target = _f32(pred), _f32(target)
    cos = jnp.sum(pred * target, axis=-1) / jnp.maximum(
        jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(target, axis=-1), 1e-12
    )
    return _safe_mean(jnp.sum(jnp.where(valid, 1.0 - cos, 0.0)), jnp.sum(valid))
