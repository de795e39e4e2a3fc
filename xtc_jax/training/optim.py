"""The original's optimiser: PyTorch Adam(amsgrad=True) with coupled L2 weight decay, in optax.

XTConsistency trains with `torch.optim.Adam(lr=3e-5, weight_decay=2e-6,
amsgrad=True)` (shared/reference/xtconsistency.md §5, checklist item 7):

    g   <- g + wd * p                         (coupled L2, not AdamW)
    m   <- b1 m + (1 - b1) g
    v   <- b2 v + (1 - b2) g^2
    vmax<- max(vmax, v)                       (max of the RAW second moment)
    p   <- p - lr / (1 - b1^t) * m / (sqrt(vmax) / sqrt(1 - b2^t) + eps)

optax.amsgrad takes the max of the bias-corrected moment instead (and with
that correction off, drops it entirely), so this module implements PyTorch's
order exactly. `tests/test_optim.py` checks it against a NumPy transcription.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from xtc_jax.errors import ConfigError


class TorchAmsgradState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


def scale_by_torch_amsgrad(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam/AMSGrad scaling with PyTorch's bias-correction order (see module doc)."""

    def init(params: optax.Params) -> TorchAmsgradState:
        def zeros():  # three separate trees: donated buffers must not alias
            return jax.tree.map(jnp.zeros_like, params)

        return TorchAmsgradState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros())

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        t = count.astype(jnp.float32)
        correction1 = 1 - b1**t
        correction2_sqrt = jnp.sqrt(1 - b2**t)

        def step(m, v):
            return (m / correction1) / (jnp.sqrt(v) / correction2_sqrt + eps)

        return jax.tree.map(step, mu, nu_max), TorchAmsgradState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def make_optimizer(config) -> optax.GradientTransformation:
    """The optimiser named by `config` (fields: name, learning_rate, weight_decay).

    "amsgrad": the original's PyTorch Adam(amsgrad) with coupled L2 decay.
    "adam": optax.adam with the same coupled L2 decay.
    """
    decay = optax.add_decayed_weights(config.weight_decay) if config.weight_decay else None
    if config.name == "amsgrad":
        scale = scale_by_torch_amsgrad()
    elif config.name == "adam":
        scale = optax.scale_by_adam()
    else:
        raise ConfigError(f'optimizer.name={config.name!r}: use "amsgrad" or "adam".')
    parts = [p for p in (decay, scale, optax.scale(-config.learning_rate)) if p is not None]
    return optax.chain(*parts)
