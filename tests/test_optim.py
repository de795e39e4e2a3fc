"""The optimiser equals PyTorch's Adam(amsgrad=True, weight_decay) update rule."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from xtc_jax.errors import ConfigError
from xtc_jax.training import optim


def _torch_reference(params, grads_seq, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """A NumPy transcription of torch.optim.Adam(amsgrad=True).step (PyTorch >= 1.4)."""
    p = params.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, g in enumerate(grads_seq, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        denom = np.sqrt(vmax) / np.sqrt(1 - b2**t) + eps
        p = p - lr / (1 - b1**t) * m / denom
    return p


def test_amsgrad_matches_pytorch_formula():
    rng = np.random.default_rng(0)
    params = rng.normal(size=(5,)).astype(np.float32)
    # Shrinking gradients make vmax differ from v, where the two AMSGrad orders diverge.
    grads = [rng.normal(size=(5,)).astype(np.float32) * 0.5**i for i in range(6)]
    config = ml_collections.ConfigDict(dict(name="amsgrad", learning_rate=1e-2, weight_decay=0.1))
    tx = optim.make_optimizer(config)
    p = jnp.asarray(params)
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
    expected = _torch_reference(params, grads, lr=1e-2, wd=0.1)
    np.testing.assert_allclose(np.asarray(p), expected, rtol=1e-5, atol=1e-6)
    # optax's own amsgrad (max of bias-corrected moments) differs on the same sequence.
    other = optax.chain(optax.add_decayed_weights(0.1), optax.amsgrad(1e-2))
    q, s = jnp.asarray(params), other.init(jnp.asarray(params))
    for g in grads:
        u, s = other.update(jnp.asarray(g), s, q)
        q = optax.apply_updates(q, u)
    assert np.abs(np.asarray(q) - expected).max() > 1e-5


def test_unknown_optimizer_is_a_config_error():
    config = ml_collections.ConfigDict(dict(name="sgdx", learning_rate=1.0, weight_decay=0.0))
    with pytest.raises(ConfigError, match=r"optimizer\.name='sgdx'"):
        optim.make_optimizer(config)
