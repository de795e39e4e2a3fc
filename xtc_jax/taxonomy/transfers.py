"""Stage II: transfers from frozen source encoders to a target, many trained at once.

A transfer of the source set s = (s1, …, sk) to target t is a `TransferReadout` on the
channel-concatenated representations of the frozen encoders E_s1 … E_sk, trained on
the transfer images (disjoint from Stage I's) to minimise t's loss. The encoders are
frozen, so each source's representations of the transfer and test images are computed
once (`representations`). Every candidate of one order has inputs of the same shape,
so their readouts are stacked and trained together, on the same minibatch indices,
with one compilation for all of them (`batching`):
  "vmap"  one jitted step `vmap`s the readout over the candidates (the GPU's choice);
  "loop"  one jitted single-readout step, called for each candidate in turn. On XLA:CPU a
          vmap over conv weights becomes grouped convolutions, which are slow there: 10
          readouts' step is 2.46x slower vmapped (`python -m xtc_jax.bench.taxonomy_readouts`).
  "auto"  "loop" on a CPU, "vmap" elsewhere.
One more call gives every candidate's per-image test losses, the input of the
tournament (`tournament.affinity_matrix`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from xtc_jax.errors import ConfigError
from xtc_jax.taxonomy.tasks import Task


def representations(encode: Callable, params, images: np.ndarray,
                    batch_size: int = 16) -> np.ndarray:  # fmt: skip
    """(N, h, w, rep) of a frozen encoder over (N, H, W, 3) images; `encode(params, x)` is
    its jitted apply, shared by every source so that it compiles once per input shape."""
    parts = [np.asarray(encode(params, images[i:i + batch_size]))
             for i in range(0, len(images), batch_size)]  # fmt: skip
    return np.concatenate(parts)


def stacked_inputs(reps: Mapping[str, np.ndarray],
                   candidates: Sequence[Sequence[str]]) -> np.ndarray:  # fmt: skip
    """(G, N, h, w, k·rep): each candidate's sources' representations, concatenated."""
    return np.stack([np.concatenate([reps[s] for s in c], axis=-1) for c in candidates])


BATCHING = ("auto", "vmap", "loop")


def resolve_batching(batching: str) -> str:
    if batching not in BATCHING:
        raise ConfigError(f"config.transfer.batching={batching!r}: use one of "
                          f"{', '.join(BATCHING)}.")  # fmt: skip
    if batching == "auto":
        return "loop" if jax.devices()[0].platform == "cpu" else "vmap"
    return batching


def _stack(trees: list) -> dict:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree, g: int) -> list:
    return [jax.tree.map(lambda leaf, i=i: leaf[i], tree) for i in range(g)]


def make_step(task: Task, readout: nn.Module, optimizer, batching: str, g: int):
    """(step, to_step_form): one training step of G readouts, `step(params, opt_state, x,
    batch) -> (params, opt_state, (G,) losses)`, and the conversion of stacked params and
    optimizer state into the form it takes (stacked for "vmap", a list for "loop")."""

    def one_loss(p, x, batch):
        return jnp.mean(task.per_image_loss(readout.apply({"params": p}, x), batch))

    def one_step(params, opt_state, x, batch):
        loss, grads = jax.value_and_grad(one_loss)(params, x, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    if resolve_batching(batching) == "vmap":
        return jax.jit(jax.vmap(one_step, in_axes=(0, 0, 0, None))), lambda tree: tree
    single = jax.jit(one_step)

    def step(params, opt_state, x, batch):
        outs = [single(p, s, x[i], batch) for i, (p, s) in
                enumerate(zip(params, opt_state, strict=True))]  # fmt: skip
        return [o[0] for o in outs], [o[1] for o in outs], jnp.stack([o[2] for o in outs])

    return step, lambda tree: _unstack(tree, g)


def init_readouts(readout: nn.Module, inputs, seed: int, optimizer) -> tuple:
    """Stacked params and optimizer states of G readouts for (G, N, ...) inputs."""
    keys = jax.random.split(jax.random.key(seed), inputs.shape[0])
    params = jax.jit(jax.vmap(lambda k, x: readout.init(k, x[:1])["params"]))(keys, inputs)
    return params, jax.jit(jax.vmap(optimizer.init))(params)


def train_transfers(task: Task, readout: nn.Module, inputs: np.ndarray, targets: dict,
                    steps: int, batch_size: int, learning_rate: float, seed: int,
                    log: Callable[[str], None] = print, batching: str = "auto") -> dict:
    """Trains G readouts at once; returns their stacked params.

    inputs: (G, N, h, w, c) representations; targets: {domain: (N, H, W, C)} of the N
    transfer images.
    """
    g, n = inputs.shape[:2]
    optimizer = optax.adam(learning_rate)
    params, opt_state = init_readouts(readout, inputs, seed, optimizer)
    step, to_step_form = make_step(task, readout, optimizer, batching, g)
    params, opt_state = to_step_form(params), to_step_form(opt_state)

    rng = np.random.default_rng(seed)
    inputs = jnp.asarray(inputs)
    for i in range(steps):
        index = rng.choice(n, min(batch_size, n), replace=False)
        batch = {k: jnp.asarray(v[index]) for k, v in targets.items()}
        params, opt_state, losses = step(params, opt_state, inputs[:, index], batch)
        if (i + 1) % max(1, steps // 4) == 0 or i + 1 == steps:
            log(f"  transfers to {task.name}: step {i + 1}/{steps}, mean loss "
                f"{float(jnp.mean(losses)):.4f} over {g} readouts")  # fmt: skip
    return params if isinstance(params, dict) else _stack(params)


def per_image_losses(task: Task, readout: nn.Module, params, inputs: np.ndarray,
                     targets: dict, batch_size: int = 16, batching: str = "auto") -> np.ndarray:
    """(G, N) per-image losses of G stacked readouts on N images."""

    def one(p, x, batch):
        return task.per_image_loss(readout.apply({"params": p}, x), batch)

    if resolve_batching(batching) == "vmap":
        losses = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    else:
        single = jax.jit(one)

        def losses(params, x, batch):
            return jnp.stack([single(p, x[i], batch)
                              for i, p in enumerate(_unstack(params, x.shape[0]))])  # fmt: skip

    n = inputs.shape[1]
    parts = []
    for i in range(0, n, batch_size):
        batch = {k: jnp.asarray(v[i:i + batch_size]) for k, v in targets.items()}
        parts.append(np.asarray(losses(params, jnp.asarray(inputs[:, i:i + batch_size]), batch)))
    return np.concatenate(parts, axis=1)
