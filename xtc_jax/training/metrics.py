"""Held-out metrics: masked L1 for every domain, angles for normals, depth errors.

During training (`target_metrics`, `average`) each metric is an average over
valid pixels (the target's XTC mask) and then over examples. For a split
(`split_sums`, `finish_split_metrics`, used by --mode=eval) angles and depth
errors are pooled over every valid pixel of the split. Normals are compared
as unit vectors 2v - 1, in degrees; depth in metres (1.0 = 15.625 m).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

from xtc_jax import domains as domains_lib
from xtc_jax.losses import masked


def angular_error_degrees(pred: jax.Array, target: jax.Array, valid: jax.Array) -> jax.Array:
    """Per-example mean angle (degrees) between 2*pred-1 and 2*target-1 over valid pixels."""
    a = 2.0 * pred.astype(jnp.float32) - 1.0
    b = 2.0 * target.astype(jnp.float32) - 1.0
    a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-6)
    b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-6)
    cosine = jnp.clip(jnp.sum(a * b, axis=-1, keepdims=True), -1.0, 1.0)
    angle = jnp.degrees(jnp.arccos(cosine))
    weight = valid.astype(jnp.float32)
    return jnp.sum(angle * weight, axis=(1, 2, 3)) / jnp.maximum(weight.sum(axis=(1, 2, 3)), 1.0)


def target_metrics(pred: jax.Array, target: jax.Array, domain: str) -> dict[str, jax.Array]:
    """Per-example metrics [B] of `pred` against `target` for `domain`."""
    spec = domains_lib.get(domain)
    metrics = {"l1": masked.masked_l1(pred, target, spec, per_example=True)}
    if spec.name == "normal":
        metrics["angular_error_deg"] = angular_error_degrees(pred, target, spec.valid_mask(target))
    return metrics


def average(batches: Iterable[Mapping[str, jax.Array]]) -> dict[str, float]:
    """Mean of per-example metric arrays over all examples of all batches (clu.metrics)."""
    totals: dict[str, clu_metrics.Average] = {}
    for metrics in batches:
        for name, values in metrics.items():
            update = clu_metrics.Average.from_model_output(jnp.asarray(values))
            totals[name] = totals[name].merge(update) if name in totals else update
    return {name: float(metric.compute()) for name, metric in totals.items()}


# Split-level metrics (--mode=eval): pixel-pooled sums per batch, added up on the host, so
# medians and threshold percentages are over every valid pixel of the split, as in the
# depth and surface-normal literature, and any split size fits in memory.

ANGLE_BINS_PER_DEGREE = 100  # the median is exact to 0.01 degrees
NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)
DEPTH_METRES = domains_lib.DEPTH_XTC_SCALE / domains_lib.DEPTH_UNITS_PER_METRE  # 1.0 = 15.625 m
DEPTH_MIN = 1e-3  # predictions are clipped to [DEPTH_MIN, 1] before ratios


def _unit(v: jax.Array) -> jax.Array:
    v = 2.0 * v.astype(jnp.float32) - 1.0
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def normal_sums(pred: jax.Array, target: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
    """Angle sums, counts under thresholds and a 0.01-degree histogram over valid pixels."""
    cosine = jnp.clip(jnp.sum(_unit(pred) * _unit(target), axis=-1), -1.0, 1.0)
    angle = jnp.degrees(jnp.arccos(cosine))
    weight = valid[..., 0].astype(jnp.float32)
    bins = 180 * ANGLE_BINS_PER_DEGREE
    index = jnp.clip((angle * ANGLE_BINS_PER_DEGREE).astype(jnp.int32), 0, bins - 1)
    sums = {
        "angle_sum": jnp.sum(angle * weight),
        "angle_sq_sum": jnp.sum(angle**2 * weight),
        "pixels": jnp.sum(weight),
        "angle_histogram": jnp.zeros(bins, jnp.float32).at[index.ravel()].add(weight.ravel()),
    }
    for threshold in NORMAL_THRESHOLDS:
        sums[f"under_{threshold}"] = jnp.sum((angle < threshold) * weight)
    return sums


def depth_sums(pred: jax.Array, target: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
    """Sums for abs rel, RMSE (metres) and delta < 1.25 over valid pixels with depth > 0."""
    p = jnp.clip(pred.astype(jnp.float32), DEPTH_MIN, 1.0)[..., 0] * DEPTH_METRES
    t = target.astype(jnp.float32)[..., 0] * DEPTH_METRES
    weight = (valid[..., 0] & (t > 0)).astype(jnp.float32)
    t_safe = jnp.where(t > 0, t, 1.0)
    ratio = jnp.maximum(p / t_safe, t_safe / p)
    return {
        "abs_rel_sum": jnp.sum(jnp.abs(p - t) / t_safe * weight),
        "sq_err_sum": jnp.sum((p - t) ** 2 * weight),
        "delta_1.25_count": jnp.sum((ratio < 1.25) * weight),
        "pixels": jnp.sum(weight),
    }


def split_sums(pred: jax.Array, target: jax.Array, domain: str) -> dict[str, jax.Array]:
    """Additive per-batch sums of every metric of `domain` (see `finish_split_metrics`)."""
    spec = domains_lib.get(domain)
    l1 = masked.masked_l1(pred, target, spec, per_example=True)
    sums = {"l1_sum": jnp.sum(l1), "examples": jnp.float32(l1.shape[0])}
    valid = spec.valid_mask(target)
    if spec.name == "normal":
        sums.update(normal_sums(pred, target, valid))
    elif spec.name == "depth_zbuffer":
        sums.update(depth_sums(pred, target, valid))
    return sums


def add_sums(total: dict | None, sums: Mapping) -> dict:
    """total + sums, in float64 on the host."""
    sums = {k: np.asarray(v, np.float64) for k, v in jax.device_get(dict(sums)).items()}
    return sums if total is None else {k: total[k] + sums[k] for k in total}


def histogram_median(histogram: np.ndarray) -> float:
    """Median of pixel values counted in 1/ANGLE_BINS_PER_DEGREE-degree bins (bin centres).

    As np.median: the middle value, or the mean of the two middle values for
    an even count; exact to half a bin.
    """
    cumulative = np.cumsum(histogram)
    count = round(float(cumulative[-1]))
    ranks = [(count + 1) // 2] if count % 2 else [count // 2, count // 2 + 1]
    centres = [(int(np.searchsorted(cumulative, r - 0.5)) + 0.5) for r in ranks]
    return float(np.mean(centres) / ANGLE_BINS_PER_DEGREE)


def finish_split_metrics(sums: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Metrics from the summed `split_sums` of a whole split."""
    metrics = {"l1": float(sums["l1_sum"] / max(sums["examples"], 1))}
    pixels = max(float(sums.get("pixels", 0.0)), 1.0)
    if "angle_sum" in sums:
        metrics["angle_mean_deg"] = float(sums["angle_sum"] / pixels)
        metrics["angle_median_deg"] = histogram_median(sums["angle_histogram"])
        metrics["angle_rmse_deg"] = float(np.sqrt(sums["angle_sq_sum"] / pixels))
        for threshold in NORMAL_THRESHOLDS:
            metrics[f"pct_under_{threshold}"] = float(100.0 * sums[f"under_{threshold}"] / pixels)
    if "abs_rel_sum" in sums:
        metrics["abs_rel"] = float(sums["abs_rel_sum"] / pixels)
        metrics["rmse_m"] = float(np.sqrt(sums["sq_err_sum"] / pixels))
        metrics["delta_1.25_pct"] = float(100.0 * sums["delta_1.25_count"] / pixels)
    return metrics
