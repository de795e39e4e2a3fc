"""Stage II: transfers from frozen source encoders to a target, many trained at once.

A transfer of the source set s = (s1, …, sk) to target t is a `TransferReadout` on the
channel-concatenated representations of the frozen encoders E_s1 … E_sk, trained on
the transfer images (disjoint from Stage I's) to minimise t's loss. The encoders are
frozen, so each source's representations of the transfer and test images are computed
once (`representations`). Every candidate of one order has inputs of the same shape,
so their readouts are stacked and trained together: one jitted step `vmap`s the
readout over the candidates (same minibatch indices for all), and one more gives
every candidate's per-image test losses, the input of the tournament
(`tournament.affinity_matrix`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xtc_jax.models.taskonomy_net import TaskEncoder, TransferReadout
from xtc_jax.taxonomy.tasks import Task


def representations(encoder: TaskEncoder, params, images: np.ndarray,
                    batch_size: int = 16) -> np.ndarray:  # fmt: skip
    """(N, h, w, rep) of the frozen encoder over (N, H, W, 3) images."""
    apply = jax.jit(lambda p, x: encoder.apply({"params": p}, x))
    parts = [np.asarray(apply(params, images[i:i + batch_size]))
             for i in range(0, len(images), batch_size)]  # fmt: skip
    return np.concatenate(parts)


def stacked_inputs(reps: Mapping[str, np.ndarray],
                   candidates: Sequence[Sequence[str]]) -> np.ndarray:  # fmt: skip
    """(G, N, h, w, k·rep): each candidate's sources' representations, concatenated."""
    return np.stack([np.concatenate([reps[s] for s in c], axis=-1) for c in candidates])


def train_transfers(task: Task, readout: TransferReadout, inputs: np.ndarray, targets: dict,
                    steps: int, batch_size: int, learning_rate: float, seed: int,
                    log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Trains G readouts at once; returns their stacked params.

    inputs: (G, N, h, w, c) representations; targets: {domain: (N, H, W, C)} of the N
    transfer images.
    """
    g, n = inputs.shape[:2]
    keys = jax.random.split(jax.random.key(seed), g)
    params = jax.jit(jax.vmap(lambda k, x: readout.init(k, x[:1])["params"]))(keys, inputs)
    optimizer = optax.adam(learning_rate)
    opt_state = jax.jit(jax.vmap(optimizer.init))(params)

    def one_loss(p, x, batch):
        return jnp.mean(task.per_image_loss(readout.apply({"params": p}, x), batch))

    @jax.jit
    def step(params, opt_state, x, batch):
        losses, grads = jax.vmap(jax.value_and_grad(one_loss), in_axes=(0, 0, None))(
            params, x, batch)
        updates, opt_state = jax.vmap(optimizer.update)(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, losses

    rng = np.random.default_rng(seed)
    inputs = jnp.asarray(inputs)
    for i in range(steps):
        index = rng.choice(n, min(batch_size, n), replace=False)
        batch = {k: jnp.asarray(v[index]) for k, v in targets.items()}
        params, opt_state, losses = step(params, opt_state, inputs[:, index], batch)
        if (i + 1) % max(1, steps // 4) == 0 or i + 1 == steps:
            log(f"  transfers to {task.name}: step {i + 1}/{steps}, mean loss "
                f"{float(jnp.mean(losses)):.4f} over {g} readouts")  # fmt: skip
    return params


def per_image_losses(task: Task, readout: TransferReadout, params, inputs: np.ndarray,
                     targets: dict, batch_size: int = 16) -> np.ndarray:  # fmt: skip
    """(G, N) per-image losses of G stacked readouts on N images."""

    @jax.jit
    def losses(params, x, batch):
        return jax.vmap(lambda p, xi: task.per_image_loss(readout.apply({"params": p}, xi),
                                                          batch))(params, x)  # fmt: skip

    n = inputs.shape[1]
    parts = []
    for i in range(0, n, batch_size):
        batch = {k: jnp.asarray(v[i:i + batch_size]) for k, v in targets.items()}
        parts.append(np.asarray(losses(params, jnp.asarray(inputs[:, i:i + batch_size]), batch)))
    return np.concatenate(parts, axis=1)
