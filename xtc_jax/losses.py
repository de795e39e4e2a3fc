"""Losses of cross-task consistency training: masked L1/L2, cross-entropy, perceptual, weights.

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
- The total loss is always a scalar: only `mae` and the chosen perceptual
  terms are reduced and weighted (`combine_losses`), never left as [B] vectors.

Win-rate statistics and the k-of-n choice of perceptual losses live in
`xtc_jax.selection`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp

from xtc_jax import domains
from xtc_jax.errors import ConfigError

Array = jax.Array
Denominator = Literal["valid", "all"]
DomainLike = domains.Domain | str | None

#: The loss-term name of the supervised direct term n(x) vs y (XTC's "mae").
MAE = "mae"


class LossFn(Protocol):
    """The uniform signature of the losses returned by `loss_fn` / `domain_loss`."""

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


def domain_loss(name: str) -> LossFn:
    """The default loss of domain `name` (its `Domain.loss`), e.g. "normal" -> masked L1."""
    return loss_fn(domains.get(name).loss)


def perceptual_l1(
    f_pred: Array,
    f_target: Array,
    domain: DomainLike,
    *,
    denominator: Denominator = "valid",
    per_example: bool = False,
) -> Array:
    """Perceptual consistency term |F_K(n(x)) - F_K(y)|, masked L1 (§4.3 `percep_K`).

    f_pred = F_K(n(x)), f_target = F_K(y) with F_K the frozen perceptual network
    and `domain` its OUTPUT domain K (None for unmasked, like the original's
    imagenet term). The mask comes from F_K(y), the target side, as in the
    original. F_K(y) is a constant: callers should compute it under
    `jax.lax.stop_gradient`; it is stopped here again to be safe, so gradients
    flow only through f_pred.
    """
    f_target = jax.lax.stop_gradient(f_target)
    return masked_l1(f_pred, f_target, domain, denominator=denominator, per_example=per_example)


def mean_abs_grad(grads: Any) -> Array:
    """g = sum |grad| / number of parameters over a gradient pytree (§4.3 step 2).

    Pass the gradient of one loss term with respect to the TARGET network's
    parameters only (frozen perceptual networks excluded). Accumulates in float32.
    """
    leaves = jax.tree_util.tree_leaves(grads)
    if not leaves:
        raise ValueError("mean_abs_grad: the gradient pytree has no leaves")
    numel = sum(leaf.size for leaf in leaves)
    total = sum(jnp.sum(jnp.abs(_as_float(leaf))) for leaf in leaves)
    return total / max(numel, 1)


def grad_ratio_weights(
    grad_magnitudes: Mapping[str, Array | float], mae: str = MAE
) -> dict[str, Array]:
    """XTC's gradient-ratio loss weights (§4.3) from per-term gradient magnitudes g_i.

    grad_magnitudes: {term: g_i} for the n optimised terms, i.e. `mae` and
    every active perceptual term, g_i from `mean_abs_grad`. With G = sum g_i:
    perceptual w_i = (G - g_i) / ((n - 1) G) (a larger gradient gets a smaller
    weight), w_mae = (G - g_mae) / G; the perceptual weights plus
    w_mae / (n - 1) sum to 1. With n == 1 every weight is 1. If G == 0 the
    equal-gradient limit is used (w_i = 1/n, w_mae = (n - 1)/n) instead of 0/0.
    The weights are constants: wrapped in stop_gradient, as the original used
    Python floats.
    """
    names = list(grad_magnitudes)
    if not names:
        raise ValueError("grad_ratio_weights needs at least one term")
    if len(names) == 1:
        return {names[0]: jnp.ones((), jnp.float32)}
    n = len(names)
    g = {k: jax.lax.stop_gradient(_as_float(v)) for k, v in grad_magnitudes.items()}
    total = sum(g.values())
    positive = total > 0
    safe_total = jnp.where(positive, total, 1.0)
    weights = {}
    for name in names:
        share = (safe_total - g[name]) / safe_total  # (G - g_i) / G
        if name == mae:
            weights[name] = jnp.where(positive, share, (n - 1) / n)
        else:
            weights[name] = jnp.where(positive, share / (n - 1), 1.0 / n)
    return weights


def combine_losses(
    terms: Mapping[str, Array], weights: Mapping[str, Array | float] | None = None
) -> Array:
    """The scalar training loss sum_i w_i * terms[i] (weights default to 1, as in validation).

    Every term must already be a scalar: pass only `mae` and the chosen
    perceptual terms (the original left unchosen [B] vectors in the sum, §5.2).
    Weights are treated as constants.
    """
    if not terms:
        raise ValueError("combine_losses needs at least one term")
    total = jnp.zeros((), jnp.float32)
    for name, value in terms.items():
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"loss term {name!r} has shape {value.shape}; reduce it first")
        w = 1.0 if weights is None else jax.lax.stop_gradient(jnp.asarray(weights[name]))
        total = total + w * value
    return total
