"""Held-out metrics of the target network: masked L1, and angular error for normals.

Every metric is an average over valid pixels (the target's XTC mask) and
then over examples. Normals are compared as unit vectors 2v - 1, in degrees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
from clu import metrics as clu_metrics

from xtc_jax import domains as domains_lib
from xtc_jax import losses as losses_lib


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
    metrics = {"l1": losses_lib.masked_l1(pred, target, spec, per_example=True)}
    if spec.name == "normal":
        metrics["angular_error_deg"] = angular_error_degrees(pred, target, spec.valid_mask(target))
    return metrics


def make_eval_step(graph, pred_path: list[str], target_path: list[str], domain: str):
    """eval_step(params, batch) -> per-example metrics, jit-able."""

    def eval_step(params, batch):
        values = graph.evaluate(params, batch, {"pred": pred_path, "target": target_path})
        return target_metrics(values["pred"], values["target"], domain)

    return eval_step


def average(batches: Iterable[Mapping[str, jax.Array]]) -> dict[str, float]:
    """Mean of per-example metric arrays over all examples of all batches (clu.metrics)."""
    totals: dict[str, clu_metrics.Average] = {}
    for metrics in batches:
        for name, values in metrics.items():
            update = clu_metrics.Average.from_model_output(jnp.asarray(values))
            totals[name] = totals[name].merge(update) if name in totals else update
    return {name: float(metric.compute()) for name, metric in totals.items()}
