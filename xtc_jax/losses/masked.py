"""Masked losses: L1, L2 and cross-entropy over (..., H, W, C) arrays, masked by the target.

Everything here is pure JAX (jit-able, no host synchronisation). It follows
`shared/reference/xtconsistency.md` §3.2-3.3 and §4.3 and fixes the bugs §5
lists:

- The validity mask is built from the *target* (`Domain.valid_mask`, XTC's
  5x5-dilated `mask_val` rule). The original builds it from the second
  argument of the loss pair, which is the target too, so the behaviour is the
  same; here it is explicit and cannot be swapped by argument order.
- The masked mean divides by the number of *valid* elements by default
  (C x valid pixels, guarded against zero). The original divides by *all*
  elements, masked ones included, so images with large holes get smaller
  losses; `denominator="all"` reproduces that.

How several terms are weighted into one loss is `losses/weighting.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal, Protocol

import jax
import jax.numpy as jnp

from xtc_jax import domains
from xtc_jax.errors import ConfigError

Array = jax.Array
Denominator = Literal["valid", "all"]
DomainLike = domains.Domain | str | None

class LossFn(Protocol):
    """The uniform signature of the losses returned by `loss_fn`."""

    def __call__(
        self,
        pred: Array,
        target: Array,
        domain: DomainLike = None,
        *,
        denominator: Denominator = "valid",
        per_example: bool = False,
    ) -> Array: ...


def _domain(domain: DomainLike) -> domains.Domain | None:
    return domains.get(domain) if isinstance(domain, str) else domain


def _as_float(x: Array) -> Array:
    """At least float32, so that bf16/fp16 inputs accumulate in float32."""
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


def _reduce(values: Array, valid: Array, denominator: str, per_example: bool, axes: int) -> Array:
    """Masked mean of `values` over its last `axes` axes (per example) or over everything.

    `valid` broadcasts against `values`. "valid": sum / number of valid elements
    (guarded: a batch or example without valid elements gives 0). "all": sum /
    number of elements, masked ones included (the original's rule).
    """
    if denominator not in ("valid", "all"):
        raise ValueError(f"denominator must be 'valid' or 'all', got {denominator!r}")
    valid = jnp.broadcast_to(valid, values.shape)
    summed = jnp.where(valid, values, 0.0)
    reduce_axes = tuple(range(values.ndim - axes, values.ndim)) if per_example else None
    total = jnp.sum(summed, axis=reduce_axes)
    if denominator == "all":
        size = math.prod(values.shape[-axes:]) if per_example else values.size
        return total / size
    count = jnp.sum(valid, axis=reduce_axes, dtype=jnp.float32)
    return total / jnp.maximum(count, 1.0)


def _masked_norm(
    pred: Array, target: Array, domain: DomainLike, power: int, denominator: str, per_example: bool
) -> Array:
    pred, target = _as_float(pred), _as_float(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    if pred.ndim < 3:
        raise ValueError(f"expected (..., H, W, C) arrays, got shape {pred.shape}")
    dom = _domain(domain)
    valid = jnp.asarray(True) if dom is None else dom.valid_mask(target)
    diff = jnp.abs(pred - target) if power == 1 else jnp.square(pred - target)
    return _reduce(diff, valid, denominator, per_example, axes=3)


def masked_l1(
    pred: Array,
    target: Array,
    domain: DomainLike = None,
    *,
    denominator: Denominator = "valid",
    per_example: bool = False,
) -> Array:
    """Masked L1 |pred - target| over (..., H, W, C) arrays (§3.3).

    The mask is `domain.valid_mask(target)`, built from the TARGET (`domain`: a
    Domain, a domain name, or None for no mask) and broadcast over channels.
    Masked elements add nothing to the sum and get zero gradient.

    denominator: "valid" (default) divides by C x valid pixels, at least 1, so
      holes do not shrink the loss; "all" divides by every element, masked
      ones included (the original's rule).
    per_example: True returns the mean over (H, W, C) per example, shape
      pred.shape[:-3] (e.g. [B]); False a scalar over the whole batch (with
      "valid": total sum / total valid count, not a mean of per-example means).
    """
    return _masked_norm(pred, target, domain, 1, denominator, per_example)


def masked_l2(
    pred: Array,
    target: Array,
    domain: DomainLike = None,
    *,
    denominator: Denominator = "valid",
    per_example: bool = False,
) -> Array:
    """Masked squared error (pred - target)^2, otherwise exactly like `masked_l1`.

    The original trained the perceptual networks F_K with L2; consistency
    training itself optimises only L1 terms.
    """
    return _masked_norm(pred, target, domain, 2, denominator, per_example)


def cross_entropy(
    logits: Array,
    target_ids: Array,
    ignore: int = -1,
    *,
    denominator: Denominator = "valid",
    per_example: bool = False,
) -> Array:
    """Softmax cross-entropy for label maps (segment_semantic), ignoring `ignore` labels.

    logits: (..., H, W, K). target_ids: class ids as (..., H, W, 1) floats (the
    decoded segment_semantic form) or (..., H, W) ints; they are rounded.
    Pixels whose id equals `ignore` contribute nothing and get zero gradient.
    Ids outside [0, K) other than `ignore` cannot be detected under jit; they
    are clipped, so the caller must supply valid ids.

    denominator "valid" divides by the number of non-ignored pixels (at least
    1), "all" by every pixel. per_example: mean over (H, W) per example.
    """
    logits = _as_float(logits)
    ids = jnp.asarray(target_ids)
    if ids.ndim == logits.ndim:
        if ids.shape[-1] != 1:
            raise ValueError(f"target_ids must have 1 channel, got shape {ids.shape}")
        ids = ids[..., 0]
    if ids.shape != logits.shape[:-1]:
        raise ValueError(f"target_ids {ids.shape} do not match logits {logits.shape}")
    ids = jnp.rint(ids).astype(jnp.int32) if jnp.issubdtype(ids.dtype, jnp.floating) else ids
    valid = ids != ignore
    safe = jnp.clip(ids, 0, logits.shape[-1] - 1)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    return _reduce(nll, valid, denominator, per_example, axes=2)


def _cross_entropy_loss(
    pred: Array,
    target: Array,
    domain: DomainLike = None,
    *,
    denominator: Denominator = "valid",
    per_example: bool = False,
) -> Array:
    """`cross_entropy` behind the uniform LossFn signature; ignore = the domain's mask value."""
    dom = _domain(domain)
    ignore = -1 if dom is None or dom.mask_value is None else int(dom.mask_value)
    return cross_entropy(pred, target, ignore, denominator=denominator, per_example=per_example)


LOSSES: Mapping[str, LossFn] = {
    "l1": masked_l1,
    "l2": masked_l2,
    "cross_entropy": _cross_entropy_loss,
}


def loss_fn(kind: str) -> LossFn:
    """The loss called `kind` ("l1", "l2", "cross_entropy"); ConfigError for unknown names.

    Every returned function takes (pred, target, domain, *, denominator,
    per_example), so callers can treat the kinds alike.
    """
    fn = LOSSES.get(kind)
    if fn is None:
        raise ConfigError(f"unknown loss {kind!r}. Known losses: {', '.join(LOSSES)}.")
    return fn
