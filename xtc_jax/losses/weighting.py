"""Loss weighting: how the terms of one step become one scalar, by strategy name.

- "fixed": each term's configured weight, as the original's validation loss.
- "grad_ratio": XTC's gradient-ratio weights (xtconsistency.md §4.3): each
  term's own gradient on the target network gives g_i = mean |grad|, and a
  term with a larger gradient gets a smaller weight.

Uncertainty weighting and GradNorm (the multi-task method) join this
registry as further strategies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from xtc_jax.errors import ConfigError

Array = jax.Array

#: The loss-term name of the supervised direct term n(x) vs y (XTC's "mae").
MAE = "mae"
#: Weighting strategies by name; `needs_own_gradients` says whether a step must
#: pull back each term separately (n backward passes) before weighting.
STRATEGIES = {"fixed": False, "grad_ratio": True}


def check_strategy(name: str) -> str:
    """`name` if it is a known strategy; ConfigError naming the choices otherwise."""
    if name not in STRATEGIES:
        raise ConfigError(
            f"selection.weights={name!r}: use one of {', '.join(map(repr, STRATEGIES))}."
        )
    return name


def needs_own_gradients(name: str) -> bool:
    """Whether strategy `name` weights terms by their separate gradients."""
    return STRATEGIES[check_strategy(name)]


def _as_float(x: Array) -> Array:
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


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
