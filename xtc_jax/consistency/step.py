"""The consistency training step: one compiled step per chosen subset of perceptual losses.

Loss = w_mae * L(n(x), y) + sum over the CHOSEN perceptual terms of
w_K * L(F_K(n(x)), F_K(y)) (xtconsistency.md §4.3). Only the chosen terms'
paths are evaluated, so a smaller k really saves compute and memory: each
subset gets its own compiled step (cached by the trainer), nothing is masked.
The chosen terms' "direct" partners (rgb -> K vs K) are evaluated too, without
gradient, to update the win-rate statistics.

Gradients: the per-term mean losses are one function of the trainable
params; one `jax.vjp` gives the forward pass, and the weighted gradient is
its pullback of the weight vector. With `selection.weights == "grad_ratio"`
(`losses/weighting.py`), each term's own gradient is pulled back first (n
backward passes, as the original) and the weights w_i = (G - g_i)/((n-1) G)
come from their mean absolute values on the target network (constants).

Frozen networks are an argument of their own: no gradient, no optimizer
state, not donated. The state is donated and stays replicated on the mesh.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from xtc_jax import domains as domains_lib
from xtc_jax.consistency import selection
from xtc_jax.consistency.plan import LossTerm, Plan
from xtc_jax.losses import masked, weighting


def _term_values(plan: Plan, params, batch, terms: list[LossTerm]) -> dict[str, jax.Array]:
    """Per-example loss [B] of each term in `terms`."""
    # In the terms' order, not a set's: a set of strings iterates in an order that changes with
    # PYTHONHASHSEED, which reordered the traced paths and so XLA's float sums between runs.
    wanted = list(dict.fromkeys(n for t in terms for n in (t.pred, t.target)))
    values = plan.graph.evaluate(params, batch, {n: plan.paths[n] for n in wanted})
    out = {}
    for t in terms:
        target = values[t.target]
        if t.kind == "percep":
            target = jax.lax.stop_gradient(target)
        fn = masked.loss_fn(t.loss)
        out[t.name] = fn(values[t.pred], target, domains_lib.get(t.domain),
                         denominator=plan.denominator, per_example=True)  # fmt: skip
    return out


def make_term_means(plan: Plan, chosen: tuple[str, ...]):
    """term_means(trainable, frozen, batch) -> (mean loss of each optimised term, per-example
    losses): the function a step differentiates with respect to `trainable`."""
    optimised, _ = plan.step_terms(chosen)

    def term_means(trainable, frozen, batch):
        params = {**frozen, **trainable}
        per_example = _term_values(plan, params, batch, optimised)
        return jnp.stack([per_example[t.name].mean() for t in optimised]), per_example

    return term_means


def make_train_step(plan: Plan, chosen: tuple[str, ...], optimizer: optax.GradientTransformation):
    """step(state, frozen, batch) -> (state, metrics) for the chosen perceptual terms."""
    optimised, direct = plan.step_terms(chosen)
    grad_ratio = weighting.needs_own_gradients(plan.weighting) and len(optimised) > 1
    term_means = make_term_means(plan, chosen)

    def step(state, frozen, batch):
        means, pullback, per_example = jax.vjp(
            lambda trainable: term_means(trainable, frozen, batch), state["params"], has_aux=True
        )
        fixed = jnp.asarray([t.weight for t in optimised], jnp.float32)
        if grad_ratio:
            eye = jnp.eye(len(optimised), dtype=means.dtype)
            own = [pullback(eye[i])[0] for i in range(len(optimised))]
            g = {t.name: weighting.mean_abs_grad(own[i][plan.target_edge])
                 for i, t in enumerate(optimised)}  # fmt: skip
            ratio = weighting.grad_ratio_weights(g, mae=plan.supervised.name)
            weights = fixed * jnp.stack([ratio[t.name] for t in optimised])
            grads = jax.tree.map(lambda *gs: sum(w * x for w, x in zip(weights, gs, strict=True)),
                                 *own)  # fmt: skip
        else:
            weights = fixed
            (grads,) = pullback(weights)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)

        winrate = state["winrate"]
        metrics = {f"loss/{t.name}": means[i] for i, t in enumerate(optimised)}
        metrics["loss/total"] = jnp.dot(weights, means)
        if direct:
            all_params = {**frozen, **params}
            direct_values = _term_values(plan, all_params, batch, direct)
            for t in direct:
                k = t.perceptual_name
                winrate = selection.winrate_update(
                    winrate, k, per_example[f"percep_{k}"], direct_values[t.name]
                )
                metrics[f"loss/{t.name}"] = direct_values[t.name].mean()
        new_state = dict(state, params=params, opt_state=opt_state, winrate=winrate,
                         step=state["step"] + 1)  # fmt: skip
        return new_state, metrics

    return step
